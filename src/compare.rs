//! Content comparison of two images, and the SHA-256 of an image's virtual contents.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cancel::Cancel;
use crate::disk::{Disk, Run, RunKind};
use crate::error::Result;
use crate::report::SCHEMA_VERSION;

/// Bytes compared or hashed at a time.
const CHUNK: u64 = 1 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub schema_version: u32,
    /// The two images, as given.
    pub a: String,
    pub b: String,
    /// Same contents (by default sizes may differ by a tail of zeros, as qemu-img compare
    /// judges; with --strict the sizes must be equal too).
    pub identical: bool,
    pub strict: bool,
    pub size_a: u64,
    pub size_b: u64,
    /// Sizes differ and the larger image's extra bytes are all zeros.
    pub zero_tail: bool,
    /// First byte offset at which the contents differ, if any (a non-zero byte of the
    /// larger image's tail counts).
    pub first_difference: Option<u64>,
}

fn has_data(disk: &mut dyn Disk, offset: u64, len: u64, runs: &mut Vec<Run>) -> Result<bool> {
    runs.clear();
    disk.map(offset, len, runs)?;
    Ok(runs.iter().any(|r| r.kind == RunKind::Data))
}

/// Compares the guest-visible contents. Ranges both sides map as zero are not read.
pub fn compare(
    a: &mut dyn Disk,
    b: &mut dyn Disk,
    strict: bool,
    cancel: &Cancel,
    progress: &mut dyn FnMut(u64),
) -> Result<CompareReport> {
    let (size_a, size_b) = (a.virtual_size(), b.virtual_size());
    let (name_a, name_b) = (
        a.path().display().to_string(),
        b.path().display().to_string(),
    );
    let common = size_a.min(size_b);
    let mut buf_a = vec![0u8; CHUNK as usize];
    let mut buf_b = vec![0u8; CHUNK as usize];
    let mut runs = Vec::new();
    let mut offset = 0;
    let mut first_difference = None;
    while offset < common {
        cancel.check()?;
        let len = CHUNK.min(common - offset);
        crate::disk::prefetch_ahead(a, offset, CHUNK);
        crate::disk::prefetch_ahead(b, offset, CHUNK);
        if has_data(a, offset, len, &mut runs)? || has_data(b, offset, len, &mut runs)? {
            let (ca, cb) = (&mut buf_a[..len as usize], &mut buf_b[..len as usize]);
            a.read_at(offset, ca)?;
            b.read_at(offset, cb)?;
            if let Some(i) = ca.iter().zip(cb.iter()).position(|(x, y)| x != y) {
                first_difference = Some(offset + i as u64);
                break;
            }
        }
        offset += len;
        progress(offset);
    }
    let mut zero_tail = false;
    if first_difference.is_none() && size_a != size_b {
        let longer: &mut dyn Disk = if size_a > size_b { a } else { b };
        match first_nonzero(longer, common, cancel, &mut buf_a)? {
            Some(at) => first_difference = Some(at),
            None => zero_tail = true,
        }
    }
    Ok(CompareReport {
        schema_version: SCHEMA_VERSION,
        a: name_a,
        b: name_b,
        identical: first_difference.is_none() && (size_a == size_b || !strict),
        strict,
        size_a,
        size_b,
        zero_tail,
        first_difference,
    })
}

/// The first non-zero byte of `disk` from `from` on, reading only what maps as data.
fn first_nonzero(
    disk: &mut dyn Disk,
    from: u64,
    cancel: &Cancel,
    buf: &mut [u8],
) -> Result<Option<u64>> {
    let size = disk.virtual_size();
    let mut runs = Vec::new();
    let mut offset = from;
    while offset < size {
        cancel.check()?;
        let len = (buf.len() as u64).min(size - offset);
        if has_data(disk, offset, len, &mut runs)? {
            let chunk = &mut buf[..len as usize];
            disk.read_at(offset, chunk)?;
            if let Some(i) = chunk.iter().position(|&x| x != 0) {
                return Ok(Some(offset + i as u64));
            }
        }
        offset += len;
    }
    Ok(None)
}

/// SHA-256 of the whole virtual disk, streaming; unallocated ranges hash as zeros
/// without being read. `progress` gets the bytes done.
pub fn content_sha256(
    disk: &mut dyn Disk,
    cancel: &Cancel,
    progress: &mut dyn FnMut(u64),
) -> Result<[u8; 32]> {
    let size = disk.virtual_size();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK as usize];
    let zeros = vec![0u8; CHUNK as usize];
    let mut runs = Vec::new();
    let mut offset = 0;
    while offset < size {
        cancel.check()?;
        let len = CHUNK.min(size - offset);
        crate::disk::prefetch_ahead(disk, offset, CHUNK);
        if has_data(disk, offset, len, &mut runs)? {
            disk.read_at(offset, &mut buf[..len as usize])?;
            hasher.update(&buf[..len as usize]);
        } else {
            hasher.update(&zeros[..len as usize]);
        }
        offset += len;
        progress(offset);
    }
    Ok(hasher.finalize().into())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! Content comparison of two images, and the SHA-256 of an image's virtual contents.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::disk::{Disk, Run, RunKind};
use crate::error::Result;

/// Bytes compared or hashed at a time.
const CHUNK: u64 = 1 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub identical: bool,
    pub size_a: u64,
    pub size_b: u64,
    /// First byte offset at which the contents differ (within the common size), if any.
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
    progress: &mut dyn FnMut(u64),
) -> Result<CompareReport> {
    let (size_a, size_b) = (a.virtual_size(), b.virtual_size());
    let common = size_a.min(size_b);
    let mut buf_a = vec![0u8; CHUNK as usize];
    let mut buf_b = vec![0u8; CHUNK as usize];
    let mut runs = Vec::new();
    let mut offset = 0;
    let mut first_difference = None;
    while offset < common {
        crate::convert::check_interrupted()?;
        let len = CHUNK.min(common - offset);
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
    Ok(CompareReport {
        identical: first_difference.is_none() && size_a == size_b,
        size_a,
        size_b,
        first_difference,
    })
}

/// SHA-256 of the whole virtual disk, streaming; unallocated ranges hash as zeros
/// without being read.
pub fn content_sha256(disk: &mut dyn Disk) -> Result<[u8; 32]> {
    let size = disk.virtual_size();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK as usize];
    let zeros = vec![0u8; CHUNK as usize];
    let mut runs = Vec::new();
    let mut offset = 0;
    while offset < size {
        crate::convert::check_interrupted()?;
        let len = CHUNK.min(size - offset);
        crate::disk::prefetch_ahead(disk, offset, CHUNK);
        if has_data(disk, offset, len, &mut runs)? {
            disk.read_at(offset, &mut buf[..len as usize])?;
            hasher.update(&buf[..len as usize]);
        } else {
            hasher.update(&zeros[..len as usize]);
        }
        offset += len;
    }
    Ok(hasher.finalize().into())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

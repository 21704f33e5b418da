//! What a snapshot delta (COWD, seSparse) says about one grain, and the two walks every
//! delta reader shares: the allocation map and reads that fall through to the parent.
//!
//! A delta has three answers where a base disk has two: a grain may be absent from this
//! link (read the parent: `RunKind::Parent`), explicitly zero (reads as zeros and hides
//! the parent), or stored here; the chain resolves `Parent` runs against the next link.

use std::path::Path;

use crate::disk::{InputFile, Run, RunKind, push_run};
use crate::error::{Error, Result};

/// Where one grain of a delta is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrainState {
    /// Not in this link: the parent's bytes show through (zeros when there is no parent).
    Unallocated,
    /// Reads as zeros and hides the parent.
    Zero,
    /// Stored at this byte offset of the extent file.
    At(u64),
}

impl GrainState {
    /// How a range of grains in this state maps.
    pub fn kind(self) -> RunKind {
        match self {
            GrainState::Unallocated => RunKind::Parent,
            GrainState::Zero => RunKind::Zero,
            GrainState::At(_) => RunKind::Data,
        }
    }
}

/// Reads the parent's bytes for `[offset, offset + buf.len())` (extent-relative).
pub type ParentRead<'a> = dyn FnMut(u64, &mut [u8]) -> Result<()> + 'a;

/// What the shared walks need from a two-level delta: its size, its geometry, whether a
/// table exists, and one grain's state.
pub(crate) trait GrainTables {
    fn file(&self) -> &InputFile;
    /// Bytes of the extent the disk uses.
    fn extent_len(&self) -> u64;
    fn grain_bytes(&self) -> u64;
    /// Grains covered by one grain table.
    fn grains_per_table(&self) -> u64;
    /// False when the directory has no table for `table`: every grain in its range falls
    /// through to the parent, and no grain of it needs to be looked at.
    fn table_present(&self, table: u64) -> bool;
    fn grain(&mut self, index: u64) -> Result<GrainState>;
}

/// Refuses a request reaching past the extent (a caller's mistake, reported rather than
/// indexing past the directory).
fn check_request<T: GrainTables + ?Sized>(t: &T, offset: u64, len: u64) -> Result<u64> {
    match offset.checked_add(len) {
        Some(end) if end <= t.extent_len() => Ok(end),
        _ => Err(Error::corrupt(
            t.file().path(),
            "read request",
            offset,
            format!(
                "{len} bytes reach past the extent's {} bytes",
                t.extent_len()
            ),
        )),
    }
}

/// Appends the runs of `[offset, offset + len)` (extent-relative), shifted by `base`.
/// A range whose table is absent becomes one run without looking at its grains.
pub(crate) fn map<T: GrainTables + ?Sized>(
    t: &mut T,
    offset: u64,
    len: u64,
    base: u64,
    out: &mut Vec<Run>,
) -> Result<()> {
    let end = check_request(t, offset, len)?;
    let grain = t.grain_bytes();
    let coverage = grain * t.grains_per_table();
    let mut pos = offset;
    while pos < end {
        let table = pos / coverage;
        if !t.table_present(table) {
            let table_end = ((table + 1) * coverage).min(end);
            push_run(out, base + pos, table_end - pos, RunKind::Parent);
            pos = table_end;
            continue;
        }
        let index = pos / grain;
        let grain_end = ((index + 1) * grain).min(end);
        let kind = t.grain(index)?.kind();
        push_run(out, base + pos, grain_end - pos, kind);
        pos = grain_end;
    }
    Ok(())
}

/// A stretch of the caller's buffer waiting to be filled in one go.
#[derive(Clone, Copy)]
enum Pending {
    /// Parent bytes at this extent offset.
    Parent(u64),
    Zero,
    /// File bytes at this file offset.
    File(u64),
}

/// Fills `buf` with the delta's view of `[offset, offset + buf.len())`: stored grains
/// from the file, zero grains as zeros, absent ones from `parent`. Neighbouring grains
/// that continue one another (parent ranges, file ranges stored back to back) are read
/// in one call, so 512-byte COWD grains do not cost a read each.
pub(crate) fn read<T: GrainTables + ?Sized>(
    t: &mut T,
    offset: u64,
    buf: &mut [u8],
    parent: &mut ParentRead<'_>,
) -> Result<()> {
    let end = check_request(t, offset, buf.len() as u64)?;
    let grain = t.grain_bytes();
    let coverage = grain * t.grains_per_table();
    // (what, where in buf it starts, where it ends)
    let mut pending: Option<(Pending, usize, usize)> = None;
    let mut pos = offset;
    while pos < end {
        let table = pos / coverage;
        let (piece, next) = if t.table_present(table) {
            let index = pos / grain;
            let within = pos % grain;
            let next = ((index + 1) * grain).min(end);
            let piece = match t.grain(index)? {
                GrainState::Unallocated => Pending::Parent(pos),
                GrainState::Zero => Pending::Zero,
                GrainState::At(at) => Pending::File(at + within),
            };
            (piece, next)
        } else {
            (Pending::Parent(pos), ((table + 1) * coverage).min(end))
        };
        let (from, to) = ((pos - offset) as usize, (next - offset) as usize);
        pending = match pending {
            Some((p, start, stop)) if continues(p, stop - start, piece) => Some((p, start, to)),
            Some(done) => {
                flush(t.file(), done, buf, parent)?;
                Some((piece, from, to))
            }
            None => Some((piece, from, to)),
        };
        pos = next;
    }
    if let Some(done) = pending {
        flush(t.file(), done, buf, parent)?;
    }
    Ok(())
}

/// Whether `next` carries on where `held` (already `len` bytes long) stops.
fn continues(held: Pending, len: usize, next: Pending) -> bool {
    match (held, next) {
        (Pending::Parent(a), Pending::Parent(b)) | (Pending::File(a), Pending::File(b)) => {
            a.checked_add(len as u64) == Some(b)
        }
        (Pending::Zero, Pending::Zero) => true,
        _ => false,
    }
}

fn flush(
    file: &InputFile,
    (what, start, stop): (Pending, usize, usize),
    buf: &mut [u8],
    parent: &mut ParentRead<'_>,
) -> Result<()> {
    let dst = &mut buf[start..stop];
    match what {
        Pending::Parent(at) => parent(at, dst),
        Pending::Zero => {
            dst.fill(0);
            Ok(())
        }
        Pending::File(at) => file.read_exact_at(dst, at, "grain"),
    }
}

/// Refuses grain starts (sorted file offsets, each with what to name in the error) that
/// lie closer than `span` bytes: two entries sharing file space would show one stored
/// grain at two places of the disk.
pub(crate) fn refuse_shared_grains(
    path: &Path,
    structure: &'static str,
    sorted: &[(u64, (u64, u64))],
    span: u64,
) -> Result<()> {
    for w in sorted.windows(2) {
        let ((a, (grain_a, _)), (b, (grain_b, entry_at))) = (w[0], w[1]);
        if b < a.saturating_add(span) {
            return Err(Error::corrupt(
                path,
                structure,
                entry_at,
                format!("grains {grain_a} and {grain_b} share file space (bytes {a} and {b})"),
            ));
        }
    }
    Ok(())
}

/// Maps and reads the first 4 MiB and the last grains of an extent, for the fuzz entry
/// points; errors are expected, panics are not.
pub(crate) fn fuzz_walk<T: GrainTables + ?Sized>(t: &mut T) {
    let len = t.extent_len();
    let head = len.min(4 << 20);
    let tail_start = len - len.min(64 << 10);
    let mut buf = vec![0u8; 64 << 10];
    for (start, end) in [(0, head), (tail_start, len)] {
        let mut runs = Vec::new();
        if map(t, start, end - start, 0, &mut runs).is_err() {
            return;
        }
        let mut offset = start;
        while offset < end {
            let n = (end - offset).min(buf.len() as u64) as usize;
            let mut parent = |_: u64, b: &mut [u8]| {
                b.fill(0xAA);
                Ok(())
            };
            if read(t, offset, &mut buf[..n], &mut parent).is_err() {
                return;
            }
            offset += n as u64;
        }
    }
}

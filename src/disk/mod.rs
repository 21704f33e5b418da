//! What every image reader offers: a virtual size, a map of which ranges hold data, and
//! positioned reads of the guest-visible bytes. Also the bounded input files every reader
//! reads through, windowed on-disk tables, and the record `info` reports.
//!
//! This is the lowest layer above errors: it imports no format and no pipeline.

pub mod chain;
pub mod info;
pub mod input;
pub mod link;
pub mod table;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cancel::Cancel;
use crate::error::{Error, Result};

pub use chain::ChainDisk;
pub use info::ImageInfo;
pub use input::{Folder, InputFile, OpenError, ReadAt};
pub use link::{LinkId, ParentHint, ParentLink};

/// Options for opening images that name other files.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Allow extent and parent files outside the descriptor's folder (absolute names,
    /// `..`, links leading out).
    pub allow_outside_paths: bool,
    /// Stops long walks.
    pub cancel: Cancel,
    /// Read a file no signature matches as a raw disk image (`-f raw`) instead of
    /// refusing it.
    pub raw_fallback: bool,
    /// The parent of the image opened (a snapshot delta or differencing disk), named by
    /// the user instead of found from what the image records (`--parent`).
    pub parent: Option<PathBuf>,
    /// Read a chain whose links' identities disagree (a VMDK parentCID that is not its
    /// parent's CID, a parent VHD or VHDX with another id), with a warning
    /// (`--ignore-cid`).
    pub ignore_cid: bool,
}

/// What a range of the virtual disk reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Stored data (which may still happen to be zeros).
    Data,
    /// Known to read as zeros: unallocated in a disk without a parent, a zeroed grain, a
    /// ZERO extent. In a delta it hides the parent's data.
    Zero,
    /// Not stored in this layer: reads as the parent's data (zeros without a parent). Only
    /// a layer of a chain (a disk whose `parent()` is some) maps ranges this way, and
    /// reads them as zeros; `ChainDisk` resolves them, so a whole disk never maps them.
    Parent,
}

/// A range of the virtual disk with one allocation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub offset: u64,
    pub len: u64,
    pub kind: RunKind,
}

/// Pushes a run, merging it into the previous one when they touch and share a kind.
pub fn push_run(out: &mut Vec<Run>, offset: u64, len: u64, kind: RunKind) {
    if len == 0 {
        return;
    }
    if let Some(last) = out.last_mut()
        && last.kind == kind
        && last.offset + last.len == offset
    {
        last.len += len;
        return;
    }
    out.push(Run { offset, len, kind });
}

/// A readable virtual disk. Implementations provide `map_range` and `read_range` for
/// ranges that lie inside the disk; callers use `map` and `read_at` (on
/// `dyn Disk`), which enforce that contract, so no reader is ever asked about bytes past
/// the disk's end.
pub trait Disk: Send {
    /// The guest-visible size in bytes.
    fn virtual_size(&self) -> u64;

    /// The file the disk was opened from (for messages).
    fn path(&self) -> &Path;

    /// Appends runs covering `[offset, offset + len)` in order to `out`. The range lies
    /// inside the disk.
    fn map_range(&mut self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()>;

    /// Fills `buf` with the guest-visible bytes at `offset`. The range lies inside the disk.
    fn read_range(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// A description for `vdconv info`; long walks stop when `cancel` is set.
    fn describe(&mut self, cancel: &Cancel) -> Result<ImageInfo>;

    /// The VMware adapter type (ddb.adapterType) where the image records one.
    fn adapter_type(&self) -> Option<String> {
        None
    }

    /// The file and offset holding `[offset, offset + len)` byte for byte, where one file
    /// does (a flat extent, a fixed VHD): lets the data be copied without reading it.
    fn file_range(&self, _offset: u64, _len: u64) -> Option<(Arc<File>, u64)> {
        None
    }

    /// Hints that `[offset, offset + len)` will be read soon, so that the kernel starts
    /// reading it from the device now. A hint only: it does nothing where the range does
    /// not lie in one file byte for byte (see `file_range`).
    fn prefetch(&self, offset: u64, len: u64) {
        if let Some((file, at)) = self.file_range(offset, len) {
            advise_will_need(&file, at, len);
        }
    }

    /// The one file that holds this disk byte for byte from offset 0 to its end and
    /// nothing else (a flat VMDK), which `--in-place` can turn into a fixed VHD by
    /// appending a footer; otherwise why not.
    fn in_place_file(&self) -> std::result::Result<PathBuf, String> {
        Err(
            "only a flat VMDK (a descriptor with one FLAT extent at offset 0) converts in place"
                .into(),
        )
    }

    /// Anomalies tolerated while opening, for the user to see.
    fn warnings(&self) -> &[String];

    /// Every file this disk reads from (the destination must be none of them).
    fn files(&self) -> Vec<PathBuf>;

    /// How this disk names its parent, when it is a snapshot delta or a differencing disk:
    /// it is then a layer of a chain, mapping `Parent` for what it does not hold.
    fn parent(&self) -> Option<&ParentLink> {
        None
    }

    /// This disk's identity as its children record it (a VMDK CID, a VHD unique id, a
    /// VHDX DataWriteGuid).
    fn link_id(&self) -> Option<LinkId> {
        None
    }

    /// The links of a snapshot chain, top first, when this disk is one.
    fn layers_mut(&mut self) -> Option<&mut [Box<dyn Disk>]> {
        None
    }

    /// The content id the image records, which changes whenever its contents do (a VMDK's
    /// CID): lets a batch tell that a source it converted before is still the same.
    fn content_id(&self) -> Option<String> {
        None
    }
}

impl dyn Disk + '_ {
    /// Appends runs covering `[offset, offset + len)`; an error when the range leaves the
    /// disk.
    pub fn map(&mut self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
        self.check_range(offset, len)?;
        self.map_range(offset, len, out)
    }

    /// Fills `buf` from `offset`; an error when the range leaves the disk.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.read_range(offset, buf)
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        let size = self.virtual_size();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::corrupt(
                self.path(),
                "virtual disk",
                offset,
                format!("{len} bytes asked for lie past the end of the {size}-byte disk"),
            ));
        }
        Ok(())
    }
}

/// How far ahead of the chunk in hand a sequential reader asks for the source
/// (`prefetch_ahead`). 8 MiB measured best for a cold flat file here: 1 and 2 MiB gained
/// little, 16 and 32 MiB no more.
pub const PREFETCH_AHEAD: u64 = 8 << 20;

/// For a reader walking the disk in `chunk`s: hints the chunk PREFETCH_AHEAD past the one
/// at `offset`, when the disk reaches that far.
pub fn prefetch_ahead(disk: &dyn Disk, offset: u64, chunk: u64) {
    let size = disk.virtual_size();
    let ahead = offset.saturating_add(PREFETCH_AHEAD);
    if ahead < size {
        disk.prefetch(ahead, chunk.min(size - ahead));
    }
}

/// Asks the kernel to start reading `[offset, offset + len)` of `file` into the page cache
/// without waiting for it. A single reader thread keeps only the kernel's readahead window
/// in flight; asking a few MiB ahead keeps the device busy (a cold flat file converts about
/// a fifth faster). Holes and cached pages cost a lookup.
pub fn advise_will_need(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: fadvise on a descriptor we own; no memory is passed. Its result is only a
    // hint's, and the read that follows reports any real error.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_WILLNEED) };
}

/// Bytes of the disk that map as stored data. Walks the map a GiB at a time, honouring
/// `cancel` between steps.
pub fn allocated_bytes(disk: &mut dyn Disk, cancel: &Cancel) -> Result<u64> {
    const STEP: u64 = 1 << 30;
    let size = disk.virtual_size();
    let mut runs = Vec::new();
    let mut total = 0;
    let mut offset = 0;
    while offset < size {
        cancel.check()?;
        let len = STEP.min(size - offset);
        runs.clear();
        disk.map(offset, len, &mut runs)?;
        total += runs
            .iter()
            .filter(|r| r.kind == RunKind::Data)
            .map(|r| r.len)
            .sum::<u64>();
        offset += len;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_hints_outside_a_file_are_ignored() {
        use std::os::unix::fs::FileExt;
        let path = std::env::temp_dir().join(format!("vdconv-advise-{}", std::process::id()));
        std::fs::write(&path, b"four").unwrap();
        let file = File::open(&path).unwrap();
        // Past the end, and past what off_t holds: neither fails nor reads.
        advise_will_need(&file, 1 << 40, 1 << 20);
        advise_will_need(&file, u64::MAX - 5, u64::MAX);
        let mut buf = [0u8; 4];
        file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"four");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn runs_merge_when_they_touch() {
        let mut v = Vec::new();
        push_run(&mut v, 0, 10, RunKind::Data);
        push_run(&mut v, 10, 5, RunKind::Data);
        push_run(&mut v, 15, 0, RunKind::Zero);
        push_run(&mut v, 15, 5, RunKind::Zero);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].len, 15);
    }
}

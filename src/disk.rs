//! What every image reader offers: a virtual size, a map of which ranges hold data, and
//! positioned reads of the guest-visible bytes. Also the bounded input-file wrapper that
//! every reader uses, so that no read can leave the file it was declared in.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};

/// Whether a range of the virtual disk may hold non-zero bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Stored data (which may still happen to be zeros).
    Data,
    /// Known to read as zeros: unallocated, a zeroed grain, a ZERO extent.
    Zero,
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

/// A readable virtual disk.
pub trait Disk: Send {
    /// The guest-visible size in bytes.
    fn virtual_size(&self) -> u64;

    /// Appends runs covering `[offset, offset + len)` in order to `out`.
    fn map(&mut self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()>;

    /// Fills `buf` with the guest-visible bytes at `offset`; the range must lie inside the disk.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// A description for `vdconv info`.
    fn info(&mut self) -> Result<crate::info::ImageInfo>;

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

/// Bytes of `[offset, offset + len)` that the disk maps as data.
pub fn allocated_bytes(disk: &mut dyn Disk) -> Result<u64> {
    const STEP: u64 = 1 << 30;
    let size = disk.virtual_size();
    let mut runs = Vec::new();
    let mut total = 0;
    let mut offset = 0;
    while offset < size {
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

/// An opened input file whose reads are bounded by its length at open time.
#[derive(Debug)]
pub struct InputFile {
    path: PathBuf,
    /// Shared so that the writing thread can copy straight from it.
    file: Arc<File>,
    len: u64,
}

impl InputFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::input_io(path, "the file", e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::input_io(path, "the file's metadata", e))?;
        if meta.is_dir() {
            return Err(Error::unsupported(path, "is a directory, not a disk image"));
        }
        Ok(InputFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            len: meta.len(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn shared(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Appends to `out`, shifted by `base`, the runs of `[offset, offset + len)` that the
    /// file system stores (Data) and that are holes (Zero), as SEEK_DATA/SEEK_HOLE
    /// report them; everything is Data where the file system cannot tell.
    pub fn map_holes(&self, offset: u64, len: u64, base: u64, out: &mut Vec<Run>) {
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            // SAFETY: lseek on a descriptor we own; no memory is passed. Positioned reads
            // elsewhere do not depend on the file offset this moves.
            let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
            if data < 0 {
                let errno = std::io::Error::last_os_error().raw_os_error();
                let kind = if errno == Some(libc::ENXIO) {
                    RunKind::Zero
                } else {
                    RunKind::Data
                };
                push_run(out, base + pos - offset, end - pos, kind);
                return;
            }
            let data = (data as u64).min(end);
            push_run(out, base + pos - offset, data - pos, RunKind::Zero);
            if data >= end {
                return;
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
            let hole = if hole < 0 {
                end
            } else {
                (hole as u64).min(end)
            };
            push_run(out, base + data - offset, hole - data, RunKind::Data);
            pos = hole;
        }
    }

    /// Reads exactly `buf.len()` bytes at `offset`, or fails naming `structure` when the
    /// range does not lie inside the file.
    pub fn read_exact_at(
        &self,
        buf: &mut [u8],
        offset: u64,
        structure: &'static str,
    ) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(Error::corrupt(
                &self.path,
                structure,
                offset,
                format!(
                    "{} bytes extend past the end of the file ({} bytes)",
                    buf.len(),
                    self.len
                ),
            ));
        }
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::input_io(&self.path, format!("{structure} at offset {offset}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_hints_outside_a_file_are_ignored() {
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
}

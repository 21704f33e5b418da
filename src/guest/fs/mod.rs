//! The one trait every read-only guest file system offers, and path resolution over it.
//!
//! Paths are absolute inside the file system, `/`-separated, as bytes (guest names need
//! not be UTF-8). NTFS and FAT match names case-insensitively, as Windows does.
//!
//! Each reader adapts a crate or format to [`GuestFs`]; all of them resolve paths through
//! the one resolver in `resolve` (symlinks, `..`, the hop bound), so they agree on what a
//! path means.

pub mod confined;
pub mod cursor;
pub mod ext;
pub mod fat;
pub mod ntfs;
pub mod resolve;
pub mod xfs;

use std::sync::Arc;

use super::error::{GuestError, GuestResult};
use super::source::ByteSource;
use super::volume::Content;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    /// Devices, FIFOs, sockets, reparse points.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub kind: FileKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: FileKind,
    /// Bytes (for a symlink, the target's length).
    pub size: u64,
}

/// A read-only file system. `metadata` and `read_link` do not follow a symlink in the last
/// path component (like lstat); `read_file` and `read_dir` do (like open, so that
/// `/etc/os-release -> ../usr/lib/os-release` reads). Symlinks in earlier components are
/// always followed, with a bound on the number of hops (`MAX_SYMLINK_HOPS`), an error past
/// it.
pub trait GuestFs: Send + Sync {
    /// "ext4", "xfs", "ntfs", "vfat", ...
    fn kind(&self) -> &'static str;

    /// The file system's UUID as fstab spells it (lower-case, with dashes for ext/xfs; the
    /// volume serial for NTFS/FAT as `XXXX-XXXX` / 16 hex digits), if it has one.
    fn uuid(&self) -> Option<String>;

    /// The volume label, if any.
    fn label(&self) -> Option<String>;

    fn metadata(&self, path: &[u8]) -> GuestResult<Metadata>;

    /// Entries of a directory, without `.` and `..`; at most `MAX_DIR_ENTRIES`.
    fn read_dir(&self, path: &[u8]) -> GuestResult<Vec<DirEntry>>;

    /// A regular file's contents; `GuestError::Limit` when it is larger than `limit` bytes.
    fn read_file(&self, path: &[u8], limit: u64) -> GuestResult<Vec<u8>>;

    /// A symlink's target as stored.
    fn read_link(&self, path: &[u8]) -> GuestResult<Vec<u8>>;

    /// The first `len` bytes of a regular file (all of it when shorter). For files far
    /// larger than what is wanted (hiberfil.sys is gigabytes; its first 4 KiB tell whether
    /// Windows is hibernated). Readers should override this; the default works only for
    /// files of at most `len` bytes and says so otherwise.
    fn read_head(&self, path: &[u8], len: u64) -> GuestResult<Vec<u8>> {
        match self.read_file(path, len) {
            Err(GuestError::Limit(_)) => Err(GuestError::Unsupported(format!(
                "{}: this file system reads only whole files",
                String::from_utf8_lossy(path)
            ))),
            other => other,
        }
    }
}

/// Symlinks followed while resolving one path.
pub const MAX_SYMLINK_HOPS: usize = 40;
/// Entries returned for one directory.
pub const MAX_DIR_ENTRIES: usize = 100_000;

/// Opens the file system `content` names, read-only, over `source`. `Ok(None)` for content
/// that is no file system vdconv reads (swap, LVM PV, encrypted, unknown).
pub fn open_fs(
    content: &Content,
    source: Arc<dyn ByteSource>,
) -> GuestResult<Option<Box<dyn GuestFs>>> {
    Ok(match content {
        Content::Ext => Some(Box::new(ext::open(source)?)),
        Content::Xfs => Some(Box::new(xfs::XfsFs::open(source)?)),
        Content::Ntfs => Some(Box::new(ntfs::NtfsFs::open(source)?)),
        Content::Fat => Some(Box::new(fat::open(source)?)),
        _ => None,
    })
}

/// Walks a file system breadth-first from the root, listing directories and reading files
/// and links, within small fixed bounds (entries visited, depth: a directory loop ends).
/// For fuzzing and robustness tests: whatever the file system holds, this ends, and
/// errors are ignored.
pub fn exercise(fs: &dyn GuestFs) {
    // Every entry's path is resolved from the root, each component a lookup in its
    // directory, so an input's cost grows with the square of the entries visited; past a
    // hundred or so, more entries repeat the same calls (a fuzzed FAT of 512 root entries
    // took the volumes target down to 400 inputs a second).
    const MAX_VISITS: usize = 128;
    const MAX_DEPTH: usize = 8;
    const READ_LIMIT: u64 = 1 << 20;
    let _ = (fs.kind(), fs.uuid(), fs.label());
    let mut queue = std::collections::VecDeque::from([(b"/".to_vec(), 0usize)]);
    let mut visits = 0;
    while let Some((dir, depth)) = queue.pop_front() {
        let Ok(entries) = fs.read_dir(&dir) else {
            continue;
        };
        for e in entries {
            visits += 1;
            if visits > MAX_VISITS {
                return;
            }
            let mut path = dir.clone();
            if path.last() != Some(&b'/') {
                path.push(b'/');
            }
            path.extend_from_slice(&e.name);
            let _ = fs.metadata(&path);
            match e.kind {
                FileKind::Dir if depth < MAX_DEPTH => queue.push_back((path, depth + 1)),
                FileKind::Dir => {}
                FileKind::File => {
                    let _ = fs.read_file(&path, READ_LIMIT);
                }
                FileKind::Symlink => {
                    let _ = fs.read_link(&path);
                    let _ = fs.read_file(&path, READ_LIMIT);
                }
                FileKind::Other => {}
            }
        }
    }
}

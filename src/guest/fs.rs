//! The one trait every read-only guest file system offers, and path resolution over it.
//!
//! Paths are absolute inside the file system, `/`-separated, as bytes (guest names need
//! not be UTF-8). NTFS and FAT match names case-insensitively, as Windows does.

use super::error::{GuestError, GuestResult};

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

/// A read-only file system. Implementations do not follow a symlink in the last path
/// component (like lstat); symlinks in earlier components are followed, with a bound on
/// the number of hops (`MAX_SYMLINK_HOPS`), an error past it.
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

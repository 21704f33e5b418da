//! Block sharing (reflinks): a fixed output made from flat data on a file system that can
//! share blocks between files (XFS with reflink=1, btrfs) takes the source's blocks with
//! the FICLONERANGE ioctl instead of copying them, which costs metadata only.
//!
//! FICLONERANGE shares whole file-system blocks: both offsets and the length must be
//! multiples of the block size (a length may only be unaligned where it reaches the
//! source's end). [`aligned_middle`] cuts a range into an unaligned head, a block-aligned
//! body to share and an unaligned tail; the head and tail are copied.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use serde::Serialize;

/// Whether fixed outputs share the source's blocks (`--reflink`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReflinkMode {
    /// Share where the file systems can; otherwise copy (copy_file_range, then reads).
    #[default]
    Auto,
    /// Share every block-aligned range or fail, saying why.
    Always,
    /// Never share: no FICLONERANGE, and no copy_file_range either, which shares blocks on
    /// XFS and btrfs by itself; the data is read and written.
    Never,
}

impl ReflinkMode {
    pub fn name(self) -> &'static str {
        match self {
            ReflinkMode::Auto => "auto",
            ReflinkMode::Always => "always",
            ReflinkMode::Never => "never",
        }
    }

    /// The mode named `text` (as on the command line and in batch plans).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(ReflinkMode::Auto),
            "always" => Some(ReflinkMode::Always),
            "never" => Some(ReflinkMode::Never),
            _ => None,
        }
    }
}

/// `struct file_clone_range` of linux/fs.h.
#[repr(C)]
struct FileCloneRange {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}

/// FICLONERANGE = _IOW(0x94, 13, struct file_clone_range).
const FICLONERANGE: libc::c_ulong = 0x4020_940D;

/// Shares `len` bytes of `src` at `src_offset` into `dst` at `dst_offset`. Both offsets
/// and `len` must be multiples of the file system's block size.
pub fn clone_range(
    src: &File,
    src_offset: u64,
    dst: &File,
    dst_offset: u64,
    len: u64,
) -> io::Result<()> {
    let arg = FileCloneRange {
        src_fd: i64::from(src.as_raw_fd()),
        src_offset,
        src_length: len,
        dest_offset: dst_offset,
    };
    // SAFETY: both descriptors are open for as long as the call runs, and `arg` is a
    // properly laid out file_clone_range the kernel only reads.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONERANGE as _, &arg) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a clone failure means "not possible here" (another file system, none that
/// shares blocks, offsets it will not take) rather than a real I/O error.
pub fn unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EXDEV
                | libc::EOPNOTSUPP
                | libc::ENOTTY
                | libc::EINVAL
                | libc::ENOSYS
                | libc::EBADF
                | libc::ETXTBSY
                | libc::EPERM
        )
    )
}

/// The unit blocks are shared in: the larger of both files' preferred I/O sizes (the
/// file-system block size, or a multiple of it), 4 KiB when they say nothing useful.
pub fn block_size(a: &File, b: &File) -> u64 {
    let size = |f: &File| {
        f.metadata()
            .map(|m| m.blksize())
            .ok()
            .filter(|s| s.is_power_of_two() && (512..=(1 << 20)).contains(s))
            .unwrap_or(4096)
    };
    size(a).max(size(b))
}

/// Cuts `len` bytes at `src_offset` -> `dst_offset` into (head, body): `head` bytes to
/// copy first, then `body` bytes both of whose ends lie on `block` boundaries in both
/// files (the rest, `len - head - body`, is the tail to copy). None when the two offsets
/// lie differently within a block, so no part of the range can be shared.
pub fn aligned_middle(
    src_offset: u64,
    dst_offset: u64,
    len: u64,
    block: u64,
) -> Option<(u64, u64)> {
    if src_offset % block != dst_offset % block {
        return None;
    }
    let head = ((block - dst_offset % block) % block).min(len);
    let body = (len - head) / block * block;
    Some((head, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_into_head_body_and_tail() {
        assert_eq!(aligned_middle(0, 0, 1 << 20, 4096), Some((0, 1 << 20)));
        assert_eq!(aligned_middle(512, 512, 8192, 4096), Some((3584, 4096)));
        assert_eq!(aligned_middle(512, 512, 1000, 4096), Some((1000, 0)));
        assert_eq!(aligned_middle(0, 0, 5000, 4096), Some((0, 4096)));
        assert_eq!(aligned_middle(0, 512, 1 << 20, 4096), None);
        // Offsets past 4 GiB keep their alignment.
        assert_eq!(
            aligned_middle((5 << 30) + 4096, 4096, 3 << 12, 4096),
            Some((0, 3 << 12))
        );
    }

    #[test]
    fn modes_round_trip_their_names() {
        for m in [ReflinkMode::Auto, ReflinkMode::Always, ReflinkMode::Never] {
            assert_eq!(ReflinkMode::parse(m.name()), Some(m));
        }
        assert_eq!(ReflinkMode::parse("yes"), None);
    }

    #[test]
    fn clones_across_file_systems_or_without_support_are_unavailable() {
        // /proc is never a file system that shares blocks with a temporary file.
        let dir = std::env::temp_dir();
        let path = dir.join(format!("vdconv-reflink-{}", std::process::id()));
        let dst = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let src = File::open("/proc/self/status").unwrap();
        let e = clone_range(&src, 0, &dst, 0, 4096).unwrap_err();
        assert!(unavailable(&e), "{e}");
        std::fs::remove_file(&path).unwrap();
    }
}

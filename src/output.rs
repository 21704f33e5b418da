//! The destination file: written under a temporary name beside DST and renamed into place
//! only when complete and flushed, so a failed or interrupted run leaves no DST behind and
//! never touches an existing one. The rename refuses to replace a file that appeared at
//! DST during the run (unless --force), and the folder is flushed so the rename survives a
//! crash. Temporary files left by a killed run are recognised by name and removed.

use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{Error, ErrorKind, Result};
use crate::reflink::{self, ReflinkMode};
use crate::sink::Sink;

/// How holes are treated in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolePolicy {
    /// Granularity at which zero pieces are skipped; 0 writes every byte.
    pub piece: usize,
    /// Write zeros into every hole before committing (files headed to NTFS).
    pub fill: bool,
}

pub struct Output {
    dst: PathBuf,
    /// DST's folder, opened once: the temporary file, the rename and the flush all go
    /// through it.
    dir: OwnedFd,
    temp_name: OsString,
    name: OsString,
    temp: PathBuf,
    file: File,
    holes: HolePolicy,
    force: bool,
    /// Whether copy_file_range still seems to work between the inputs and this file;
    /// shared with the reading side, which stops offering copies once it fails.
    copy_offload: Arc<AtomicBool>,
    /// Buffer for copies the kernel cannot do.
    copy_buffer: Mutex<Vec<u8>>,
    /// Whether copies share blocks (`--reflink`), and whether sharing still seems to
    /// work between the inputs and this file.
    reflink: ReflinkMode,
    reflink_ok: AtomicBool,
    /// Bytes copied by each path, for -v: shared, copied by the kernel, read and written.
    copied: [AtomicU64; 3],
    committed: AtomicBool,
}

/// The suffix every temporary file carries: `.NAME.vdconv-HOST-PID.tmp`.
const TEMP_SUFFIX: &str = ".tmp";
const TEMP_TAG: &str = ".vdconv-";

impl Output {
    /// Creates the temporary file beside `dst`. Refuses, before anything is written, a DST
    /// that exists (without `force`) or is a folder, and a folder that cannot be written.
    /// Removes temporary files of earlier runs into the same DST whose process is gone.
    pub fn create(dst: &Path, force: bool, holes: HolePolicy) -> Result<Self> {
        let (dir_path, name) = split_dst(dst)?;
        if let Ok(meta) = std::fs::symlink_metadata(dst) {
            if meta.is_dir() {
                return Err(Error::output(
                    ErrorKind::NotAFile,
                    dst,
                    "is a folder; name the file to write inside it",
                ));
            }
            if !force {
                return Err(Error::exists(dst));
            }
        }
        let dir = open_dir(&dir_path).map_err(|e| Error::output_io(dst, "into its folder", e))?;
        remove_stale_temps(&dir, &dir_path, &name);
        let mut temp_name = OsString::from(".");
        temp_name.push(&name);
        temp_name.push(format!(
            "{TEMP_TAG}{}-{}{TEMP_SUFFIX}",
            host_name(),
            std::process::id()
        ));
        let temp = dir_path.join(&temp_name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| Error::output_io(dst, "a temporary file beside it", e))?;
        Ok(Output {
            dst: dst.to_path_buf(),
            dir,
            temp_name,
            name,
            temp,
            file,
            holes,
            force,
            copy_offload: Arc::new(AtomicBool::new(true)),
            copy_buffer: Mutex::new(Vec::new()),
            reflink: ReflinkMode::Auto,
            reflink_ok: AtomicBool::new(true),
            copied: Default::default(),
            committed: AtomicBool::new(false),
        })
    }

    /// How copies treat block sharing (see [`ReflinkMode`]); Auto unless set.
    pub fn set_reflink(&mut self, mode: ReflinkMode) {
        self.reflink = mode;
        if mode == ReflinkMode::Never {
            // copy_file_range shares blocks by itself on XFS and btrfs.
            self.copy_offload.store(false, Ordering::Relaxed);
        }
    }

    /// Whether a copy offered now may still share blocks (not Never, and no clone has
    /// failed as unavailable): worth offering copies even when the data is read anyway.
    pub fn may_share(&self) -> bool {
        self.reflink != ReflinkMode::Never && self.reflink_ok.load(Ordering::Relaxed)
    }

    /// Bytes copied so far by each path: (shared, kernel copies, read and written).
    pub fn copy_paths(&self) -> (u64, u64, u64) {
        let [a, b, c] = &self.copied;
        let get = |x: &AtomicU64| x.load(Ordering::Relaxed);
        (get(a), get(b), get(c))
    }

    /// Whether copies may still be offered as copy_file_range (see `copy_from`).
    pub fn offload_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.copy_offload)
    }

    /// Where the file is being written until it is committed.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    fn copy_by_reading(&self, src: &File, mut from: u64, mut to: u64, mut left: u64) -> Result<()> {
        let mut buf = self.copy_buffer.lock().unwrap_or_else(|e| e.into_inner());
        buf.resize(1 << 20, 0);
        while left > 0 {
            let n = (left as usize).min(buf.len());
            // A read that fails here is the input's fault (a source that shrank).
            src.read_exact_at(&mut buf[..n], from).map_err(|e| {
                Error::input_io(
                    &self.dst,
                    format!("{n} bytes of input at offset {from} (did the source change?)"),
                    e,
                )
                .as_input()
            })?;
            self.write_nonzero(&buf[..n], to)?;
            self.copied[2].fetch_add(n as u64, Ordering::Relaxed);
            (from, to, left) = (from + n as u64, to + n as u64, left - n as u64);
        }
        Ok(())
    }

    /// Shares the block-aligned middle of a copy (FICLONERANGE) and copies its unaligned
    /// head and tail; false when nothing was shared, for the caller to copy it all. With
    /// `--reflink always`, a range whose blocks cannot be shared is an error.
    fn copy_shared(&self, src: &File, src_offset: u64, offset: u64, len: u64) -> Result<bool> {
        let always = self.reflink == ReflinkMode::Always;
        let block = reflink::block_size(src, &self.file);
        let Some((head, body)) = reflink::aligned_middle(src_offset, offset, len, block) else {
            if always {
                return Err(Error::output(
                    ErrorKind::OutputIo,
                    &self.dst,
                    format!(
                        "--reflink always: source offset {src_offset} and output offset {offset} lie differently within a {block}-byte block, so no block can be shared; use --reflink auto"
                    ),
                ));
            }
            return Ok(false);
        };
        if body == 0 {
            // Shorter than a block: nothing to share, only bytes to copy.
            return Ok(false);
        }
        if let Err(e) =
            reflink::clone_range(src, src_offset + head, &self.file, offset + head, body)
        {
            if !reflink::unavailable(&e) {
                return Err(Error::output_io(
                    &self.dst,
                    format!("{body} bytes at offset {} (FICLONERANGE)", offset + head),
                    e,
                ));
            }
            if always {
                return Err(Error::output(
                    ErrorKind::OutputIo,
                    &self.dst,
                    format!(
                        "--reflink always: cannot share blocks with the source ({e}); both files must be on one file system that shares blocks (XFS with reflink=1, btrfs); use --reflink auto to copy instead"
                    ),
                ));
            }
            tracing::info!("sharing blocks (FICLONERANGE) unavailable here ({e}); copying instead");
            self.reflink_ok.store(false, Ordering::Relaxed);
            return Ok(false);
        }
        self.copied[0].fetch_add(body, Ordering::Relaxed);
        // The unaligned ends are shorter than a block: copy_from copies them.
        let tail = len - head - body;
        self.copy_from(src, src_offset, offset, head)?;
        self.copy_from(src, src_offset + head + body, offset + head + body, tail)?;
        Ok(true)
    }

    /// Writes zeros into each hole the file system reports, so that no byte is sparse.
    fn fill_holes(&self) -> Result<()> {
        let fd = self.file.as_raw_fd();
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::output_io(&self.dst, "the file's metadata", e))?
            .len();
        let zeros = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < len {
            // SAFETY: lseek on a descriptor we own; no memory is passed.
            let hole = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_HOLE) };
            if hole < 0 || hole as u64 >= len {
                break;
            }
            let hole = hole as u64;
            // SAFETY: as above.
            let data = unsafe { libc::lseek(fd, hole as libc::off_t, libc::SEEK_DATA) };
            let end = if data < 0 {
                len
            } else {
                (data as u64).min(len)
            };
            let mut at = hole;
            while at < end {
                let n = (end - at).min(zeros.len() as u64) as usize;
                self.write_at(&zeros[..n], at)?;
                at += n as u64;
            }
            pos = end;
        }
        Ok(())
    }

    /// Flushes the data, renames the temporary file to DST (refusing to replace a file
    /// that appeared there meanwhile unless --force) and flushes the folder, so that the
    /// rename itself survives a crash.
    pub fn commit(&self) -> Result<()> {
        if self.holes.fill {
            self.fill_holes()?;
        }
        self.file
            .sync_all()
            .map_err(|e| Error::output_io(&self.dst, "(flushing to disk)", e))?;
        rename_into_place(&self.dir, &self.temp_name, &self.dir, &self.name, self.force).map_err(|e| {
            if e.raw_os_error() == Some(libc::EEXIST) {
                Error::output(
                    ErrorKind::Exists,
                    &self.dst,
                    "appeared while the conversion ran; nothing was replaced (pass --force to replace it)",
                )
            } else {
                Error::output_io(&self.dst, "(renaming the finished file into place)", e)
            }
        })?;
        self.committed.store(true, Ordering::SeqCst);
        sync_dir(&self.dir).map_err(|e| {
            Error::output_io(
                &self.dst,
                "(flushing its folder so the rename is durable)",
                e,
            )
        })
    }
}

impl Sink for Output {
    fn path(&self) -> &Path {
        &self.dst
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.file.write_all_at(buf, offset).map_err(|e| {
            Error::output_io(
                &self.dst,
                format!("{} bytes at offset {offset}", buf.len()),
                e,
            )
        })
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            Error::output_io(
                &self.dst,
                format!("(reading back {} bytes at offset {offset})", buf.len()),
                e,
            )
        })
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| Error::output_io(&self.dst, format!("the file's length ({len} bytes)"), e))
    }

    /// Copies with copy_file_range (the kernel copies, or the file system shares the
    /// blocks), falling back to reading and writing where the file systems do not support
    /// it. A source that ends early is an input error.
    fn copy_from(&self, src: &File, src_offset: u64, offset: u64, len: u64) -> Result<()> {
        // Shared blocks first (`--reflink`): metadata only, where the file systems allow.
        if len > 0 && self.may_share() && self.copy_shared(src, src_offset, offset, len)? {
            return Ok(());
        }
        let (Ok(mut from), Ok(mut to)) = (
            libc::off64_t::try_from(src_offset),
            libc::off64_t::try_from(offset),
        ) else {
            return self.copy_by_reading(src, src_offset, offset, len);
        };
        let mut left = len;
        if !self.copy_offload.load(Ordering::Relaxed) {
            return self.copy_by_reading(src, src_offset, offset, len);
        }
        while left > 0 {
            let chunk = left.min(1 << 30) as usize;
            // SAFETY: both descriptors are open; the offsets are plain integers the call
            // updates; no buffers are involved.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut from,
                    self.file.as_raw_fd(),
                    &mut to,
                    chunk,
                    0,
                )
            };
            if n > 0 {
                left -= n as u64;
                self.copied[1].fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
            let err = io::Error::last_os_error();
            if n == 0 {
                // End of the source before `len` bytes: it shrank under us.
                return Err(Error::truncated(
                    &self.dst,
                    "source data",
                    from as u64,
                    format!(
                        "the input ended {left} bytes early; did the source change during the conversion?"
                    ),
                ));
            }
            if matches!(
                err.raw_os_error(),
                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
            ) {
                // Not between these file systems: stop asking. Reading instead also
                // finds zeros, which a kernel copy would have written out.
                tracing::info!(
                    "copy_file_range unavailable here ({err}); reading and writing instead"
                );
                self.copy_offload.store(false, Ordering::Relaxed);
                return self.copy_by_reading(src, from as u64, to as u64, left);
            }
            return Err(Error::output_io(
                &self.dst,
                format!("{left} bytes at offset {to} (copy_file_range)"),
                err,
            ));
        }
        Ok(())
    }

    fn hole_piece(&self) -> usize {
        self.holes.piece
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.committed.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// DST's folder and file name.
fn split_dst(dst: &Path) -> Result<(PathBuf, OsString)> {
    let dir = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dst.file_name().ok_or_else(|| {
        Error::output(
            ErrorKind::OutputIo,
            dst,
            "is not a file name (it ends in '..' or '/')",
        )
    })?;
    Ok((dir, name.to_os_string()))
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte"))
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let c = cstr(dir.as_os_str())?;
    // SAFETY: NUL-terminated path; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sync_dir(dir: &OwnedFd) -> io::Result<()> {
    // SAFETY: fsync on a descriptor we own.
    if unsafe { libc::fsync(dir.as_raw_fd()) } < 0 {
        let err = io::Error::last_os_error();
        // Some file systems cannot flush a folder; nothing more can be done there.
        if err.raw_os_error() == Some(libc::EINVAL) {
            return Ok(());
        }
        return Err(err);
    }
    Ok(())
}

/// Renames `from` in `from_dir` to `to` in `to_dir`. Without `replace`, an existing `to`
/// is never replaced: renameat2(RENAME_NOREPLACE), or where the file system lacks it, a
/// hard link (which fails on an existing name) and an unlink.
fn rename_into_place(
    from_dir: &OwnedFd,
    from: &OsStr,
    to_dir: &OwnedFd,
    to: &OsStr,
    replace: bool,
) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    let (fd, td) = (from_dir.as_raw_fd(), to_dir.as_raw_fd());
    if replace {
        // SAFETY: valid descriptors and NUL-terminated names.
        if unsafe { libc::renameat(fd, f.as_ptr(), td, t.as_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(());
    }
    // SAFETY: as above.
    let r = unsafe { libc::renameat2(fd, f.as_ptr(), td, t.as_ptr(), libc::RENAME_NOREPLACE) };
    if r == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(err);
    }
    // SAFETY: as above.
    if unsafe { libc::linkat(fd, f.as_ptr(), td, t.as_ptr(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    unsafe { libc::unlinkat(fd, f.as_ptr(), 0) };
    Ok(())
}

/// Moves the finished file `from` to `to` (both on one file system), never replacing an
/// existing `to` unless `replace`, and flushes both folders so the move is durable.
pub fn move_into_place(from: &Path, to: &Path, replace: bool) -> Result<()> {
    let (from_dir, from_name) = split_dst(from)?;
    let (to_dir, to_name) = split_dst(to)?;
    let fd_from =
        open_dir(&from_dir).map_err(|e| Error::output_io(from, "(opening its folder)", e))?;
    let fd_to = open_dir(&to_dir).map_err(|e| Error::output_io(to, "into its folder", e))?;
    rename_into_place(&fd_from, &from_name, &fd_to, &to_name, replace).map_err(|e| {
        if e.raw_os_error() == Some(libc::EEXIST) {
            Error::exists(to)
        } else {
            Error::output_io(
                to,
                format!(
                    "(renaming {} into place; both must be on one file system)",
                    from.display()
                ),
                e,
            )
        }
    })?;
    for (fd, path) in [(&fd_from, from), (&fd_to, to)] {
        sync_dir(fd).map_err(|e| {
            Error::output_io(path, "(flushing its folder so the rename is durable)", e)
        })?;
    }
    Ok(())
}

/// This machine's name, for temporary file names: on shared storage, a run only removes
/// temporary files its own machine left.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its length.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    let name = if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if clean.is_empty() {
        "host".into()
    } else {
        clean
    }
}

/// Removes `.NAME.vdconv-HOST-PID.tmp` files this machine left for this DST whose process
/// is gone (or is no longer vdconv). Best effort: what cannot be removed stays.
fn remove_stale_temps(dir: &OwnedFd, dir_path: &Path, name: &OsStr) {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(format!("{TEMP_TAG}{}-", host_name()));
    let prefix = prefix.as_bytes().to_vec();
    let Ok(entries) = std::fs::read_dir(dir_path) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let bytes = file.as_bytes();
        let Some(rest) = bytes.strip_prefix(prefix.as_slice()) else {
            continue;
        };
        let Some(pid) = rest
            .strip_suffix(TEMP_SUFFIX.as_bytes())
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || process_is_vdconv(pid) {
            continue;
        }
        if let Ok(c) = cstr(&file) {
            // SAFETY: valid descriptor and NUL-terminated name.
            unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
            tracing::info!(
                "removed {}, left by an earlier run (process {pid} is gone)",
                dir_path.join(&file).display()
            );
        }
    }
}

/// Whether process `pid` exists and runs vdconv.
fn process_is_vdconv(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/comm")) {
        Ok(comm) => comm.trim_ascii_end() == b"vdconv" || comm.starts_with(b"vdconv"),
        Err(_) => false,
    }
}

/// Free bytes the destination's file system offers an unprivileged writer.
pub fn free_space(dst: &Path) -> Option<u64> {
    let (dir, _) = split_dst(dst).ok()?;
    let c = cstr(dir.as_os_str()).ok()?;
    // SAFETY: statvfs fills the zeroed struct; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vdconv-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const HOLES: HolePolicy = HolePolicy {
        piece: 64 * 1024,
        fill: false,
    };

    #[test]
    fn commit_never_replaces_a_file_that_appeared() {
        let d = scratch("noreplace");
        let dst = d.join("out.vhd");
        let out = Output::create(&dst, false, HOLES).unwrap();
        out.write_at(b"new", 0).unwrap();
        std::fs::write(&dst, b"someone else's").unwrap();
        let e = out.commit().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Exists);
        drop(out);
        assert_eq!(std::fs::read(&dst).unwrap(), b"someone else's");
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            1,
            "temporary removed"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stale_temporaries_of_dead_runs_are_removed() {
        let d = scratch("stale");
        let dst = d.join("disk.vhd");
        // PID 0 never names a process that could be running vdconv.
        let stale = d.join(format!(".disk.vhd{TEMP_TAG}{}-0{TEMP_SUFFIX}", host_name()));
        let other_host = d.join(format!(".disk.vhd{TEMP_TAG}elsewhere-0{TEMP_SUFFIX}"));
        std::fs::write(&stale, b"x").unwrap();
        std::fs::write(&other_host, b"x").unwrap();
        let out = Output::create(&dst, false, HOLES).unwrap();
        assert!(!stale.exists());
        assert!(other_host.exists(), "another machine's file is left alone");
        out.commit().unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_folder_as_destination_is_refused_before_writing() {
        let d = scratch("folder");
        let e = Output::create(&d, true, HOLES).err().unwrap();
        assert_eq!(e.class().code(), 4);
        assert!(e.to_string().contains("is a folder"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}

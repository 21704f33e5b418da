//! Input files, opened once and read through that one descriptor: every read is bounded by
//! the file's length at open time, the type is checked on the open descriptor (so a FIFO
//! or a device is refused without blocking on it), and files a descriptor names are opened
//! beneath its folder, so a link swapped in between a check and an open cannot escape it.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::{Run, RunKind, push_run};
use crate::error::{Error, Result};

/// An opened input file whose reads are bounded by its length at open time. Clones share
/// the descriptor (reads are positioned, so they do not disturb each other).
#[derive(Debug, Clone)]
pub struct InputFile {
    path: PathBuf,
    /// Shared so that the writing thread can copy straight from it.
    file: Arc<File>,
    /// Where this input starts in `file`: 0, or a member's offset inside an archive.
    base: u64,
    len: u64,
}

/// Why a file could not be opened as an input.
#[derive(Debug)]
pub enum OpenError {
    /// The OS refused (missing, permission, ...).
    Io(io::Error),
    /// The name leads outside the folder (absolute, `..`, or a link out of it).
    Escapes,
    /// It opened, but is a directory, FIFO, socket or device (named in the string).
    NotRegular(&'static str),
}

impl InputFile {
    /// Opens a file the user named. Links are followed (the user chose the name); anything
    /// but a regular file is refused, and a FIFO is never waited on.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags_nonblocking()
            .open(path)
            .map_err(|e| Error::input_io(path, "the file", e))?;
        Self::from_open(path, file).map_err(|e| match e {
            OpenError::Io(e) => Error::input_io(path, "the file's metadata", e),
            OpenError::NotRegular(what) => Error::not_a_file(
                path,
                format!("is {what}, not a disk image file (pipes are read only as OVA exports)"),
            ),
            OpenError::Escapes => Error::refused(path, "leads outside its folder"),
        })
    }

    /// An input over `bytes` held in memory (a memfd opened through /proc), for the fuzz
    /// entry points: no temporary file. None when the system offers no memfd.
    pub fn from_memory(bytes: &[u8]) -> Option<InputFile> {
        // SAFETY: memfd_create takes a NUL-terminated name and flags and returns a new
        // descriptor or -1; the descriptor is owned by the File made from it.
        let fd = unsafe { libc::memfd_create(c"vdconv-fuzz".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(bytes.len() as u64).ok()?;
        write_nonzero_pages(&file, bytes).ok()?;
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        // The reopened description keeps the memory alive after `file` is dropped.
        InputFile::open(Path::new(&path)).ok()
    }

    /// Wraps a file already open; `path` is for messages. Refuses what is not a regular file.
    pub fn from_open(path: &Path, file: File) -> std::result::Result<Self, OpenError> {
        let meta = file.metadata().map_err(OpenError::Io)?;
        let kind = file_kind(&meta);
        if kind != "a regular file" {
            return Err(OpenError::NotRegular(kind));
        }
        Ok(InputFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            base: 0,
            len: meta.len(),
        })
    }

    /// A bounded window of a file already open: `len` bytes from `offset` (a member of an
    /// OVA read in place, without copying it out). Reads at 0 read `file` at `offset`,
    /// and nothing past `offset + len` can be read. `path` names it in messages. Fails
    /// when the window does not lie inside the file.
    pub fn from_range(path: &Path, file: Arc<File>, offset: u64, len: u64) -> Result<Self> {
        let file_len = file
            .metadata()
            .map_err(|e| Error::input_io(path, "the file's metadata", e))?
            .len();
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(Error::truncated(
                path,
                "archive member",
                offset,
                format!("{len} bytes extend past the end of the file ({file_len} bytes)"),
            ));
        }
        Ok(InputFile {
            path: path.to_path_buf(),
            file,
            base: offset,
            len,
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

    /// The whole underlying file: byte `offset` of this input is byte `base() + offset`
    /// of it.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// As `file`, shared.
    pub fn shared(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Where this input starts in the underlying file (0 unless made by `from_range`).
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Appends to `out`, shifted by `base`, the runs of `[offset, offset + len)` that the
    /// file system stores (Data) and that are holes (Zero), as SEEK_DATA/SEEK_HOLE
    /// report them; everything is Data where the file system cannot tell.
    pub fn map_holes(&self, offset: u64, len: u64, base: u64, out: &mut Vec<Run>) {
        if self.base != 0 {
            // A window of a larger file (an archive member): the file system's holes are
            // the archive's, so report everything as data rather than translate offsets.
            push_run(out, base, len, RunKind::Data);
            return;
        }
        let fd = self.file.as_raw_fd();
        let end = offset.saturating_add(len);
        let mut pos = offset;
        while pos < end {
            let Ok(at) = libc::off_t::try_from(pos) else {
                push_run(out, base + pos - offset, end - pos, RunKind::Data);
                return;
            };
            // SAFETY: lseek on a descriptor we own; no memory is passed. Positioned reads
            // elsewhere do not depend on the file offset this moves.
            let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
            if data < 0 {
                let errno = io::Error::last_os_error().raw_os_error();
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
    /// range does not lie inside the file (a truncated file) or the read fails.
    pub fn read_exact_at(
        &self,
        buf: &mut [u8],
        offset: u64,
        structure: &'static str,
    ) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(Error::truncated(
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
        // In range of the window, so inside the file: base + len was checked at creation.
        self.file
            .read_exact_at(buf, self.base + offset)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    Error::truncated(
                        &self.path,
                        structure,
                        offset,
                        "the file shrank while it was being read",
                    )
                } else {
                    Error::input_io(&self.path, format!("{structure} at offset {offset}"), e)
                }
            })
    }

    /// Whether `[offset, offset + len)` lies inside the file.
    pub fn holds(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }
}

/// Positioned reads bounded by a length: an `InputFile`, or a view of one (a VHDX whose
/// log is replayed in memory reads its metadata through the replay).
pub trait ReadAt {
    /// Reads exactly `buf.len()` bytes at `offset`, or fails naming `structure`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64, structure: &'static str) -> Result<()>;
}

impl ReadAt for InputFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64, structure: &'static str) -> Result<()> {
        InputFile::read_exact_at(self, buf, offset, structure)
    }
}

/// What a file is, for messages.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Opening without blocking: a FIFO opened for reading would otherwise wait for a writer.
trait NonBlocking {
    fn custom_flags_nonblocking(&mut self) -> &mut Self;
}

impl NonBlocking for std::fs::OpenOptions {
    fn custom_flags_nonblocking(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

/// A folder opened once, in which files named by a descriptor are opened.
#[derive(Debug)]
pub struct Folder {
    path: PathBuf,
    fd: OwnedFd,
}

impl Folder {
    /// Opens the folder holding `file` (its parent, or `.`).
    pub fn of(file: &Path) -> Result<Self> {
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let c = cstring(dir).map_err(|e| Error::input_io(dir, "the folder", e))?;
        // SAFETY: a NUL-terminated path; the returned descriptor is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(Error::input_io(
                dir,
                "the folder",
                io::Error::last_os_error(),
            ));
        }
        Ok(Folder {
            path: dir.to_path_buf(),
            // SAFETY: fd is a fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `name` (as written in a descriptor) for reading. With `confine`, the name must
    /// stay beneath this folder: absolute names, `..` and links leading out are refused,
    /// decided by the kernel on the open itself (openat2 RESOLVE_BENEATH), or where that is
    /// missing by opening one component at a time without following links. The result is
    /// type-checked on its descriptor.
    pub fn open(&self, name: &Path, confine: bool) -> std::result::Result<InputFile, OpenError> {
        let shown = self.path.join(name);
        let file = if confine {
            if name.is_absolute() || name.components().any(|c| c == Component::ParentDir) {
                return Err(OpenError::Escapes);
            }
            self.open_beneath(name)?
        } else {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags_nonblocking()
                .open(&shown)
                .map_err(OpenError::Io)?
        };
        InputFile::from_open(&shown, file)
    }

    fn open_beneath(&self, name: &Path) -> std::result::Result<File, OpenError> {
        let c = cstring(name).map_err(OpenError::Io)?;
        // SAFETY: open_how is plain data; zeroed then filled.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: valid descriptor, NUL-terminated path, a properly sized open_how.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh descriptor we own.
            return Ok(unsafe { File::from_raw_fd(fd as i32) });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EXDEV) => Err(OpenError::Escapes),
            Some(libc::ENOSYS | libc::EPERM) => self.open_walking(name),
            _ => Err(OpenError::Io(err)),
        }
    }

    /// Where openat2 is missing: one component at a time, links refused outright.
    fn open_walking(&self, name: &Path) -> std::result::Result<File, OpenError> {
        let parts: Vec<_> = name
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect();
        let mut dir = self.fd.as_raw_fd();
        let mut owned: Option<OwnedFd> = None;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let c = cstring(Path::new(part.as_os_str())).map_err(OpenError::Io)?;
            let flags = libc::O_NOFOLLOW
                | libc::O_CLOEXEC
                | if last {
                    libc::O_RDONLY | libc::O_NONBLOCK
                } else {
                    libc::O_PATH | libc::O_DIRECTORY
                };
            // SAFETY: valid descriptor and NUL-terminated name.
            let fd = unsafe { libc::openat(dir, c.as_ptr(), flags) };
            if fd < 0 {
                let err = io::Error::last_os_error();
                return Err(match err.raw_os_error() {
                    Some(libc::ELOOP | libc::ENOTDIR) => OpenError::Escapes,
                    _ => OpenError::Io(err),
                });
            }
            // SAFETY: fresh descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            if last {
                return Ok(File::from(fd));
            }
            dir = fd.as_raw_fd();
            owned = Some(fd);
        }
        drop(owned);
        Err(OpenError::Io(io::Error::from(io::ErrorKind::NotFound)))
    }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// Writes the pages of `bytes` that hold data at their offsets in `file` (already sized),
/// leaving the zero pages as holes. Fuzzed images are mostly zeros (a VHDX log target
/// input is a 5 MiB file with a few pages of data): writing every byte to a memfd and
/// freeing it again took half of that target's time. The comparison against a zero page
/// is a `memcmp`, which fuzzing builds do not instrument byte by byte. The image fuzz
/// targets write their scratch file with it too.
pub fn write_nonzero_pages(file: &File, bytes: &[u8]) -> io::Result<()> {
    const PAGE: usize = 4096;
    static ZERO: [u8; PAGE] = [0; PAGE];
    let mut run: Option<usize> = None;
    for (index, page) in bytes.chunks(PAGE).enumerate() {
        let at = index * PAGE;
        let data = page != &ZERO[..page.len()];
        match (data, run) {
            (true, None) => run = Some(at),
            (false, Some(start)) => {
                file.write_all_at(&bytes[start..at], start as u64)?;
                run = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run {
        file.write_all_at(&bytes[start..], start as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vdconv-input-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn an_image_in_memory_reads_back_exactly_with_its_zero_pages_left_as_holes() {
        // Data pages, zero pages between and after them, and a partial last page.
        let mut bytes = vec![0u8; 5 * 4096 + 100];
        bytes[1] = 1;
        bytes[2 * 4096 + 4095] = 2;
        bytes[3 * 4096] = 3;
        bytes[5 * 4096 + 99] = 4;
        let file = InputFile::from_memory(&bytes).unwrap();
        assert_eq!(file.len(), bytes.len() as u64);
        let mut back = vec![0xAAu8; bytes.len()];
        file.read_exact_at(&mut back, 0, "all").unwrap();
        assert_eq!(back, bytes);
        // Pages 1 and 4 were never written.
        let allocated =
            std::os::unix::fs::MetadataExt::blocks(&file.file().metadata().unwrap()) * 512;
        assert_eq!(allocated, 4 * 4096, "pages 0, 2, 3 and 5 hold data");
        assert_eq!(InputFile::from_memory(&[]).unwrap().len(), 0);
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = scratch("fifo");
        let fifo = d.join("pipe");
        let c = cstring(&fifo).unwrap();
        // SAFETY: NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = InputFile::open(&fifo).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::NotAFile);
        assert!(e.to_string().contains("FIFO"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn names_are_opened_beneath_the_folder() {
        let d = scratch("beneath");
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/x-flat.vmdk"), b"data").unwrap();
        std::fs::write(d.join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink("../outside", d.join("sub/link")).unwrap();
        std::os::unix::fs::symlink("x-flat.vmdk", d.join("sub/inner")).unwrap();
        let folder = Folder::of(&d.join("sub/disk.vmdk")).unwrap();
        let f = folder.open(Path::new("x-flat.vmdk"), true).unwrap();
        assert_eq!(f.len(), 4);
        assert!(
            folder.open(Path::new("inner"), true).is_ok(),
            "links inside stay allowed"
        );
        assert!(matches!(
            folder.open(Path::new("link"), true),
            Err(OpenError::Escapes)
        ));
        assert!(matches!(
            folder.open(Path::new("../outside"), true),
            Err(OpenError::Escapes)
        ));
        assert!(matches!(
            folder.open(Path::new("/etc/passwd"), true),
            Err(OpenError::Escapes)
        ));
        assert!(folder.open(Path::new("link"), false).is_ok());
        // The fallback walk refuses every link, the inner one too.
        assert!(matches!(
            folder.open_walking(Path::new("link")),
            Err(OpenError::Escapes)
        ));
        assert!(folder.open_walking(Path::new("x-flat.vmdk")).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }
}

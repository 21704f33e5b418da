//! The destination file: written under a temporary name beside DST and renamed into place
//! only when complete and flushed, so a failed or interrupted run leaves no DST behind and
//! never touches an existing one.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

pub struct Output {
    dst: PathBuf,
    temp: PathBuf,
    file: File,
    /// Write zeros into every hole before committing (files headed to NTFS).
    fill_holes: bool,
    /// Whether copy_file_range still seems to work between the inputs and this file;
    /// shared with the reading side, which stops offering copies once it fails.
    copy_offload: Arc<AtomicBool>,
    /// Buffer for copies the kernel cannot do.
    copy_buffer: std::cell::RefCell<Vec<u8>>,
    committed: bool,
}

impl Output {
    /// Creates the temporary file. Refuses when DST exists and `force` is false. With
    /// `fill_holes`, every range left unwritten is written as zeros before the commit.
    pub fn create(dst: &Path, force: bool, fill_holes: bool) -> Result<Self> {
        if !force && std::fs::symlink_metadata(dst).is_ok() {
            return Err(Error::OutputExists {
                path: dst.to_path_buf(),
            });
        }
        let dir = match dst.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = dst
            .file_name()
            .ok_or_else(|| Error::Usage(format!("{}: not a file name", dst.display())))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".vdconv-{}.tmp", std::process::id()));
        let temp = dir.join(temp_name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| Error::output_io(dst, "a temporary file beside it", e))?;
        Ok(Output {
            dst: dst.to_path_buf(),
            temp,
            file,
            fill_holes,
            copy_offload: Arc::new(AtomicBool::new(true)),
            copy_buffer: std::cell::RefCell::new(Vec::new()),
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dst
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

    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.file.write_all_at(buf, offset).map_err(|e| {
            Error::output_io(
                &self.dst,
                format!("{} bytes at offset {offset}", buf.len()),
                e,
            )
        })
    }

    /// Writes `buf` at `offset`, skipping 64 KiB pieces that are all zeros: they stay
    /// holes, which read as zeros (and are filled at commit when holes are refused).
    pub fn write_nonzero(&self, buf: &[u8], offset: u64) -> Result<()> {
        const PIECE: usize = 64 * 1024;
        let mut start: Option<usize> = None;
        let mut pos = 0;
        while pos < buf.len() {
            let end = (pos + PIECE).min(buf.len());
            let zero = crate::convert::is_zero(&buf[pos..end]);
            match (zero, start) {
                (false, None) => start = Some(pos),
                (true, Some(s)) => {
                    self.write_at(&buf[s..pos], offset + s as u64)?;
                    start = None;
                }
                _ => {}
            }
            pos = end;
        }
        if let Some(s) = start {
            self.write_at(&buf[s..], offset + s as u64)?;
        }
        Ok(())
    }

    /// Copies `len` bytes from `src` at `src_offset` to `offset`, with copy_file_range
    /// (the kernel copies, or the file system shares the blocks), falling back to
    /// reading and writing where the file systems do not support it.
    pub fn copy_from(&self, src: &File, src_offset: u64, offset: u64, len: u64) -> Result<()> {
        use std::os::fd::AsRawFd;
        let (mut from, mut to, mut left) =
            (src_offset as libc::off64_t, offset as libc::off64_t, len);
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
                continue;
            }
            let err = std::io::Error::last_os_error();
            if n == 0
                || matches!(
                    err.raw_os_error(),
                    Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
                )
            {
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

    fn copy_by_reading(&self, src: &File, mut from: u64, mut to: u64, mut left: u64) -> Result<()> {
        let mut buf = self.copy_buffer.borrow_mut();
        buf.resize(1 << 20, 0);
        while left > 0 {
            let n = (left as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], from).map_err(|e| {
                Error::output_io(
                    &self.dst,
                    format!("(copying {n} bytes of input at offset {from})"),
                    e,
                )
            })?;
            self.write_nonzero(&buf[..n], to)?;
            (from, to, left) = (from + n as u64, to + n as u64, left - n as u64);
        }
        Ok(())
    }

    pub fn set_len(&self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| Error::output_io(&self.dst, format!("the file's length ({len} bytes)"), e))
    }

    /// Writes zeros into each hole the file system reports, so that no byte is sparse.
    fn fill_holes(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
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

    /// Flushes the data and renames the temporary file to DST.
    pub fn commit(mut self) -> Result<()> {
        if self.fill_holes {
            self.fill_holes()?;
        }
        self.file
            .sync_all()
            .map_err(|e| Error::output_io(&self.dst, "(flushing to disk)", e))?;
        std::fs::rename(&self.temp, &self.dst).map_err(|e| {
            Error::output_io(&self.dst, "(renaming the finished file into place)", e)
        })?;
        self.committed = true;
        if let Some(dir) = self.dst.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(d) = File::open(dir)
        {
            // Make the rename itself durable; failure here loses nothing already written.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

//! Opening the files of an OVF folder so that no name can reach outside it: not with
//! `..` or an absolute path (refused earlier, in `names`), and not through a symbolic
//! link either. The kernel resolves the name beneath the folder's descriptor
//! (openat2 with RESOLVE_BENEATH, which still follows links that stay inside); where
//! openat2 is unavailable (kernels before 5.6, seccomp filters), each component is
//! opened with O_NOFOLLOW, so no link at all is followed. Either way the check is made
//! on the descriptor that is then read, so a rename between check and read changes
//! nothing. The opened file must be a regular file: devices and FIFOs are never read
//! (and O_NONBLOCK keeps opening a FIFO from hanging).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Why a name could not be opened beneath the folder.
#[derive(Debug)]
pub enum OpenError {
    /// No such file.
    Missing(io::Error),
    /// The name resolves outside the folder, or through a link this mode does not follow.
    Escapes(String),
    /// It exists but is not a regular file.
    NotRegular,
    Io(io::Error),
}

/// A folder whose files are opened beneath it.
#[derive(Debug)]
pub struct Folder {
    dir: OwnedFd,
    path: PathBuf,
}

impl Folder {
    pub fn open(path: &Path) -> io::Result<Folder> {
        let c = cstring(path.as_os_str().as_encoded_bytes())?;
        // SAFETY: a NUL-terminated path; the descriptor returned is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Folder {
            // SAFETY: fd is a fresh descriptor nobody else owns.
            dir: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `name` (normalised: relative, `/`-separated, no `..`) beneath the folder.
    pub fn open_file(&self, name: &str) -> Result<File, OpenError> {
        let file = match self.open_beneath(name) {
            Err(OpenError::Io(e)) if fallback_needed(&e) => self.open_no_links(name)?,
            other => other?,
        };
        let meta = file.metadata().map_err(OpenError::Io)?;
        if !meta.is_file() {
            return Err(OpenError::NotRegular);
        }
        Ok(file)
    }

    /// openat2 with RESOLVE_BENEATH: the kernel refuses any step outside the folder.
    fn open_beneath(&self, name: &str) -> Result<File, OpenError> {
        let c = cstring(name.as_bytes()).map_err(OpenError::Io)?;
        let how = OpenHow {
            flags: (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64,
            mode: 0,
            resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: openat2 reads the NUL-terminated name and `how` (of the size passed)
        // and returns a new descriptor, owned below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOENT) => OpenError::Missing(e),
                Some(libc::EXDEV) => {
                    OpenError::Escapes("resolves outside the folder through a link".into())
                }
                Some(libc::ELOOP) => OpenError::Escapes("goes through a link loop".into()),
                _ => OpenError::Io(e),
            });
        }
        // SAFETY: a fresh descriptor nobody else owns; the kernel returns an int.
        Ok(unsafe { File::from_raw_fd(fd as i32) })
    }

    /// One component at a time with O_NOFOLLOW: no link is followed, in or out.
    pub(crate) fn open_no_links(&self, name: &str) -> Result<File, OpenError> {
        let parts: Vec<&str> = name.split('/').collect();
        let mut current: Option<OwnedFd> = None;
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() || *part == "." || *part == ".." {
                return Err(OpenError::Escapes(format!("has the component {part:?}")));
            }
            let last = i + 1 == parts.len();
            let flags = libc::O_RDONLY
                | libc::O_CLOEXEC
                | libc::O_NOFOLLOW
                | if last {
                    libc::O_NOCTTY | libc::O_NONBLOCK
                } else {
                    libc::O_DIRECTORY
                };
            let c = cstring(part.as_bytes()).map_err(OpenError::Io)?;
            let at = current.as_ref().unwrap_or(&self.dir).as_raw_fd();
            // SAFETY: openat on a descriptor we own with a NUL-terminated name.
            let fd = unsafe { libc::openat(at, c.as_ptr(), flags) };
            if fd < 0 {
                let e = io::Error::last_os_error();
                return Err(match e.raw_os_error() {
                    Some(libc::ENOENT) => OpenError::Missing(e),
                    Some(libc::ELOOP) => OpenError::Escapes(format!(
                        "{part:?} is a symbolic link, which is not followed"
                    )),
                    Some(libc::ENOTDIR) if !last => OpenError::Escapes(format!(
                        "{part:?} is not a folder (or is a link to one)"
                    )),
                    _ => OpenError::Io(e),
                });
            }
            // SAFETY: a fresh descriptor nobody else owns.
            current = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        current
            .map(File::from)
            .ok_or_else(|| OpenError::Escapes("is empty".into()))
    }
}

/// `struct open_how` of openat2(2) (libc's is non-exhaustive, so not constructible).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2 is missing (ENOSYS), filtered (EPERM under some seccomp profiles), or does not
/// know a flag (EINVAL on early kernels): use the portable walk instead.
fn fallback_needed(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EINVAL) | Some(libc::E2BIG)
    )
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_out_are_refused_in_both_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pkg");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/in.vmdk"), b"x").unwrap();
        std::fs::write(tmp.path().join("secret"), b"s").unwrap();
        symlink("../secret", root.join("out")).unwrap();
        symlink("sub", root.join("linkdir")).unwrap();
        let folder = Folder::open(&root).unwrap();

        assert!(folder.open_file("sub/in.vmdk").is_ok());
        assert!(folder.open_no_links("sub/in.vmdk").is_ok());
        assert!(matches!(
            folder.open_file("out"),
            Err(OpenError::Escapes(_))
        ));
        assert!(matches!(
            folder.open_no_links("out"),
            Err(OpenError::Escapes(_))
        ));
        assert!(matches!(
            folder.open_no_links("linkdir/in.vmdk"),
            Err(OpenError::Escapes(_))
        ));
        assert!(matches!(
            folder.open_file("nope"),
            Err(OpenError::Missing(_))
        ));
        assert!(matches!(
            folder.open_file("sub"),
            Err(OpenError::NotRegular)
        ));
    }
}

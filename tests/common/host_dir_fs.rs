//! A read-only GuestFs over a directory of the host, so the checks can be tested without
//! disk images. Paths resolve inside the directory: absolute symlink targets start at its
//! root and `..` stops there; the last component is not followed (lstat), as the trait says.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use vdconv::guest::fs::{DirEntry, FileKind, GuestFs, MAX_DIR_ENTRIES, MAX_SYMLINK_HOPS, Metadata};
use vdconv::guest::{GuestError, GuestResult};

pub struct HostDirFs {
    pub root: PathBuf,
    pub kind: &'static str,
    pub uuid: Option<String>,
    pub label: Option<String>,
}

impl HostDirFs {
    pub fn new(root: &Path, kind: &'static str, uuid: Option<&str>, label: Option<&str>) -> Self {
        HostDirFs {
            root: root.to_path_buf(),
            kind,
            uuid: uuid.map(str::to_string),
            label: label.map(str::to_string),
        }
    }

    /// The host path for a guest path, following symlinks in all but the last component.
    fn host_path(&self, path: &[u8]) -> GuestResult<PathBuf> {
        let text = String::from_utf8_lossy(path).into_owned();
        let mut todo: Vec<String> = text
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_string)
            .rev()
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(comp) = todo.pop() {
            if comp == ".." {
                done.pop();
                continue;
            }
            let candidate = self.root.join(done.iter().collect::<PathBuf>()).join(&comp);
            if todo.is_empty() {
                return Ok(candidate);
            }
            let meta =
                fs::symlink_metadata(&candidate).map_err(|_| GuestError::NotFound(text.clone()))?;
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(GuestError::Limit(format!("{text}: too many symlinks")));
                }
                let target = fs::read_link(&candidate).map_err(|e| io(&text, e))?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                for c in target
                    .split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .rev()
                {
                    todo.push(c.to_string());
                }
            } else if meta.is_dir() {
                done.push(comp);
            } else {
                return Err(GuestError::WrongKind {
                    path: text,
                    detail: "not a directory".into(),
                });
            }
        }
        Ok(self.root.join(done.iter().collect::<PathBuf>()))
    }
}

fn io(what: &str, e: std::io::Error) -> GuestError {
    if e.kind() == std::io::ErrorKind::NotFound {
        return GuestError::NotFound(what.to_string());
    }
    GuestError::Io {
        what: what.to_string(),
        offset: 0,
        detail: e.to_string(),
    }
}

fn kind_of(t: fs::FileType) -> FileKind {
    if t.is_symlink() {
        FileKind::Symlink
    } else if t.is_dir() {
        FileKind::Dir
    } else if t.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

impl GuestFs for HostDirFs {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn uuid(&self) -> Option<String> {
        self.uuid.clone()
    }

    fn label(&self) -> Option<String> {
        self.label.clone()
    }

    fn metadata(&self, path: &[u8]) -> GuestResult<Metadata> {
        let p = self.host_path(path)?;
        let what = String::from_utf8_lossy(path);
        let m = fs::symlink_metadata(&p).map_err(|e| io(&what, e))?;
        let size = if m.file_type().is_symlink() {
            fs::read_link(&p)
                .map(|t| t.as_os_str().len() as u64)
                .unwrap_or(0)
        } else {
            m.len()
        };
        Ok(Metadata {
            kind: kind_of(m.file_type()),
            size,
        })
    }

    fn read_dir(&self, path: &[u8]) -> GuestResult<Vec<DirEntry>> {
        let what = String::from_utf8_lossy(path).into_owned();
        // A directory reached through a final symlink is not followed either.
        let p = self.host_path(path)?;
        let m = fs::symlink_metadata(&p).map_err(|e| io(&what, e))?;
        if !m.is_dir() {
            return Err(GuestError::WrongKind {
                path: what,
                detail: "not a directory".into(),
            });
        }
        let mut out = Vec::new();
        for e in fs::read_dir(&p)
            .map_err(|e| io(&what, e))?
            .take(MAX_DIR_ENTRIES)
        {
            let e = e.map_err(|e| io(&what, e))?;
            let t = e.file_type().map_err(|e| io(&what, e))?;
            out.push(DirEntry {
                name: e.file_name().as_bytes().to_vec(),
                kind: kind_of(t),
            });
        }
        Ok(out)
    }

    fn read_file(&self, path: &[u8], limit: u64) -> GuestResult<Vec<u8>> {
        let what = String::from_utf8_lossy(path).into_owned();
        let p = self.host_path(path)?;
        let m = fs::symlink_metadata(&p).map_err(|e| io(&what, e))?;
        if !m.is_file() {
            return Err(GuestError::WrongKind {
                path: what,
                detail: "not a regular file".into(),
            });
        }
        if m.len() > limit {
            return Err(GuestError::Limit(format!(
                "{what}: {} bytes, more than {limit}",
                m.len()
            )));
        }
        fs::read(&p).map_err(|e| io(&what, e))
    }

    fn read_link(&self, path: &[u8]) -> GuestResult<Vec<u8>> {
        let what = String::from_utf8_lossy(path).into_owned();
        let p = self.host_path(path)?;
        fs::read_link(&p)
            .map(|t| t.as_os_str().as_bytes().to_vec())
            .map_err(|e| io(&what, e))
    }

    fn read_head(&self, path: &[u8], len: u64) -> GuestResult<Vec<u8>> {
        let what = String::from_utf8_lossy(path).into_owned();
        let p = self.host_path(path)?;
        let f = fs::File::open(&p).map_err(|e| io(&what, e))?;
        let mut out = Vec::new();
        f.take(len)
            .read_to_end(&mut out)
            .map_err(|e| io(&what, e))?;
        Ok(out)
    }
}

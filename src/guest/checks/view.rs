//! A guest's file systems seen as one tree: mount points from fstab, symlinks followed
//! across them (merged /usr: `/lib` -> `usr/lib` on a separate /usr), reads bounded.

use crate::guest::error::{GuestError, GuestResult};
use crate::guest::fs::{DirEntry, FileKind, GuestFs, MAX_SYMLINK_HOPS, Metadata};
use crate::guest::volume::Volume;

/// Config files are small; anything larger is not what we look for.
pub const CONFIG_LIMIT: u64 = 1 << 20;
/// Entries of one directory looked at (a /boot with thousands of files is hostile).
pub const DIR_LIMIT: usize = 10_000;

/// One mounted file system.
pub struct Mount<'v> {
    /// Absolute, without a trailing slash ("" for the root).
    pub point: String,
    pub volume: &'v Volume,
    pub fs: &'v dyn GuestFs,
}

/// The guest's tree: mounts sorted longest point first.
pub struct View<'v> {
    mounts: Vec<Mount<'v>>,
}

impl<'v> View<'v> {
    pub fn new(root: &'v Volume, fs: &'v dyn GuestFs) -> Self {
        View {
            mounts: vec![Mount {
                point: String::new(),
                volume: root,
                fs,
            }],
        }
    }

    /// Adds a mount at `point` ("/boot"); a point mounted twice keeps the first.
    pub fn mount(&mut self, point: &str, volume: &'v Volume, fs: &'v dyn GuestFs) {
        let point = point.trim_end_matches('/').to_string();
        if point.is_empty() || self.mounts.iter().any(|m| m.point == point) {
            return;
        }
        self.mounts.push(Mount { point, volume, fs });
        self.mounts
            .sort_by_key(|m| std::cmp::Reverse(m.point.len()));
    }

    pub fn mounts(&self) -> &[Mount<'v>] {
        &self.mounts
    }

    /// The volume a resolved path lives on.
    pub fn volume_of(&self, path: &str) -> Option<&'v Volume> {
        self.split(path).map(|(m, _)| m.volume)
    }

    /// The mount holding an already resolved absolute path, and the path inside it.
    fn split<'a>(&'a self, path: &str) -> Option<(&'a Mount<'v>, String)> {
        self.mounts.iter().find_map(|m| {
            let rest = path.strip_prefix(m.point.as_str())?;
            (rest.is_empty() || rest.starts_with('/') || m.point.is_empty()).then(|| {
                let inner = if rest.is_empty() {
                    "/".to_string()
                } else {
                    rest.to_string()
                };
                (m, inner)
            })
        })
    }

    /// Resolves symlinks in every component but the last (lstat semantics), across mounts.
    pub fn resolve(&self, path: &str) -> GuestResult<String> {
        let mut hops = 0;
        let mut done = String::new();
        let mut todo: Vec<String> = components(path).into_iter().rev().collect();
        while let Some(comp) = todo.pop() {
            if comp == ".." {
                if let Some(i) = done.rfind('/') {
                    done.truncate(i);
                }
                continue;
            }
            let candidate = format!("{done}/{comp}");
            if todo.is_empty() {
                return Ok(candidate);
            }
            let (mount, inner) = self
                .split(&candidate)
                .ok_or_else(|| GuestError::NotFound(candidate.clone()))?;
            let meta = mount.fs.metadata(inner.as_bytes())?;
            if meta.kind == FileKind::Symlink {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(GuestError::Limit(format!("{path}: too many symlinks")));
                }
                let target =
                    String::from_utf8_lossy(&mount.fs.read_link(inner.as_bytes())?).into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                for c in components(&target).into_iter().rev() {
                    todo.push(c);
                }
            } else {
                done = candidate;
            }
        }
        Ok(if done.is_empty() { "/".into() } else { done })
    }

    /// Follows a final symlink too (stat semantics), bounded.
    pub fn resolve_follow(&self, path: &str) -> GuestResult<String> {
        let mut current = self.resolve(path)?;
        for _ in 0..MAX_SYMLINK_HOPS {
            let (mount, inner) = self
                .split(&current)
                .ok_or_else(|| GuestError::NotFound(current.clone()))?;
            let meta = mount.fs.metadata(inner.as_bytes())?;
            if meta.kind != FileKind::Symlink {
                return Ok(current);
            }
            let target =
                String::from_utf8_lossy(&mount.fs.read_link(inner.as_bytes())?).into_owned();
            let joined = if target.starts_with('/') {
                target
            } else {
                let parent = current.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                format!("{parent}/{target}")
            };
            current = self.resolve(&joined)?;
        }
        Err(GuestError::Limit(format!("{path}: too many symlinks")))
    }

    pub fn metadata(&self, path: &str) -> GuestResult<Metadata> {
        let p = self.resolve(path)?;
        let (m, inner) = self
            .split(&p)
            .ok_or_else(|| GuestError::NotFound(p.clone()))?;
        m.fs.metadata(inner.as_bytes())
    }

    /// Metadata of what the path points to, following a final symlink.
    pub fn stat(&self, path: &str) -> GuestResult<Metadata> {
        let p = self.resolve_follow(path)?;
        let (m, inner) = self
            .split(&p)
            .ok_or_else(|| GuestError::NotFound(p.clone()))?;
        m.fs.metadata(inner.as_bytes())
    }

    pub fn exists(&self, path: &str) -> bool {
        self.metadata(path).is_ok()
    }

    /// A file's contents, following a final symlink, at most `limit` bytes.
    pub fn read(&self, path: &str, limit: u64) -> GuestResult<Vec<u8>> {
        let p = self.resolve_follow(path)?;
        let (m, inner) = self
            .split(&p)
            .ok_or_else(|| GuestError::NotFound(p.clone()))?;
        m.fs.read_file(inner.as_bytes(), limit)
    }

    /// A config file as text (lossy UTF-8), None when absent or unreadable.
    pub fn text(&self, path: &str) -> Option<String> {
        self.read(path, CONFIG_LIMIT)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    pub fn read_link(&self, path: &str) -> GuestResult<String> {
        let p = self.resolve(path)?;
        let (m, inner) = self
            .split(&p)
            .ok_or_else(|| GuestError::NotFound(p.clone()))?;
        Ok(String::from_utf8_lossy(&m.fs.read_link(inner.as_bytes())?).into_owned())
    }

    /// Directory entries (following a final symlink), at most `DIR_LIMIT`, sorted by name;
    /// empty when the directory is absent.
    pub fn list(&self, path: &str) -> Vec<DirEntry> {
        let Ok(p) = self.resolve_follow(path) else {
            return Vec::new();
        };
        let Some((m, inner)) = self.split(&p) else {
            return Vec::new();
        };
        let mut entries = m.fs.read_dir(inner.as_bytes()).unwrap_or_default();
        entries.truncate(DIR_LIMIT);
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }

    /// Names in a directory (lossy UTF-8).
    pub fn names(&self, path: &str) -> Vec<String> {
        self.list(path)
            .into_iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect()
    }

    /// `(path, text)` of the files in `dir` whose names end with `suffix` ("" for all).
    pub fn texts_in(&self, dir: &str, suffix: &str) -> Vec<(String, String)> {
        let dir = dir.trim_end_matches('/');
        self.names(dir)
            .into_iter()
            .filter(|n| n.ends_with(suffix))
            .filter_map(|n| {
                let path = format!("{dir}/{n}");
                self.text(&path).map(|t| (path, t))
            })
            .collect()
    }
}

fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

/// Resolves a path on one file system case-insensitively (NTFS and FAT match names that
/// way; a reader may or may not): the exact path first, then component by component.
pub fn find_ci(fs: &dyn GuestFs, path: &str) -> Option<String> {
    if fs.metadata(path.as_bytes()).is_ok() {
        return Some(path.to_string());
    }
    let mut current = String::new();
    for comp in components(path) {
        let dir = if current.is_empty() {
            "/".to_string()
        } else {
            current.clone()
        };
        let entries = fs.read_dir(dir.as_bytes()).ok()?;
        let found = entries
            .iter()
            .take(DIR_LIMIT)
            .find(|e| String::from_utf8_lossy(&e.name).eq_ignore_ascii_case(&comp))?;
        current = format!("{current}/{}", String::from_utf8_lossy(&found.name));
    }
    Some(current)
}

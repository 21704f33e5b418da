//! FAT12/16/32 (the EFI system partition) through the `fatfs` crate. Names match
//! case-insensitively, long or 8.3, as Windows and UEFI do.
//!
//! `fatfs` wants `Read + Write + Seek`; it writes only when something is changed (a file
//! written, the dirty flag set by a write), which this reader never does, so the stream is
//! the read-only [`SourceCursor`]: nothing is copied and a write would fail, not land.
//! Directory walks are bounded by `MAX_DIR_ENTRIES`, since a cluster chain that loops
//! would otherwise list forever. `fatfs::FileSystem` is not `Send` (its options hold
//! non-`Sync` trait objects), so it runs [`Confined`] to a thread.

use std::io::Read;
use std::sync::Arc;

use fatfs::{FileSystem, FsOptions};

use super::confined::{Confined, Identity, LocalFs};
use super::cursor::{SourceCursor, guest_error};
use super::resolve::{self, Last, Tree};
use super::{DirEntry, FileKind, MAX_DIR_ENTRIES, Metadata};
use crate::guest::error::{GuestError, GuestResult};
use crate::guest::source::ByteSource;

type Fs = FileSystem<SourceCursor>;
type Entry<'a> = fatfs::DirEntry<'a, SourceCursor>;

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn map_err(e: std::io::Error) -> GuestError {
    guest_error(&e).unwrap_or_else(|| GuestError::Corrupt {
        structure: "FAT file system",
        offset: 0,
        detail: e.to_string(),
    })
}

/// The file system, on the thread that owns it.
struct FatFs {
    fs: Fs,
}

/// The resolver's view of one locked file system.
struct View<'a> {
    fs: &'a Fs,
}

enum Node<'a> {
    Root,
    Entry(Entry<'a>),
}

fn entry_kind(e: &Entry<'_>) -> FileKind {
    if e.is_dir() {
        FileKind::Dir
    } else if e.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

impl<'a> View<'a> {
    fn dir(&self, node: &Node<'a>) -> fatfs::Dir<'a, SourceCursor> {
        match node {
            Node::Root => self.fs.root_dir(),
            Node::Entry(e) => e.to_dir(),
        }
    }

    /// The entries of a directory, without `.` and `..`, at most `MAX_DIR_ENTRIES`.
    fn entries(&self, node: &Node<'a>, path: &[u8]) -> GuestResult<Vec<Entry<'a>>> {
        let mut out = Vec::new();
        self.scan(node, path, |entry| {
            out.push(entry);
            false
        })?;
        Ok(out)
    }

    /// Visits a directory's entries (without `.` and `..`) in order until `stop` says so
    /// or the directory ends; more than `MAX_DIR_ENTRIES` is an error.
    fn scan(
        &self,
        node: &Node<'a>,
        path: &[u8],
        mut stop: impl FnMut(Entry<'a>) -> bool,
    ) -> GuestResult<()> {
        let mut seen = 0;
        for entry in self.dir(node).iter() {
            let entry = entry.map_err(map_err)?;
            let name = entry.short_file_name_as_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if seen == MAX_DIR_ENTRIES {
                return Err(GuestError::Limit(format!(
                    "{}: more than {MAX_DIR_ENTRIES} entries",
                    shown(path)
                )));
            }
            seen += 1;
            if stop(entry) {
                break;
            }
        }
        Ok(())
    }
}

impl<'a> Tree for View<'a> {
    type Node = Node<'a>;

    fn root(&self) -> GuestResult<Node<'a>> {
        Ok(Node::Root)
    }

    fn lookup(&self, dir: &Node<'a>, name: &[u8]) -> GuestResult<Option<(Node<'a>, FileKind)>> {
        let Ok(name) = std::str::from_utf8(name) else {
            return Ok(None);
        };
        // The first match, as the directory is read: a lookup in a large directory need
        // not read past the name it wants (every resolution of a path looks up each of
        // its components).
        let want = name.to_uppercase();
        let mut found = None;
        self.scan(dir, name.as_bytes(), |e| {
            let hit = e.file_name().to_uppercase() == want || e.short_file_name() == want;
            if hit {
                found = Some(e);
            }
            hit
        })?;
        Ok(found.map(|e| {
            let kind = entry_kind(&e);
            (Node::Entry(e), kind)
        }))
    }

    fn kind(&self, node: &Node<'a>) -> GuestResult<FileKind> {
        Ok(match node {
            Node::Root => FileKind::Dir,
            Node::Entry(e) => entry_kind(e),
        })
    }

    fn link_target(&self, _node: &Node<'a>) -> GuestResult<Vec<u8>> {
        Err(GuestError::Unsupported("FAT has no symlinks".into()))
    }
}

/// Opens a FAT file system (boot sector and FAT geometry) on the reader's own thread.
pub fn open(source: Arc<dyn ByteSource>) -> GuestResult<Confined> {
    Confined::spawn("FAT file system", move || {
        let fs = FileSystem::new(SourceCursor::new(source), FsOptions::new()).map_err(map_err)?;
        let id = fs.volume_id();
        let label = fs.volume_label();
        let label = label.trim_end();
        let identity = Identity {
            kind: "vfat",
            uuid: Some(format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)),
            label: (!label.is_empty() && label != "NO NAME").then(|| label.to_string()),
        };
        Ok((Box::new(FatFs { fs }) as Box<dyn LocalFs>, identity))
    })
}

impl FatFs {
    fn with<T>(&self, f: impl FnOnce(&View<'_>) -> GuestResult<T>) -> GuestResult<T> {
        f(&View { fs: &self.fs })
    }
}

impl LocalFs for FatFs {
    fn metadata(&self, path: &[u8]) -> GuestResult<Metadata> {
        self.with(|view| {
            Ok(match resolve::resolve(view, path, Last::NoFollow)? {
                Node::Root => Metadata {
                    kind: FileKind::Dir,
                    size: 0,
                },
                Node::Entry(e) => Metadata {
                    kind: entry_kind(&e),
                    size: if e.is_file() { e.len() } else { 0 },
                },
            })
        })
    }

    fn read_dir(&self, path: &[u8]) -> GuestResult<Vec<DirEntry>> {
        self.with(|view| {
            let node = resolve::resolve(view, path, Last::Follow)?;
            if view.kind(&node)? != FileKind::Dir {
                return Err(GuestError::WrongKind {
                    path: shown(path),
                    detail: "not a directory".into(),
                });
            }
            Ok(view
                .entries(&node, path)?
                .iter()
                .map(|e| DirEntry {
                    name: e.file_name().into_bytes(),
                    kind: entry_kind(e),
                })
                .collect())
        })
    }

    fn read_file(&self, path: &[u8], limit: u64) -> GuestResult<Vec<u8>> {
        self.with(|view| {
            let node = resolve::resolve(view, path, Last::Follow)?;
            let Node::Entry(e) = node else {
                return Err(GuestError::WrongKind {
                    path: shown(path),
                    detail: "is a directory".into(),
                });
            };
            if !e.is_file() {
                return Err(GuestError::WrongKind {
                    path: shown(path),
                    detail: "not a regular file".into(),
                });
            }
            if e.len() > limit {
                return Err(GuestError::Limit(format!(
                    "{}: {} bytes, more than the {limit}-byte limit",
                    shown(path),
                    e.len()
                )));
            }
            let mut out = Vec::with_capacity(e.len() as usize);
            e.to_file()
                .take(e.len())
                .read_to_end(&mut out)
                .map_err(map_err)?;
            Ok(out)
        })
    }

    fn read_link(&self, path: &[u8]) -> GuestResult<Vec<u8>> {
        self.with(|view| {
            resolve::resolve(view, path, Last::NoFollow)?;
            Err(GuestError::WrongKind {
                path: shown(path),
                detail: "not a symlink (FAT has none)".into(),
            })
        })
    }
}

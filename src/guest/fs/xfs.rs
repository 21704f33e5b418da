//! XFS through the `lamxfs` crate (read-only; v4 and v5; shortform, block, leaf and node
//! directories; extent-list and B+tree files; replays a dirty v5 log in memory).
//!
//! Chosen over writing our own reader after it read back, byte for byte, every file,
//! listing and link of xfsprogs-made test file systems of each directory and file format,
//! and survived 20,000 targeted mutations of its inodes, B+tree and directory blocks
//! (CRC checks off) without a panic or a slow read (see the guest_fs tests).
//!
//! lamxfs resolves paths itself but follows no symlinks and refuses `..`: the shared
//! resolver walks instead, handing lamxfs only symlink-free paths.

use std::sync::{Arc, Mutex};

use lamxfs::{BlockRead, Inode, Xfs};

use super::resolve::{self, Last, Tree, join};
use super::{DirEntry, FileKind, GuestFs, MAX_DIR_ENTRIES, Metadata};
use crate::guest::error::{GuestError, GuestResult};
use crate::guest::source::ByteSource;

/// `BlockRead` over a byte source.
struct SourceReader(Arc<dyn ByteSource>);

impl BlockRead for SourceReader {
    type Error = GuestError;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), GuestError> {
        self.0.read_exact_at(offset, buf)
    }
}

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn map_err(path: &[u8], e: lamxfs::Error) -> GuestError {
    use lamxfs::Error as E;
    match e {
        E::NotFound { .. } => GuestError::NotFound(shown(path)),
        E::NotARegularFile => GuestError::WrongKind {
            path: shown(path),
            detail: "not a regular file".into(),
        },
        E::NotASymlink => GuestError::WrongKind {
            path: shown(path),
            detail: "not a symlink".into(),
        },
        E::FileTooLarge { size, max } => GuestError::Limit(format!(
            "{}: {size} bytes, more than the XFS reader's {max}-byte limit",
            shown(path)
        )),
        E::UnsupportedFeature(what) => GuestError::Unsupported(format!("XFS: {what}")),
        E::BadSuperblock(lamxfs::SuperblockReason::ExternalLog) => {
            GuestError::Unsupported("XFS with an external log".into())
        }
        E::BadSuperblock(lamxfs::SuperblockReason::RealtimeDevice) => {
            GuestError::Unsupported("XFS with a realtime device".into())
        }
        E::BadSuperblock(lamxfs::SuperblockReason::DirtyLog) => GuestError::Unsupported(
            "XFS log holds changes that cannot be replayed (mount it once in the guest)".into(),
        ),
        E::Io { offset, .. } => GuestError::Io {
            what: "XFS metadata".into(),
            offset,
            detail: "read failed".into(),
        },
        E::OutOfMemory { site } => GuestError::Limit(format!("XFS: out of memory at {site}")),
        other => GuestError::Corrupt {
            structure: "XFS file system",
            offset: 0,
            detail: format!("{}: {}", shown(path), other.token()),
        },
    }
}

pub struct XfsFs {
    xfs: Mutex<Xfs<SourceReader>>,
    uuid: Option<String>,
    label: Option<String>,
}

/// The resolver's view of the locked file system; nodes are symlink-free paths.
struct View<'a> {
    xfs: std::cell::RefCell<&'a mut Xfs<SourceReader>>,
}

impl View<'_> {
    fn inode(&self, path: &[u8]) -> GuestResult<Inode> {
        let mut xfs = self.xfs.borrow_mut();
        xfs.resolve(lamxfs::Path::new(path))
            .map_err(|e| map_err(path, e))
    }

    fn metadata(&self, path: &[u8]) -> GuestResult<lamxfs::Metadata> {
        let inode = self.inode(path)?;
        let mut xfs = self.xfs.borrow_mut();
        xfs.metadata(&inode).map_err(|e| map_err(path, e))
    }
}

fn kind_of(md: &lamxfs::Metadata) -> FileKind {
    if md.is_file() {
        FileKind::File
    } else if md.is_dir() {
        FileKind::Dir
    } else if md.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    }
}

impl Tree for View<'_> {
    type Node = Vec<u8>;

    fn root(&self) -> GuestResult<Vec<u8>> {
        Ok(b"/".to_vec())
    }

    fn lookup(&self, dir: &Vec<u8>, name: &[u8]) -> GuestResult<Option<Vec<u8>>> {
        if name.contains(&b'/') || name.len() > 255 {
            return Ok(None);
        }
        let child = join(dir, name);
        match self.inode(&child) {
            Ok(_) => Ok(Some(child)),
            Err(GuestError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn kind(&self, node: &Vec<u8>) -> GuestResult<FileKind> {
        Ok(kind_of(&self.metadata(node)?))
    }

    fn link_target(&self, node: &Vec<u8>) -> GuestResult<Vec<u8>> {
        let mut xfs = self.xfs.borrow_mut();
        xfs.read_link(lamxfs::Path::new(node))
            .map_err(|e| map_err(node, e))
    }
}

impl XfsFs {
    pub fn open(source: Arc<dyn ByteSource>) -> GuestResult<Self> {
        let len = source.len();
        let xfs = Xfs::open(SourceReader(source), len).map_err(|e| map_err(b"/", e))?;
        let uuid = Some(uuid::Uuid::from_bytes(xfs.uuid()).to_string());
        let label = xfs.label().map(str::to_string).filter(|l| !l.is_empty());
        Ok(XfsFs {
            xfs: Mutex::new(xfs),
            uuid,
            label,
        })
    }

    /// Runs `f` with the file system locked (lamxfs reads through `&mut self`). A poisoned
    /// lock is taken over: lamxfs keeps no state between calls but its replayed log, which
    /// is built once at open.
    fn with<T>(&self, f: impl FnOnce(&View<'_>) -> GuestResult<T>) -> GuestResult<T> {
        let mut guard = self.xfs.lock().unwrap_or_else(|p| p.into_inner());
        f(&View {
            xfs: std::cell::RefCell::new(&mut guard),
        })
    }
}

impl GuestFs for XfsFs {
    fn kind(&self) -> &'static str {
        "xfs"
    }

    fn uuid(&self) -> Option<String> {
        self.uuid.clone()
    }

    fn label(&self) -> Option<String> {
        self.label.clone()
    }

    fn metadata(&self, path: &[u8]) -> GuestResult<Metadata> {
        self.with(|view| {
            let node = resolve::resolve(view, path, Last::NoFollow)?;
            let md = view.metadata(&node)?;
            Ok(Metadata {
                kind: kind_of(&md),
                size: md.size(),
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
            let entries = view
                .xfs
                .borrow_mut()
                .read_dir(lamxfs::Path::new(&node))
                .map_err(|e| map_err(path, e))?;
            if entries.len() > MAX_DIR_ENTRIES {
                return Err(GuestError::Limit(format!(
                    "{}: more than {MAX_DIR_ENTRIES} entries",
                    shown(path)
                )));
            }
            Ok(entries
                .into_iter()
                .map(|e| DirEntry {
                    name: e.name,
                    kind: match e.kind {
                        lamxfs::EntryKind::Regular => FileKind::File,
                        lamxfs::EntryKind::Directory => FileKind::Dir,
                        lamxfs::EntryKind::Symlink => FileKind::Symlink,
                        lamxfs::EntryKind::Other => FileKind::Other,
                    },
                })
                .collect())
        })
    }

    fn read_file(&self, path: &[u8], limit: u64) -> GuestResult<Vec<u8>> {
        self.with(|view| {
            let node = resolve::resolve(view, path, Last::Follow)?;
            let inode = view.inode(&node)?;
            let md = view.metadata(&node)?;
            if !md.is_file() {
                return Err(GuestError::WrongKind {
                    path: shown(path),
                    detail: "not a regular file".into(),
                });
            }
            if md.size() > limit {
                return Err(GuestError::Limit(format!(
                    "{}: {} bytes, more than the {limit}-byte limit",
                    shown(path),
                    md.size()
                )));
            }
            // Read in pieces through a buffer we size, so memory follows `limit`, not
            // lamxfs's own cap.
            let mut out = vec![0u8; md.size() as usize];
            let mut filled = 0usize;
            let mut xfs = view.xfs.borrow_mut();
            while filled < out.len() {
                let end = (filled + (1 << 20)).min(out.len());
                let piece = out.get_mut(filled..end).unwrap_or_default();
                let n = xfs
                    .read_file_at(&inode, filled as u64, piece)
                    .map_err(|e| map_err(path, e))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            out.truncate(filled);
            Ok(out)
        })
    }

    fn read_link(&self, path: &[u8]) -> GuestResult<Vec<u8>> {
        self.with(|view| {
            let node = resolve::resolve(view, path, Last::NoFollow)?;
            if view.kind(&node)? != FileKind::Symlink {
                return Err(GuestError::WrongKind {
                    path: shown(path),
                    detail: "not a symlink".into(),
                });
            }
            view.link_target(&node)
        })
    }
}

/// For fuzzing: opens `bytes` as an XFS file system and walks it. Never panics.
pub fn fuzz_xfs(bytes: &[u8]) {
    if let Ok(fs) = XfsFs::open(Arc::new(bytes.to_vec())) {
        super::exercise(&fs);
    }
}

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
    state: Mutex<State>,
    uuid: Option<String>,
    label: Option<String>,
}

struct State {
    xfs: Xfs<SourceReader>,
    /// The last directories listed, by symlink-free path, most recent last. lamxfs finds a
    /// name by reading the whole directory, so walking a directory entry by entry (each
    /// path from the root) would read its parents and itself once per entry without this.
    listed: Vec<(Vec<u8>, Vec<lamxfs::DirEntry>)>,
}

/// Directories whose listings are kept.
const LISTINGS_KEPT: usize = 4;

/// A node: the symlink-free path (lamxfs lists directories and reads links by path) and
/// the inode number (for metadata and data, without walking the path again).
type Node = (Vec<u8>, u64);

/// The resolver's view of the locked file system.
struct View<'a> {
    state: std::cell::RefCell<&'a mut State>,
}

impl View<'_> {
    fn metadata(&self, node: &Node) -> GuestResult<lamxfs::Metadata> {
        let mut state = self.state.borrow_mut();
        let inode = Inode { ino: node.1 };
        state.xfs.metadata(&inode).map_err(|e| map_err(&node.0, e))
    }

    /// Runs `f` over the entries of the directory at `path`, listed through the cache.
    fn with_entries<T>(
        &self,
        path: &[u8],
        f: impl FnOnce(&[lamxfs::DirEntry]) -> T,
    ) -> GuestResult<T> {
        let mut state = self.state.borrow_mut();
        let cached = state.listed.iter().position(|(p, _)| p == path);
        let at = match cached {
            Some(at) => at,
            None => {
                let entries = state
                    .xfs
                    .read_dir(lamxfs::Path::new(path))
                    .map_err(|e| map_err(path, e))?;
                if entries.len() > MAX_DIR_ENTRIES {
                    return Err(GuestError::Limit(format!(
                        "{}: more than {MAX_DIR_ENTRIES} entries",
                        shown(path)
                    )));
                }
                // Keep at most LISTINGS_KEPT listings and MAX_DIR_ENTRIES entries in all.
                let mut kept: usize = state.listed.iter().map(|(_, e)| e.len()).sum();
                while !state.listed.is_empty()
                    && (state.listed.len() == LISTINGS_KEPT
                        || kept + entries.len() > MAX_DIR_ENTRIES)
                {
                    let (_, dropped) = state.listed.remove(0);
                    kept -= dropped.len();
                }
                state.listed.push((path.to_vec(), entries));
                state.listed.len() - 1
            }
        };
        Ok(f(state.listed.get(at).map_or(&[][..], |(_, e)| e)))
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

fn entry_kind(kind: lamxfs::EntryKind) -> FileKind {
    match kind {
        lamxfs::EntryKind::Regular => FileKind::File,
        lamxfs::EntryKind::Directory => FileKind::Dir,
        lamxfs::EntryKind::Symlink => FileKind::Symlink,
        lamxfs::EntryKind::Other => FileKind::Other,
    }
}

impl Tree for View<'_> {
    type Node = Node;

    fn root(&self) -> GuestResult<Node> {
        let mut state = self.state.borrow_mut();
        let root = state
            .xfs
            .resolve(lamxfs::Path::new(b"/"))
            .map_err(|e| map_err(b"/", e))?;
        Ok((b"/".to_vec(), root.ino))
    }

    fn lookup(&self, dir: &Node, name: &[u8]) -> GuestResult<Option<(Node, FileKind)>> {
        let found = self.with_entries(&dir.0, |entries| {
            entries
                .iter()
                .find(|e| e.name == name)
                .map(|e| (e.inode_number, e.kind))
        })?;
        let Some((ino, kind)) = found else {
            return Ok(None);
        };
        let node = (join(&dir.0, name), ino);
        // Without the ftype feature (old v4 file systems) lamxfs may not know the kind
        // from the entry: ask the inode.
        let kind = match entry_kind(kind) {
            FileKind::Other => kind_of(&self.metadata(&node)?),
            kind => kind,
        };
        Ok(Some((node, kind)))
    }

    fn kind(&self, node: &Node) -> GuestResult<FileKind> {
        Ok(kind_of(&self.metadata(node)?))
    }

    fn link_target(&self, node: &Node) -> GuestResult<Vec<u8>> {
        let mut state = self.state.borrow_mut();
        state
            .xfs
            .read_link(lamxfs::Path::new(&node.0))
            .map_err(|e| map_err(&node.0, e))
    }
}

impl XfsFs {
    pub fn open(source: Arc<dyn ByteSource>) -> GuestResult<Self> {
        let len = source.len();
        let xfs = Xfs::open(SourceReader(source), len).map_err(|e| map_err(b"/", e))?;
        let uuid = Some(uuid::Uuid::from_bytes(xfs.uuid()).to_string());
        let label = xfs.label().map(str::to_string).filter(|l| !l.is_empty());
        Ok(XfsFs {
            state: Mutex::new(State {
                xfs,
                listed: Vec::new(),
            }),
            uuid,
            label,
        })
    }

    /// Runs `f` with the file system locked (lamxfs reads through `&mut self`). A poisoned
    /// lock is taken over: lamxfs keeps no state between calls but its replayed log, which
    /// is built once at open, and the listing cache holds whole listings only.
    fn with<T>(&self, f: impl FnOnce(&View<'_>) -> GuestResult<T>) -> GuestResult<T> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&View {
            state: std::cell::RefCell::new(&mut guard),
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
            let (node, kind) = resolve::resolve_with_kind(view, path, Last::Follow)?;
            if kind != FileKind::Dir {
                return Err(GuestError::WrongKind {
                    path: shown(path),
                    detail: "not a directory".into(),
                });
            }
            view.with_entries(&node.0, |entries| {
                entries
                    .iter()
                    .map(|e| DirEntry {
                        name: e.name.clone(),
                        kind: entry_kind(e.kind),
                    })
                    .collect()
            })
        })
    }

    fn read_file(&self, path: &[u8], limit: u64) -> GuestResult<Vec<u8>> {
        self.with(|view| {
            let node = resolve::resolve(view, path, Last::Follow)?;
            let inode = Inode { ino: node.1 };
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
            let mut state = view.state.borrow_mut();
            while filled < out.len() {
                let end = (filled + (1 << 20)).min(out.len());
                let piece = out.get_mut(filled..end).unwrap_or_default();
                let n = state
                    .xfs
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
            let (node, kind) = resolve::resolve_with_kind(view, path, Last::NoFollow)?;
            if kind != FileKind::Symlink {
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
    fuzz_xfs_source(Arc::new(bytes.to_vec()));
}

/// For fuzzing: `bytes` are an image in [`PagedImage`](crate::guest::source::PagedImage)'s
/// encoding, opened as XFS and walked. Never panics.
pub fn fuzz_xfs_pages(bytes: &[u8]) {
    fuzz_xfs_source(Arc::new(crate::guest::source::PagedImage::decode(bytes)));
}

fn fuzz_xfs_source(source: Arc<dyn ByteSource>) {
    if let Ok(fs) = XfsFs::open(source) {
        super::exercise(&fs);
    }
}

//! ext2/3/4 through the `ext4-view` crate (read-only, replays the journal in memory).
//! `ext4_view::Ext4` is not `Send` (it keeps `Rc`s), so it runs [`Confined`] to a thread.

use std::sync::Arc;

use ext4_view::{Ext4, Ext4Error, Ext4Read};

use super::confined::{Confined, Identity, LocalFs};
use super::resolve::{self, Last, Tree, join};
use super::{DirEntry, FileKind, MAX_DIR_ENTRIES, Metadata};
use crate::guest::error::{GuestError, GuestResult};
use crate::guest::source::ByteSource;

/// `Ext4Read` over a byte source; guest errors travel inside the boxed error.
struct SourceReader(Arc<dyn ByteSource>);

impl Ext4Read for SourceReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.0
            .read_exact_at(start_byte, dst)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    }
}

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Maps an `ext4-view` error on `path` to a guest error.
fn map_err(path: &[u8], e: Ext4Error) -> GuestError {
    let wrong = |detail: &str| GuestError::WrongKind {
        path: shown(path),
        detail: detail.into(),
    };
    match e {
        Ext4Error::NotFound => GuestError::NotFound(shown(path)),
        Ext4Error::NotADirectory => wrong("not a directory"),
        Ext4Error::IsADirectory => wrong("is a directory"),
        Ext4Error::IsASpecialFile => wrong("is a special file"),
        Ext4Error::NotASymlink => wrong("not a symlink"),
        Ext4Error::FileTooLarge => GuestError::Limit(format!("{}: file too large", shown(path))),
        Ext4Error::TooManySymlinks => {
            GuestError::Limit(format!("{}: too many symlinks", shown(path)))
        }
        Ext4Error::Encrypted => GuestError::Unsupported(format!("{}: encrypted", shown(path))),
        Ext4Error::Incompatible(i) => GuestError::Unsupported(format!("ext4: {i}")),
        Ext4Error::Io(inner) => match inner.downcast_ref::<GuestError>() {
            Some(g) => g.clone(),
            None => GuestError::Io {
                what: "ext4 data".into(),
                offset: 0,
                detail: inner.to_string(),
            },
        },
        other => GuestError::Corrupt {
            structure: "ext4 file system",
            offset: 0,
            detail: format!("{}: {other}", shown(path)),
        },
    }
}

/// The file system itself, on the thread that owns it.
struct Local {
    fs: Ext4,
}

fn ext_path(path: &[u8]) -> GuestResult<ext4_view::Path<'_>> {
    ext4_view::Path::try_from(path)
        .map_err(|e| GuestError::NotFound(format!("{}: {e}", shown(path))))
}

impl Tree for Local {
    /// The symlink-free absolute path.
    type Node = Vec<u8>;

    fn root(&self) -> GuestResult<Vec<u8>> {
        Ok(b"/".to_vec())
    }

    fn lookup(&self, dir: &Vec<u8>, name: &[u8]) -> GuestResult<Option<(Vec<u8>, FileKind)>> {
        // A name ext4 cannot store cannot be there.
        if name.len() > 255 || name.contains(&0) {
            return Ok(None);
        }
        let child = join(dir, name);
        match self.fs.symlink_metadata(ext_path(&child)?) {
            Ok(md) => Ok(Some((child, kind_of(md.file_type())))),
            Err(Ext4Error::NotFound) => Ok(None),
            Err(e) => Err(map_err(&child, e)),
        }
    }

    fn kind(&self, node: &Vec<u8>) -> GuestResult<FileKind> {
        let md = self
            .fs
            .symlink_metadata(ext_path(node)?)
            .map_err(|e| map_err(node, e))?;
        Ok(kind_of(md.file_type()))
    }

    fn link_target(&self, node: &Vec<u8>) -> GuestResult<Vec<u8>> {
        let target = self
            .fs
            .read_link(ext_path(node)?)
            .map_err(|e| map_err(node, e))?;
        Ok(target.as_ref().to_vec())
    }
}

fn kind_of(t: ext4_view::FileType) -> FileKind {
    if t.is_regular_file() {
        FileKind::File
    } else if t.is_dir() {
        FileKind::Dir
    } else if t.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    }
}

impl LocalFs for Local {
    fn metadata(&self, path: &[u8]) -> GuestResult<Metadata> {
        let node = resolve::resolve(self, path, Last::NoFollow)?;
        let md = self
            .fs
            .symlink_metadata(ext_path(&node)?)
            .map_err(|e| map_err(path, e))?;
        Ok(Metadata {
            kind: kind_of(md.file_type()),
            size: md.len(),
        })
    }

    fn read_dir(&self, path: &[u8]) -> GuestResult<Vec<DirEntry>> {
        let node = resolve::resolve(self, path, Last::Follow)?;
        let entries = self
            .fs
            .read_dir(ext_path(&node)?)
            .map_err(|e| map_err(path, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| map_err(path, e))?;
            let name = entry.file_name();
            let name: &[u8] = name.as_ref();
            if name == b"." || name == b".." {
                continue;
            }
            if out.len() == MAX_DIR_ENTRIES {
                return Err(GuestError::Limit(format!(
                    "{}: more than {MAX_DIR_ENTRIES} entries",
                    shown(path)
                )));
            }
            let kind = entry.file_type().map(kind_of).unwrap_or(FileKind::Other);
            out.push(DirEntry {
                name: name.to_vec(),
                kind,
            });
        }
        Ok(out)
    }

    fn read_file(&self, path: &[u8], limit: u64) -> GuestResult<Vec<u8>> {
        let node = resolve::resolve(self, path, Last::Follow)?;
        let p = ext_path(&node)?;
        let md = self.fs.symlink_metadata(p).map_err(|e| map_err(path, e))?;
        if !md.file_type().is_regular_file() {
            return Err(GuestError::WrongKind {
                path: shown(path),
                detail: "not a regular file".into(),
            });
        }
        if md.len() > limit {
            return Err(GuestError::Limit(format!(
                "{}: {} bytes, more than the {limit}-byte limit",
                shown(path),
                md.len()
            )));
        }
        let mut file = self.fs.open(p).map_err(|e| map_err(path, e))?;
        let mut out = vec![0u8; md.len() as usize];
        let mut filled = 0;
        while filled < out.len() {
            let rest = out.get_mut(filled..).unwrap_or_default();
            let n = file.read_bytes(rest).map_err(|e| map_err(path, e))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        out.truncate(filled);
        Ok(out)
    }

    fn read_link(&self, path: &[u8]) -> GuestResult<Vec<u8>> {
        let node = resolve::resolve(self, path, Last::NoFollow)?;
        if self.kind(&node)? != FileKind::Symlink {
            return Err(GuestError::WrongKind {
                path: shown(path),
                detail: "not a symlink".into(),
            });
        }
        self.link_target(&node)
    }
}

/// "ext4", "ext3" or "ext2", as blkid names them from the superblock's feature flags:
/// extents, 64-bit or flex_bg make ext4; a journal, ext3.
fn ext_generation(source: &dyn ByteSource) -> GuestResult<&'static str> {
    let mut sb = [0u8; 8];
    // s_feature_compat at 0x5C and s_feature_incompat at 0x60 of the superblock at 1024.
    source.read_exact_at(1024 + 0x5C, &mut sb)?;
    let [c0, c1, c2, c3, i0, i1, i2, i3] = sb;
    let compat = u32::from_le_bytes([c0, c1, c2, c3]);
    let incompat = u32::from_le_bytes([i0, i1, i2, i3]);
    Ok(if incompat & (0x40 | 0x80 | 0x200) != 0 {
        "ext4"
    } else if compat & 0x4 != 0 {
        "ext3"
    } else {
        "ext2"
    })
}

/// Opens an ext2/3/4 file system: superblock, group descriptors and journal are read on
/// the reader's own thread.
pub fn open(source: Arc<dyn ByteSource>) -> GuestResult<Confined> {
    let kind = ext_generation(&*source)?;
    Confined::spawn("ext4 file system", move || {
        let fs = Ext4::load(Box::new(SourceReader(source))).map_err(|e| map_err(b"/", e))?;
        let identity = Identity {
            kind,
            uuid: Some(fs.uuid().to_string()),
            label: fs
                .label()
                .to_str()
                .ok()
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        };
        Ok((Box::new(Local { fs }) as Box<dyn LocalFs>, identity))
    })
}

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

/// The superblock's first bytes (at 1024), as far as `s_blocks_count_hi` at 0x150: all
/// that [`ext_generation`] and [`check_geometry`] read, read once.
type SuperblockHead = [u8; 0x154];

fn u32_at(sb: &SuperblockHead, at: usize) -> u32 {
    sb.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// "ext4", "ext3" or "ext2", as blkid names them from the superblock's feature flags:
/// extents, 64-bit or flex_bg make ext4; a journal, ext3.
fn ext_generation(sb: &SuperblockHead) -> &'static str {
    let compat = u32_at(sb, 0x5C);
    let incompat = u32_at(sb, 0x60);
    if incompat & (0x40 | 0x80 | 0x200) != 0 {
        "ext4"
    } else if compat & 0x4 != 0 {
        "ext3"
    } else {
        "ext2"
    }
}

/// Block groups an ext file system may have: 2^20 groups is 128 TiB with 4 KiB blocks,
/// twice the largest VHDX. `ext4-view` allocates a descriptor for every group the
/// superblock claims before it reads one (16 bytes each, so 16 MiB at most here, where an
/// unchecked count asks for up to 64 GiB and aborts the process).
pub const MAX_BLOCK_GROUPS: u64 = 1 << 20;

/// The superblock's geometry, checked before `ext4-view` sizes anything by it: the
/// blocks it claims must fit in the volume of `volume_len` bytes (the kernel's
/// `ext4_check_geometry` refuses to mount otherwise: "block count exceeds size of
/// device"), and their groups stay under [`MAX_BLOCK_GROUPS`]. Values `ext4-view` rejects
/// itself (a bad block size, no blocks per group, a first data block past the end) are
/// left to its own errors.
fn check_geometry(sb: &SuperblockHead, volume_len: u64) -> GuestResult<()> {
    // Read as ext4-view reads them: s_blocks_count_hi counts whatever the features say.
    let blocks = u64::from(u32_at(sb, 0x150)) << 32 | u64::from(u32_at(sb, 0x4));
    let first_data_block = u64::from(u32_at(sb, 0x14));
    let log_block_size = u32_at(sb, 0x18);
    let blocks_per_group = u64::from(u32_at(sb, 0x20));
    if log_block_size > 6 || blocks_per_group == 0 || first_data_block > blocks {
        return Ok(());
    }
    let block_size = 1024u64 << log_block_size;
    let claimed = blocks
        .checked_mul(block_size)
        .filter(|&bytes| bytes <= volume_len)
        .ok_or_else(|| GuestError::Corrupt {
            structure: "ext4 superblock",
            offset: 1024,
            detail: format!(
                "claims {blocks} blocks of {block_size} bytes, more than the volume's {volume_len} bytes"
            ),
        })?;
    let groups = (blocks - first_data_block).div_ceil(blocks_per_group);
    if groups > MAX_BLOCK_GROUPS {
        return Err(GuestError::Limit(format!(
            "ext4 superblock: {groups} block groups of {blocks_per_group} blocks for {claimed} bytes, more than the {MAX_BLOCK_GROUPS} this reader takes"
        )));
    }
    Ok(())
}

/// Opens an ext2/3/4 file system: superblock, group descriptors and journal are read on
/// the reader's own thread, once the geometry is known to be sound.
pub fn open(source: Arc<dyn ByteSource>) -> GuestResult<Confined> {
    let mut sb: SuperblockHead = [0; 0x154];
    source.read_exact_at(1024, &mut sb)?;
    let kind = ext_generation(&sb);
    check_geometry(&sb, source.len())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock with 1 KiB blocks, the first data block 1, and these counts.
    fn superblock(blocks: u64, blocks_per_group: u32) -> SuperblockHead {
        let mut sb = [0u8; 0x154];
        let mut put = |at: usize, v: u32| sb[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put(0x4, blocks as u32);
        put(0x150, (blocks >> 32) as u32);
        put(0x14, 1);
        put(0x20, blocks_per_group);
        sb
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_sound_geometry_passes() {
        assert!(check_geometry(&superblock(2 * GIB / 1024, 8192), 2 * GIB).is_ok());
    }

    #[test]
    fn blocks_past_the_volume_are_corruption() {
        let err = check_geometry(&superblock(2 * GIB / 1024 + 1, 8192), 2 * GIB).unwrap_err();
        assert!(
            matches!(
                &err,
                GuestError::Corrupt {
                    structure: "ext4 superblock",
                    offset: 1024,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("claims 2097153 blocks of 1024 bytes"),
            "{err}"
        );
    }

    #[test]
    fn more_groups_than_the_cap_are_a_limit() {
        // One block per group over a 2 GiB volume: 2^21 - 1 groups, all inside it.
        let err = check_geometry(&superblock(2 * GIB / 1024, 1), 2 * GIB).unwrap_err();
        assert!(matches!(&err, GuestError::Limit(_)), "{err:?}");
        assert!(err.to_string().contains("2097151 block groups"), "{err}");
        assert!(check_geometry(&superblock(MAX_BLOCK_GROUPS + 1, 1), 2 * GIB).is_ok());
    }
}

//! NTFS through the `ntfs` crate: names matched case-insensitively through the volume's
//! own $UpCase table (as Windows does), files read from their unnamed $DATA stream,
//! resident or not. Reparse points (symlinks, junctions, WOF-compressed files) are
//! `FileKind::Other`: they are not followed.

use std::sync::{Arc, Mutex, MutexGuard};

use ntfs::indexes::NtfsFileNameIndex;
use ntfs::structured_values::{NtfsFileAttributeFlags, NtfsFileNamespace};
use ntfs::{Ntfs, NtfsError, NtfsFile, NtfsReadSeek};

use super::cursor::{SourceCursor, guest_error};
use super::resolve::{self, Last, Tree};
use super::{DirEntry, FileKind, GuestFs, MAX_DIR_ENTRIES, Metadata};
use crate::guest::error::{GuestError, GuestResult};
use crate::guest::source::ByteSource;

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn map_err(e: NtfsError) -> GuestError {
    if let NtfsError::Io(io) = &e {
        if let Some(g) = guest_error(io) {
            return g;
        }
    }
    GuestError::Corrupt {
        structure: "NTFS file system",
        offset: 0,
        detail: e.to_string(),
    }
}

pub struct NtfsFs {
    ntfs: Ntfs,
    /// The stream the crate reads through; one caller at a time.
    cursor: Mutex<SourceCursor>,
    uuid: Option<String>,
    label: Option<String>,
}

/// The resolver's view: the file system and the locked cursor.
struct View<'a> {
    ntfs: &'a Ntfs,
    cursor: std::cell::RefCell<MutexGuard<'a, SourceCursor>>,
}

impl View<'_> {
    fn file(&self, record: u64) -> GuestResult<NtfsFile<'_>> {
        let mut cursor = self.cursor.borrow_mut();
        self.ntfs.file(&mut **cursor, record).map_err(map_err)
    }
}

fn file_kind(file: &NtfsFile<'_>) -> GuestResult<FileKind> {
    let attributes = file.info().map_err(map_err)?.file_attributes();
    Ok(
        if attributes.contains(NtfsFileAttributeFlags::REPARSE_POINT) {
            FileKind::Other
        } else if file.is_directory() {
            FileKind::Dir
        } else {
            FileKind::File
        },
    )
}

impl Tree for View<'_> {
    /// The file record number.
    type Node = u64;

    fn root(&self) -> GuestResult<u64> {
        // The root directory is file record 5 ($ROOT's fixed place in the MFT).
        Ok(5)
    }

    fn lookup(&self, dir: &u64, name: &[u8]) -> GuestResult<Option<(u64, FileKind)>> {
        let Ok(name) = std::str::from_utf8(name) else {
            return Ok(None);
        };
        let dir = self.file(*dir)?;
        let mut cursor = self.cursor.borrow_mut();
        let index = dir.directory_index(&mut **cursor).map_err(map_err)?;
        let mut finder = index.finder();
        let found = NtfsFileNameIndex::find(&mut finder, self.ntfs, &mut **cursor, name);
        match found {
            None => Ok(None),
            Some(entry) => {
                let entry = entry.map_err(map_err)?;
                let record = entry.file_reference().file_record_number();
                drop(cursor);
                let kind = file_kind(&self.file(record)?)?;
                Ok(Some((record, kind)))
            }
        }
    }

    fn kind(&self, node: &u64) -> GuestResult<FileKind> {
        file_kind(&self.file(*node)?)
    }

    fn link_target(&self, _node: &u64) -> GuestResult<Vec<u8>> {
        Err(GuestError::Unsupported(
            "NTFS reparse points are not followed".into(),
        ))
    }
}

impl NtfsFs {
    pub fn open(source: Arc<dyn ByteSource>) -> GuestResult<Self> {
        let mut cursor = SourceCursor::new(source);
        let mut ntfs = Ntfs::new(&mut cursor).map_err(map_err)?;
        // Needed for every case-insensitive lookup (the crate panics without it).
        ntfs.read_upcase_table(&mut cursor).map_err(map_err)?;
        let label = ntfs
            .volume_name(&mut cursor)
            .and_then(Result::ok)
            .map(|n| n.name().to_string_lossy())
            .filter(|n| !n.is_empty());
        let uuid = Some(format!("{:016X}", ntfs.serial_number()));
        Ok(NtfsFs {
            ntfs,
            cursor: Mutex::new(cursor),
            uuid,
            label,
        })
    }

    fn view(&self) -> View<'_> {
        // A poisoned lock only means another caller panicked mid-read; the cursor holds
        // no state that could be half-updated in a way that matters (position is reset
        // by every read).
        let guard = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        View {
            ntfs: &self.ntfs,
            cursor: std::cell::RefCell::new(guard),
        }
    }
}

/// The length of the unnamed $DATA stream (0 when the file has none).
fn data_len(view: &View<'_>, file: &NtfsFile<'_>) -> GuestResult<u64> {
    let mut cursor = view.cursor.borrow_mut();
    match file.data(&mut **cursor, "") {
        None => Ok(0),
        Some(item) => {
            let item = item.map_err(map_err)?;
            let attribute = item.to_attribute().map_err(map_err)?;
            Ok(attribute.value_length())
        }
    }
}

impl NtfsFs {
    /// The unnamed data stream of a regular file: all of it (an error past `limit` when
    /// `whole`), or its first `limit` bytes.
    fn read_data(&self, path: &[u8], limit: u64, whole: bool) -> GuestResult<Vec<u8>> {
        let view = self.view();
        let node = resolve::resolve(&view, path, Last::Follow)?;
        let file = view.file(node)?;
        if file_kind(&file)? != FileKind::File {
            return Err(GuestError::WrongKind {
                path: shown(path),
                detail: "not a regular file".into(),
            });
        }
        let mut cursor = view.cursor.borrow_mut();
        let Some(item) = file.data(&mut **cursor, "") else {
            return Ok(Vec::new());
        };
        let item = item.map_err(map_err)?;
        let attribute = item.to_attribute().map_err(map_err)?;
        let mut len = attribute.value_length();
        if !whole {
            len = len.min(limit);
        }
        if len > limit {
            return Err(GuestError::Limit(format!(
                "{}: {len} bytes, more than the {limit}-byte limit",
                shown(path)
            )));
        }
        let mut value = attribute.value(&mut **cursor).map_err(map_err)?;
        let mut out = vec![0u8; len as usize];
        let mut filled = 0;
        while filled < out.len() {
            let rest = out.get_mut(filled..).unwrap_or_default();
            let n = value.read(&mut **cursor, rest).map_err(map_err)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        out.truncate(filled);
        Ok(out)
    }
}

impl GuestFs for NtfsFs {
    fn kind(&self) -> &'static str {
        "ntfs"
    }

    fn uuid(&self) -> Option<String> {
        self.uuid.clone()
    }

    fn label(&self) -> Option<String> {
        self.label.clone()
    }

    fn metadata(&self, path: &[u8]) -> GuestResult<Metadata> {
        let view = self.view();
        let node = resolve::resolve(&view, path, Last::NoFollow)?;
        let file = view.file(node)?;
        let kind = file_kind(&file)?;
        let size = match kind {
            FileKind::File => data_len(&view, &file)?,
            _ => 0,
        };
        Ok(Metadata { kind, size })
    }

    fn read_dir(&self, path: &[u8]) -> GuestResult<Vec<DirEntry>> {
        let view = self.view();
        let node = resolve::resolve(&view, path, Last::Follow)?;
        let dir = view.file(node)?;
        if !dir.is_directory() {
            return Err(GuestError::WrongKind {
                path: shown(path),
                detail: "not a directory".into(),
            });
        }
        let mut cursor = view.cursor.borrow_mut();
        let index = dir.directory_index(&mut **cursor).map_err(map_err)?;
        let mut entries = index.entries();
        let mut out = Vec::new();
        while let Some(entry) = entries.next(&mut **cursor) {
            let entry = entry.map_err(map_err)?;
            let Some(name) = entry.key() else {
                continue;
            };
            let name = name.map_err(map_err)?;
            // A file with a long name also has a DOS 8.3 alias: list the long one only.
            if name.namespace() == NtfsFileNamespace::Dos {
                continue;
            }
            if out.len() == MAX_DIR_ENTRIES {
                return Err(GuestError::Limit(format!(
                    "{}: more than {MAX_DIR_ENTRIES} entries",
                    shown(path)
                )));
            }
            let attributes = name.file_attributes();
            let kind = if attributes.contains(NtfsFileAttributeFlags::REPARSE_POINT) {
                FileKind::Other
            } else if name.is_directory() {
                FileKind::Dir
            } else {
                FileKind::File
            };
            out.push(DirEntry {
                name: name.name().to_string_lossy().into_bytes(),
                kind,
            });
        }
        Ok(out)
    }

    fn read_file(&self, path: &[u8], limit: u64) -> GuestResult<Vec<u8>> {
        self.read_data(path, limit, true)
    }

    /// hiberfil.sys is gigabytes; only its head is read.
    fn read_head(&self, path: &[u8], len: u64) -> GuestResult<Vec<u8>> {
        self.read_data(path, len, false)
    }

    fn read_link(&self, path: &[u8]) -> GuestResult<Vec<u8>> {
        resolve::resolve(&self.view(), path, Last::NoFollow)?;
        Err(GuestError::WrongKind {
            path: shown(path),
            detail: "NTFS reparse points are not read as symlinks".into(),
        })
    }
}

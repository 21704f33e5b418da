//! A whole-VM export as one model, whatever holds it: an `.ova` file (a tar read in
//! place), an OVF folder (a descriptor and files beside it), or an `.ova` read from a
//! pipe (`stream.rs`). The model lists the VM's disks with where their stored bytes are,
//! how they are stored, their OVF capacity and the controller they hang on.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Algorithm, OvaError, OvaResult, Place};
use super::gzip::{BoundedGunzip, inflate_limit};
use super::manifest::{DigestSet, Digests, HashingReader, MAX_MANIFEST, Manifest};
use super::names;
use super::ovf::{self, Attachment, Compression, Envelope, FileRef};
use super::tar::{self, Member, MemberKind, TarIndex};
use crate::disk::{Folder, OpenError};

/// At most this many chunks per file (`<href>.000000000` …).
pub const MAX_CHUNKS: u32 = 65_536;

/// What holds the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageKind {
    /// A tar archive (`.ova`), in a file or read from a pipe.
    Ova,
    /// A folder with the `.ovf` descriptor and the files it references.
    OvfFolder,
}

/// Where one stored file (or one chunk of it) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A member of the archive; its data starts at `offset` in the archive.
    Member { member: String, offset: u64 },
    /// A file of the folder, opened beneath it.
    File { path: PathBuf },
}

/// One stored file: a whole referenced file, or one chunk of it.
#[derive(Debug, Clone)]
pub struct Piece {
    /// Its name relative to the descriptor's folder: what the manifest lists.
    pub name: String,
    pub location: Location,
    pub size: u64,
    /// The opened file (folders only); kept so that what was checked is what is read.
    file: Option<Arc<File>>,
}

impl PartialEq for Piece {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.location == other.location && self.size == other.size
    }
}

impl Eq for Piece {}

/// A References/File that the package holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    pub id: String,
    /// Normalised href, relative to the descriptor's folder.
    pub href: String,
    pub compression: Compression,
    pub chunk_size: Option<u64>,
    /// `ovf:size`, as declared.
    pub declared_size: Option<u64>,
    /// The stored bytes, in order: one piece, or the chunks to concatenate.
    pub pieces: Vec<Piece>,
}

impl PackageFile {
    /// Bytes stored (compressed size for gzip).
    pub fn stored_size(&self) -> u64 {
        self.pieces.iter().map(|p| p.size).sum()
    }
}

/// A disk of the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageDisk {
    pub disk_id: String,
    /// The References/File id and href; None for an empty disk (no fileRef).
    pub file_id: Option<String>,
    pub href: Option<String>,
    /// OVF capacity in bytes; the VMDK inside says its own size (compare the two).
    pub capacity: u64,
    pub populated_size: Option<u64>,
    /// Format URI (VMware: `…vmdk.html#streamOptimized`).
    pub format: Option<String>,
    pub compression: Compression,
    pub chunk_size: Option<u64>,
    /// The stored bytes in order (empty for an empty disk).
    pub pieces: Vec<Piece>,
    /// Controller and position; None when no disk drive Item attaches it.
    pub attachment: Option<Attachment>,
}

impl PackageDisk {
    /// A gzip-compressed disk can be read front to back only: no positioned view.
    pub fn sequential_only(&self) -> bool {
        self.compression == Compression::Gzip
    }

    /// A Disk without a file: to be created blank, `capacity` bytes of zeros.
    pub fn is_blank(&self) -> bool {
        self.file_id.is_none()
    }

    /// Bytes stored.
    pub fn stored_size(&self) -> u64 {
        self.pieces.iter().map(|p| p.size).sum()
    }

    /// The bound a gzip-compressed disk may inflate to (see `gzip::inflate_limit`).
    pub fn inflate_limit(&self) -> u64 {
        inflate_limit(self.capacity)
    }
}

/// The manifest the package carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageManifest {
    /// Its name in the package.
    pub name: String,
    pub manifest: Manifest,
}

/// A parsed package.
#[derive(Debug, Clone)]
pub struct Package {
    pub kind: PackageKind,
    /// The `.ova`, or the `.ovf` of a folder (or the name given to a pipe).
    pub source: PathBuf,
    /// The descriptor's name in the package (archive member name, or file name).
    pub descriptor: String,
    pub envelope: Envelope,
    pub manifest: Option<PackageManifest>,
    /// The `.cert` present, by name; its signature is not verified.
    pub certificate: Option<String>,
    /// Every References/File the package holds.
    pub files: Vec<PackageFile>,
    /// The disks, in DiskSection order.
    pub disks: Vec<PackageDisk>,
    /// Anomalies tolerated (tar, descriptor, layout).
    pub warnings: Vec<String>,
    archive: Option<Arc<File>>,
    /// The descriptor as read (at most `ovf::MAX_DESCRIPTOR`), for its digest.
    descriptor_bytes: Arc<Vec<u8>>,
}

/// Equal models: what was parsed, not how it was opened (file or pipe).
impl PartialEq for Package {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.source == other.source
            && self.descriptor == other.descriptor
            && self.envelope == other.envelope
            && self.manifest == other.manifest
            && self.certificate == other.certificate
            && self.files == other.files
            && self.disks == other.disks
            && self.warnings == other.warnings
    }
}

/// What `verify_manifest` found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManifestReport {
    /// Files whose every listed digest matched.
    pub verified: Vec<String>,
    /// Package files the manifest does not list.
    pub unlisted: Vec<String>,
    /// Names the manifest lists that the package does not hold.
    pub absent: Vec<String>,
}

/// `OvaPackage::open_file(path)` reads an `.ova`.
pub type OvaPackage = Package;
/// `OvfPackage::open_dir(descriptor)` reads an OVF folder.
pub type OvfPackage = Package;

impl Package {
    /// Opens an `.ova` file: indexes the tar (headers only), reads the descriptor and the
    /// manifest, and locates every referenced file. No disk data is read.
    pub fn open_file(path: &Path) -> OvaResult<Package> {
        let here = Place::package(path);
        let file = File::open(path).map_err(|e| OvaError::io(here.clone(), "the archive", e))?;
        let meta = file
            .metadata()
            .map_err(|e| OvaError::io(here.clone(), "the archive's metadata", e))?;
        if !meta.is_file() {
            return Err(OvaError::refused(here, "is not a regular file"));
        }
        let index = tar::index_file(&file, path)?;
        let read = |m: &Member| -> OvaResult<Vec<u8>> {
            let mut buf = vec![0u8; m.size as usize];
            file.read_exact_at(&mut buf, m.offset)
                .map_err(|e| OvaError::io(Place::member(path, &m.name), "the member", e))?;
            Ok(buf)
        };
        let layout = OvaLayout::find(&index.members, path)?;
        let descriptor_place = Place::member(path, &layout.descriptor.name);
        if layout.descriptor.size > ovf::MAX_DESCRIPTOR {
            return Err(ovf::too_large(&descriptor_place, layout.descriptor.size));
        }
        let descriptor_bytes = read(layout.descriptor)?;
        let envelope = ovf::parse(&descriptor_bytes, &descriptor_place)?;
        let manifest = match layout.manifest {
            Some(m) => {
                let place = Place::member(path, &m.name);
                if m.size > MAX_MANIFEST {
                    return Err(manifest_too_large(&place, m.size));
                }
                Some(PackageManifest {
                    name: m.name.clone(),
                    manifest: Manifest::parse(&read(m)?, &place)?,
                })
            }
            None => None,
        };
        let mut package =
            assemble_ova(path, &index, &layout, envelope, manifest, descriptor_bytes)?;
        package.archive = Some(Arc::new(file));
        Ok(package)
    }

    /// Opens an OVF folder from its descriptor: referenced files are resolved beneath
    /// the descriptor's folder (no absolute names, no `..`, no link leading out) and
    /// must be regular files. Opens them; reads no disk data.
    pub fn open_dir(descriptor: &Path) -> OvaResult<Package> {
        let here = Place::package(descriptor);
        let mut file =
            File::open(descriptor).map_err(|e| OvaError::io(here.clone(), "the descriptor", e))?;
        let meta = file
            .metadata()
            .map_err(|e| OvaError::io(here.clone(), "the descriptor's metadata", e))?;
        if !meta.is_file() {
            return Err(OvaError::refused(here, "is not a regular file"));
        }
        if meta.len() > ovf::MAX_DESCRIPTOR {
            return Err(ovf::too_large(&here, meta.len()));
        }
        let mut bytes = Vec::new();
        (&mut file)
            .take(ovf::MAX_DESCRIPTOR + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| OvaError::io(here.clone(), "the descriptor", e))?;
        let envelope = ovf::parse(&bytes, &here)?;
        // The folder is opened once; every referenced file is opened beneath it.
        let folder = Folder::of(descriptor).map_err(|e| {
            OvaError::refused(here.clone(), format!("the descriptor's folder: {e}"))
        })?;
        let storage = FolderStorage { folder, descriptor };
        let descriptor_name = descriptor
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = strip_ext(&descriptor_name, ".ovf").unwrap_or(&descriptor_name);
        let manifest = match storage.find(&format!("{stem}.mf"))? {
            Some(piece) => {
                let place = Place::member(descriptor, &piece.name);
                if piece.size > MAX_MANIFEST {
                    return Err(manifest_too_large(&place, piece.size));
                }
                let mut bytes = Vec::new();
                piece
                    .file
                    .as_deref()
                    .map(|f| f.take(MAX_MANIFEST + 1).read_to_end(&mut bytes))
                    .transpose()
                    .map_err(|e| OvaError::io(place.clone(), "the manifest", e))?;
                Some(PackageManifest {
                    manifest: Manifest::parse(&bytes, &place)?,
                    name: piece.name,
                })
            }
            None => None,
        };
        let certificate = storage.find(&format!("{stem}.cert"))?.map(|p| p.name);
        let mut warnings = envelope.warnings.clone();
        let files = locate_files(
            &envelope,
            &storage,
            &Place::package(descriptor),
            &mut warnings,
        )?;
        let disks = disks(&envelope, &files, &mut warnings);
        Ok(Package {
            kind: PackageKind::OvfFolder,
            source: descriptor.to_path_buf(),
            descriptor: descriptor_name,
            envelope,
            manifest,
            certificate,
            files,
            disks,
            warnings,
            archive: None,
            descriptor_bytes: Arc::new(bytes),
        })
    }

    /// The archive file (an `.ova` opened from a file), for positioned reads.
    pub fn archive(&self) -> Option<&Arc<File>> {
        self.archive.as_ref()
    }

    /// A positioned, bounded view of one piece: the file holding it, the offset of its
    /// first byte there, and its size. None for a package read from a pipe.
    pub fn piece_view(&self, piece: &Piece) -> Option<PieceView> {
        let (file, offset) = match &piece.location {
            Location::Member { offset, .. } => (self.archive.as_ref()?, *offset),
            Location::File { .. } => (piece.file.as_ref()?, 0),
        };
        Some(PieceView {
            file: Arc::clone(file),
            offset,
            size: piece.size,
        })
    }

    /// Reads the stored bytes of `pieces` in order, as one stream (positioned reads; the
    /// package must not come from a pipe).
    pub fn stored_reader(&self, pieces: &[Piece]) -> OvaResult<PiecesReader> {
        let mut views = Vec::with_capacity(pieces.len());
        for p in pieces {
            let view = self.piece_view(p).ok_or_else(|| {
                OvaError::unsupported(
                    Place::member(&self.source, &p.name),
                    "was read from a pipe; its bytes are no longer available",
                )
            })?;
            views.push((p.name.clone(), view));
        }
        Ok(PiecesReader {
            source: self.source.clone(),
            views,
            current: 0,
            pos: 0,
        })
    }

    /// The disk's contents as a stream: its stored bytes, gunzipped (with the bound of
    /// `PackageDisk::inflate_limit`) when it is compressed. For a blank disk, an empty
    /// stream.
    pub fn disk_reader(&self, disk: &PackageDisk) -> OvaResult<Box<dyn Read + Send>> {
        let stored = self.stored_reader(&disk.pieces)?;
        Ok(match disk.compression {
            Compression::Identity => Box::new(stored),
            Compression::Gzip => Box::new(BoundedGunzip::new(
                stored,
                disk.inflate_limit(),
                Place::member(&self.source, disk.href.clone().unwrap_or_default()),
            )),
        })
    }

    /// Every stored package file the manifest should cover: the descriptor and every
    /// piece of every referenced file.
    pub fn covered_names(&self) -> Vec<String> {
        let mut names = vec![names::file_name(&self.descriptor).to_string()];
        names.extend(
            self.files
                .iter()
                .flat_map(|f| f.pieces.iter().map(|p| p.name.clone())),
        );
        names
    }

    /// Reads every file the manifest lists and checks its digests (a whole pass over the
    /// package: for `info --verify`; a conversion can instead hash pieces as it reads
    /// them with `manifest::HashingReader` and `Manifest::verify`). A mismatch is
    /// `OvaError::ManifestMismatch` naming the file.
    pub fn verify_manifest(&self) -> OvaResult<Option<ManifestReport>> {
        let Some(pm) = &self.manifest else {
            return Ok(None);
        };
        let pieces: Vec<&Piece> = self.files.iter().flat_map(|f| f.pieces.iter()).collect();
        self.check_manifest(&pm.manifest, |name, algorithms| {
            let Some(piece) = pieces.iter().find(|p| p.name == name) else {
                return Ok(None);
            };
            let place = Place::member(&self.source, name);
            let mut r = HashingReader::new(
                self.stored_reader(std::slice::from_ref(*piece))?,
                algorithms,
            );
            io::copy(&mut r, &mut io::sink())
                .map_err(|e| OvaError::from_io(place, "the file", e))?;
            Ok(Some(r.finish().0))
        })
        .map(Some)
    }

    /// Checks the manifest against digests `digest_of(name, algorithms)` gives for the
    /// stored files (None: not available); the descriptor is hashed from memory.
    pub(crate) fn check_manifest(
        &self,
        m: &Manifest,
        mut digest_of: impl FnMut(&str, &[Algorithm]) -> OvaResult<Option<Digests>>,
    ) -> OvaResult<ManifestReport> {
        let mut report = ManifestReport::default();
        let descriptor_name = names::file_name(&self.descriptor);
        let covered = self.covered_names();
        for name in &covered {
            let algorithms = m.algorithms_for(name);
            if algorithms.is_empty() {
                report.unlisted.push(name.clone());
                continue;
            }
            let found = if name == descriptor_name {
                let mut set = DigestSet::new(&algorithms);
                set.update(&self.descriptor_bytes);
                set.finish()
            } else {
                match digest_of(name, &algorithms)? {
                    Some(d) => d,
                    None => continue,
                }
            };
            m.verify(name, &found, &Place::member(&self.source, name))?;
            report.verified.push(name.clone());
        }
        for e in &m.entries {
            if !covered.contains(&e.name) && !report.absent.contains(&e.name) {
                report.absent.push(e.name.clone());
            }
        }
        Ok(report)
    }
}

pub(crate) fn manifest_too_large(place: &Place, size: u64) -> OvaError {
    OvaError::limit(
        place.clone(),
        format!("the manifest is {size} bytes; at most {MAX_MANIFEST} are read"),
    )
}

/// Whether an archive member is an OVF descriptor: a `.ovf`, except the AppleDouble
/// `._name.ovf` files macOS adds beside every file it archives (virt-v2v skips them too).
pub(crate) fn is_descriptor(name: &str) -> bool {
    strip_ext(name, ".ovf").is_some() && !names::file_name(name).starts_with("._")
}

/// `name` without a case-insensitive extension.
fn strip_ext<'a>(name: &'a str, ext: &str) -> Option<&'a str> {
    let cut = name.len().checked_sub(ext.len())?;
    (name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(ext)).then(|| &name[..cut])
}

/// Where a piece's bytes are: `size` bytes from `offset` in `file` (the archive, or the
/// folder's file opened beneath it). What an InputFile-like bounded reader is built on.
#[derive(Debug, Clone)]
pub struct PieceView {
    pub file: Arc<File>,
    pub offset: u64,
    pub size: u64,
}

/// Reads the stored bytes of pieces in order with positioned reads.
pub struct PiecesReader {
    source: PathBuf,
    views: Vec<(String, PieceView)>,
    current: usize,
    pos: u64,
}

impl Read for PiecesReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some((name, view)) = self.views.get(self.current) {
            let PieceView { file, offset, size } = view;
            if self.pos >= *size {
                self.current += 1;
                self.pos = 0;
                continue;
            }
            let want = buf
                .len()
                .min(usize::try_from(size - self.pos).unwrap_or(usize::MAX));
            let n = file.read_at(&mut buf[..want], offset + self.pos)?;
            if n == 0 && want > 0 {
                return Err(io::Error::other(OvaError::corrupt(
                    Place::member(&self.source, name),
                    "stored file",
                    self.pos,
                    "the file ended early (shrunk since it was opened)",
                )));
            }
            self.pos += n as u64;
            return Ok(n);
        }
        Ok(0)
    }
}

// ---------------------------------------------------------------------------------------
// Locating referenced files, shared by archives and folders.

/// Looks up stored files by name relative to the descriptor's folder.
trait Storage {
    fn find(&self, name: &str) -> OvaResult<Option<Piece>>;
}

struct FolderStorage<'a> {
    folder: Folder,
    descriptor: &'a Path,
}

impl Storage for FolderStorage<'_> {
    fn find(&self, name: &str) -> OvaResult<Option<Piece>> {
        let place = Place::member(self.descriptor, name);
        let file = match self.folder.open(Path::new(name), true) {
            Ok(f) => f,
            Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(OpenError::Escapes) => {
                return Err(OvaError::refused(
                    place,
                    "leads outside the package's folder (through a link)",
                ));
            }
            Err(OpenError::NotRegular(what)) => {
                return Err(OvaError::refused(
                    place,
                    format!("is {what}, not a regular file (devices and FIFOs are never read)"),
                ));
            }
            Err(OpenError::Io(e)) => return Err(OvaError::io(place, "the file", e)),
        };
        let size = file.len();
        Ok(Some(Piece {
            name: name.to_string(),
            location: Location::File {
                path: self.folder.path().join(name),
            },
            size,
            file: Some(file.shared()),
        }))
    }
}

/// An archive's members, seen from the descriptor's folder inside it.
pub(crate) struct ArchiveStorage<'a> {
    pub package: &'a Path,
    pub members: &'a [Member],
    /// The descriptor's folder inside the archive (`""` at the top).
    pub dir: &'a str,
}

impl Storage for ArchiveStorage<'_> {
    fn find(&self, name: &str) -> OvaResult<Option<Piece>> {
        let member_name = names::join(self.dir, name);
        let mut found = self.members.iter().filter(|m| m.name == member_name);
        let Some(m) = found.next() else {
            return Ok(None);
        };
        let place = Place::member(self.package, &member_name);
        if found.next().is_some() {
            return Err(OvaError::refused(
                place,
                "appears twice in the archive; which one is meant is ambiguous",
            ));
        }
        if m.kind != MemberKind::File {
            return Err(OvaError::refused(
                place,
                format!("is a {:?} member, not a regular file", m.kind),
            ));
        }
        Ok(Some(Piece {
            name: name.to_string(),
            location: Location::Member {
                member: m.name.clone(),
                offset: m.offset,
            },
            size: m.size,
            file: None,
        }))
    }
}

/// Finds the stored pieces of every References/File. A disk's file that is missing is
/// an error; any other missing file a warning (the VM can be converted without its ISO).
fn locate_files(
    envelope: &Envelope,
    storage: &dyn Storage,
    here: &Place,
    warnings: &mut Vec<String>,
) -> OvaResult<Vec<PackageFile>> {
    let mut files = Vec::new();
    for f in &envelope.files {
        let is_disk = envelope
            .disks
            .iter()
            .any(|d| d.file_ref.as_deref() == Some(f.id.as_str()));
        let pieces = match f.chunk_size {
            Some(chunk) => chunks(f, chunk, storage, here)?,
            None => storage.find(&f.href)?.into_iter().collect(),
        };
        if pieces.is_empty() {
            let name = match f.chunk_size {
                Some(_) => names::chunk_name(&f.href, 0),
                None => f.href.clone(),
            };
            let detail = format!("File {:?} ({name}) is not in the package", f.id);
            if is_disk {
                return Err(OvaError::missing(
                    Place::member(&here.package, name),
                    detail,
                ));
            }
            warnings.push(detail);
            continue;
        }
        let file = PackageFile {
            id: f.id.clone(),
            href: f.href.clone(),
            compression: f.compression,
            chunk_size: f.chunk_size,
            declared_size: f.size,
            pieces,
        };
        if let Some(declared) = f.size
            && declared != file.stored_size()
        {
            warnings.push(format!(
                "File {:?} ({}) declares ovf:size {declared} but holds {} bytes",
                f.id,
                f.href,
                file.stored_size()
            ));
        }
        files.push(file);
    }
    Ok(files)
}

/// The chunks of a file stored with `ovf:chunkSize`: `<href>.000000000` on, until one is
/// missing; each exactly `chunk` bytes except the last, which is 1 to `chunk` bytes.
fn chunks(f: &FileRef, chunk: u64, storage: &dyn Storage, here: &Place) -> OvaResult<Vec<Piece>> {
    let mut pieces: Vec<Piece> = Vec::new();
    for i in 0..=MAX_CHUNKS {
        let name = names::chunk_name(&f.href, i);
        let Some(piece) = storage.find(&name)? else {
            break;
        };
        if i == MAX_CHUNKS {
            return Err(OvaError::limit(
                Place::member(&here.package, name),
                format!("File {:?} has more than {MAX_CHUNKS} chunks", f.id),
            ));
        }
        pieces.push(piece);
    }
    let count = pieces.len();
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == count;
        let ok = if last {
            (1..=chunk).contains(&p.size)
        } else {
            p.size == chunk
        };
        if !ok {
            return Err(OvaError::corrupt(
                Place::member(&here.package, &p.name),
                "chunk",
                0,
                format!(
                    "is {} bytes; File {:?} has ovf:chunkSize {chunk} ({})",
                    p.size,
                    f.id,
                    if last {
                        "the last chunk must hold 1 to chunkSize bytes"
                    } else {
                        "every chunk but the last must be exactly that"
                    }
                ),
            ));
        }
    }
    Ok(pieces)
}

/// The disks, each with its file's pieces and its attachment.
fn disks(
    envelope: &Envelope,
    files: &[PackageFile],
    warnings: &mut Vec<String>,
) -> Vec<PackageDisk> {
    envelope
        .disks
        .iter()
        .map(|d| {
            let file = d
                .file_ref
                .as_deref()
                .and_then(|id| files.iter().find(|f| f.id == id));
            let attachment = envelope.attachment(d);
            if attachment.is_none() {
                warnings.push(format!(
                    "disk {:?} is attached to no controller by the descriptor",
                    d.disk_id
                ));
            }
            PackageDisk {
                disk_id: d.disk_id.clone(),
                file_id: d.file_ref.clone(),
                href: file.map(|f| f.href.clone()),
                capacity: d.capacity,
                populated_size: d.populated_size,
                format: d.format.clone(),
                compression: file.map_or(Compression::Identity, |f| f.compression),
                chunk_size: file.and_then(|f| f.chunk_size),
                pieces: file.map(|f| f.pieces.clone()).unwrap_or_default(),
                attachment,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Archives: which member is what.

/// The descriptor, manifest and certificate members of an archive.
pub(crate) struct OvaLayout<'a> {
    pub descriptor: &'a Member,
    pub manifest: Option<&'a Member>,
    pub certificate: Option<&'a Member>,
    pub warnings: Vec<String>,
}

impl<'a> OvaLayout<'a> {
    /// Exactly one `.ovf` (as virt-v2v requires: two would be two packages); the
    /// manifest and certificate share its name with `.mf` and `.cert`.
    pub fn find(members: &'a [Member], package: &Path) -> OvaResult<Self> {
        let is_file = |m: &&Member| m.kind == MemberKind::File;
        let mut descriptors = members
            .iter()
            .filter(is_file)
            .filter(|m| is_descriptor(&m.name));
        let descriptor = descriptors.next().ok_or_else(|| {
            OvaError::missing(
                Place::package(package),
                "the archive holds no .ovf descriptor",
            )
        })?;
        if let Some(second) = descriptors.next() {
            return Err(OvaError::unsupported(
                Place::package(package),
                format!(
                    "the archive holds several descriptors ({:?}, {:?}); an OVA holds one package",
                    descriptor.name, second.name
                ),
            ));
        }
        let stem = strip_ext(&descriptor.name, ".ovf").unwrap_or(&descriptor.name);
        let named = |ext: &str| {
            members
                .iter()
                .filter(is_file)
                .find(|m| strip_ext(&m.name, ext) == Some(stem))
        };
        let manifest = named(".mf");
        let certificate = named(".cert");
        let mut warnings = Vec::new();
        let position = members
            .iter()
            .position(|m| std::ptr::eq(m, descriptor))
            .unwrap_or(0);
        // As the pipe reader sees it: manifests, certificates, folders and AppleDouble
        // files may come first; anything else would have to be skipped unread.
        if members[..position].iter().any(|m| {
            m.kind == MemberKind::File
                && !names::file_name(&m.name).starts_with("._")
                && strip_ext(&m.name, ".mf").is_none()
                && strip_ext(&m.name, ".cert").is_none()
        }) {
            warnings.push(
                "the descriptor is not the first member; this archive cannot be read from a pipe"
                    .into(),
            );
        }
        Ok(OvaLayout {
            descriptor,
            manifest,
            certificate,
            warnings,
        })
    }
}

/// The model of an archive from its index and parsed descriptor and manifest (shared by
/// the file and the pipe readers, so both give the same model).
pub(crate) fn assemble_ova(
    path: &Path,
    index: &TarIndex,
    layout: &OvaLayout,
    envelope: Envelope,
    manifest: Option<PackageManifest>,
    descriptor_bytes: Vec<u8>,
) -> OvaResult<Package> {
    let dir = names::parent(&layout.descriptor.name);
    let storage = ArchiveStorage {
        package: path,
        members: &index.members,
        dir,
    };
    let mut warnings = index.warnings.clone();
    warnings.extend(layout.warnings.iter().cloned());
    warnings.extend(envelope.warnings.iter().cloned());
    let files = locate_files(&envelope, &storage, &Place::package(path), &mut warnings)?;
    let disks = disks(&envelope, &files, &mut warnings);
    // Members nobody uses: worth a word (a stray file is harmless, but it was not checked).
    for m in &index.members {
        let used = std::ptr::eq(m, layout.descriptor)
            || layout.manifest.is_some_and(|x| std::ptr::eq(x, m))
            || layout.certificate.is_some_and(|x| std::ptr::eq(x, m))
            || files.iter().flat_map(|f| &f.pieces).any(|p| {
                matches!(&p.location, Location::Member { member, offset } if *member == m.name && *offset == m.offset)
            });
        if !used && m.kind != MemberKind::Directory {
            warnings.push(format!(
                "member {:?} is not part of the package; ignored",
                m.name
            ));
        }
    }
    Ok(Package {
        kind: PackageKind::Ova,
        source: path.to_path_buf(),
        descriptor: layout.descriptor.name.clone(),
        envelope,
        manifest,
        certificate: layout.certificate.map(|c| c.name.clone()),
        files,
        disks,
        warnings,
        archive: None,
        descriptor_bytes: Arc::new(descriptor_bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::super::manifest::DigestSet;
    use super::super::stream::OvaStream;
    use super::super::tar::testing::archive;
    use super::*;

    const OVF: &str = r#"<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:id="f1" ovf:href="d1.vmdk" ovf:size="5"/></References>
  <DiskSection>
    <Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="1048576"/>
    <Disk ovf:diskId="blank" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30"/>
  </DiskSection>
  <VirtualSystem ovf:id="vm">
    <VirtualHardwareSection>
      <Item><rasd:Address>0</rasd:Address><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceType>5</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>1</rasd:AddressOnParent><rasd:HostResource>ovf:/file/f1</rasd:HostResource><rasd:InstanceID>6</rasd:InstanceID><rasd:Parent>5</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>"#;

    #[test]
    fn descriptor_in_a_folder_appledouble_and_a_blank_disk() {
        let bytes = archive(&[
            ("vm/", b"", b'5'),
            ("vm/._vm.ovf", b"mac", b'0'),
            ("vm/vm.ovf", OVF.as_bytes(), b'0'),
            ("vm/d1.vmdk", b"KDMV!", b'0'),
        ]);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.ova");
        std::fs::write(&path, &bytes).unwrap();
        let pkg = Package::open_file(&path).unwrap();
        assert_eq!(pkg.descriptor, "vm/vm.ovf");
        assert_eq!(pkg.disks.len(), 2);
        let d = &pkg.disks[0];
        assert_eq!(
            d.pieces[0].location,
            Location::Member {
                member: "vm/d1.vmdk".into(),
                offset: 3 * 512 + 3 * 512 + 512
            }
        );
        let a = d.attachment.as_ref().unwrap();
        assert_eq!((a.bus, a.unit), (Some(0), Some(1)));
        let mut content = Vec::new();
        pkg.disk_reader(d)
            .unwrap()
            .read_to_end(&mut content)
            .unwrap();
        assert_eq!(content, b"KDMV!");
        let blank = &pkg.disks[1];
        assert!(blank.is_blank() && blank.pieces.is_empty());
        assert_eq!(blank.capacity, 1 << 30);
        assert_eq!(
            pkg.warnings,
            [
                "disk \"blank\" is attached to no controller by the descriptor",
                "member \"vm/._vm.ovf\" is not part of the package; ignored",
            ]
        );
        let mut stream = OvaStream::new(&bytes[..], &path).unwrap();
        while stream.next_file().unwrap().is_some() {}
        assert_eq!(stream.finish().unwrap().package, pkg);
    }

    #[test]
    fn duplicates_and_links_are_refused() {
        let twice = archive(&[
            ("vm.ovf", OVF.as_bytes(), b'0'),
            ("d1.vmdk", b"KDMV!", b'0'),
            ("d1.vmdk", b"other", b'0'),
        ]);
        let link = archive(&[("vm.ovf", OVF.as_bytes(), b'0'), ("d1.vmdk", b"", b'2')]);
        let two = archive(&[
            ("a.ovf", OVF.as_bytes(), b'0'),
            ("b.ovf", OVF.as_bytes(), b'0'),
        ]);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.ova");
        for (bytes, refused) in [(twice, true), (link, true), (two, false)] {
            std::fs::write(&path, &bytes).unwrap();
            let e = Package::open_file(&path).unwrap_err();
            assert_eq!(matches!(e, OvaError::Refused { .. }), refused, "{e}");
        }
    }

    #[test]
    fn a_manifest_at_the_end_is_checked_while_streaming() {
        let sha = |data: &[u8]| {
            let mut set = DigestSet::new(&[Algorithm::Sha256]);
            set.update(data);
            set.finish().sha256.unwrap()
        };
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.ova");
        for (disk_digest, ok) in [(sha(b"KDMV!"), true), (sha(b"KDMV?"), false)] {
            let mf = format!(
                "SHA256(vm.ovf)= {}\nSHA256(d1.vmdk)= {disk_digest}\n",
                sha(OVF.as_bytes())
            );
            let bytes = archive(&[
                ("vm.ovf", OVF.as_bytes(), b'0'),
                ("d1.vmdk", b"KDMV!", b'0'),
                ("vm.mf", mf.as_bytes(), b'0'),
            ]);
            std::fs::write(&path, &bytes).unwrap();
            let stream = OvaStream::new(&bytes[..], &path).unwrap();
            let file = Package::open_file(&path).unwrap().verify_manifest();
            match (stream.finish(), file) {
                (Ok(outcome), Ok(Some(report))) if ok => {
                    let streamed = outcome.report.unwrap();
                    assert_eq!(streamed, report);
                    assert_eq!(report.verified, ["vm.ovf", "d1.vmdk"]);
                }
                (Err(a), Err(b)) if !ok => {
                    for e in [a, b] {
                        assert!(
                            matches!(&e, OvaError::ManifestMismatch { place, .. } if place.member.as_deref() == Some("d1.vmdk")),
                            "{e}"
                        );
                    }
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

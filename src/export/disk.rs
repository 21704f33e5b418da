//! An export's disks as the pipeline reads them: in place (a member of the archive, or a
//! file of the folder, through a bounded window: no copy is made), front to back (gzip
//! and chunked files, hashed piece by piece for the manifest as they pass), or blank (a
//! Disk without a file: zeros of its capacity).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cancel::Cancel;
use crate::detect::{self, Format};
use crate::disk::info::ImageInfo;
use crate::disk::{Disk, InputFile, OpenOptions, Run, RunKind};
use crate::error::{Error, Result};
use crate::ova::{Algorithm, DigestSet, Digests, OvaError, Package, PackageDisk, Place};
use crate::vhd::read::VhdDisk;
use crate::vhdx::read::VhdxDisk;
use crate::vmdk::VmdkDisk;

/// How the name of a disk inside a package reads in messages: `vm.ova(vm-disk1.vmdk)`,
/// the archive and the member, as `ar` and linkers name archive members.
pub fn member_path(package: &Path, member: &str) -> PathBuf {
    let mut s = package.as_os_str().to_os_string();
    s.push(format!("({member})"));
    PathBuf::from(s)
}

/// Whether the disk's bytes can be read in place: one piece, stored as is.
pub fn readable_in_place(disk: &PackageDisk) -> bool {
    disk.pieces.len() == 1 && !disk.sequential_only()
}

/// Opens a disk of the package in place, detecting its format from its content (VMDK
/// sparse or streamOptimized, VHD, VHDX). A VMDK text descriptor is refused: it would name
/// files outside the package's list. None when the disk cannot be read in place (gzip,
/// chunks, a package read from a pipe, a blank disk).
pub fn open_in_place(
    pkg: &Package,
    disk: &PackageDisk,
    options: &OpenOptions,
) -> Result<Option<Box<dyn Disk>>> {
    if !readable_in_place(disk) {
        return Ok(None);
    }
    let piece = &disk.pieces[0];
    let Some(view) = pkg.piece_view(piece) else {
        return Ok(None);
    };
    let path = match &piece.location {
        crate::ova::Location::Member { member, .. } => member_path(&pkg.source, member),
        crate::ova::Location::File { path } => path.clone(),
    };
    let file = InputFile::from_range(&path, view.file, view.offset, view.size)?;
    let base = file.base();
    let inner: Box<dyn Disk> = match detect::identify(&file)? {
        Some(Format::VmdkSparse) => Box::new(VmdkDisk::open(file, Format::VmdkSparse, options)?),
        Some(Format::Vhd) => Box::new(VhdDisk::open(file)?),
        Some(Format::Vhdx) => Box::new(VhdxDisk::open(file)?),
        Some(Format::VmdkDescriptor) => {
            return Err(Error::unsupported(
                &path,
                "is a VMDK text descriptor, which names other files; a disk of an export must be one self-contained file (streamOptimized VMDK, VHD or VHDX)",
            ));
        }
        Some(Format::Raw) | None => {
            return Err(Error::unsupported(
                &path,
                "format not recognised (no KDMV, conectix or vhdxfile signature); the disks of an export vdconv reads are VMDK, VHD or VHDX",
            ));
        }
    };
    let mut files = vec![pkg.source.clone()];
    if let crate::ova::Location::File { path } = &piece.location {
        files.push(path.clone());
    }
    Ok(Some(Box::new(InPlace { inner, base, files })))
}

/// A disk read from a window of a larger file: reads and maps pass through; the file
/// ranges the reader offers for kernel copies are shifted to the window's place in the
/// file; the files it reads are the package's.
struct InPlace {
    inner: Box<dyn Disk>,
    base: u64,
    files: Vec<PathBuf>,
}

impl Disk for InPlace {
    fn virtual_size(&self) -> u64 {
        self.inner.virtual_size()
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn map_range(&mut self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
        self.inner.map_range(offset, len, out)
    }

    fn read_range(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.read_range(offset, buf)
    }

    fn describe(&mut self, cancel: &Cancel) -> Result<ImageInfo> {
        self.inner.describe(cancel)
    }

    fn adapter_type(&self) -> Option<String> {
        self.inner.adapter_type()
    }

    fn file_range(&self, offset: u64, len: u64) -> Option<(Arc<File>, u64)> {
        // The reader's offsets are relative to the window it was given.
        let (file, at) = self.inner.file_range(offset, len)?;
        Some((file, at.checked_add(self.base)?))
    }

    fn in_place_file(&self) -> std::result::Result<PathBuf, String> {
        Err("a disk inside an export is not a flat VMDK file of its own".into())
    }

    fn warnings(&self) -> &[String] {
        self.inner.warnings()
    }

    fn files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }
}

/// A Disk of the descriptor without a file: an empty disk of its capacity.
pub struct BlankDisk {
    path: PathBuf,
    size: u64,
}

impl BlankDisk {
    pub fn new(path: PathBuf, size: u64) -> Self {
        BlankDisk { path, size }
    }
}

impl Disk for BlankDisk {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn map_range(&mut self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
        crate::disk::push_run(out, offset, len, RunKind::Zero);
        Ok(())
    }

    fn read_range(&mut self, _offset: u64, buf: &mut [u8]) -> Result<()> {
        buf.fill(0);
        Ok(())
    }

    fn describe(&mut self, _cancel: &Cancel) -> Result<ImageInfo> {
        Ok(ImageInfo {
            file: self.path.display().to_string(),
            format: "raw",
            layout: "blank".into(),
            virtual_size: self.size,
            allocated_bytes: 0,
            extents: Vec::new(),
            vmdk: None,
            vhd: None,
            vhdx: None,
            warnings: Vec::new(),
        })
    }

    fn warnings(&self) -> &[String] {
        &[]
    }

    fn files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// The pieces of a stored file read in order with positioned reads, each hashed with its
/// own algorithms as it passes (the manifest lists chunks one by one), so that a disk
/// read front to back is verified in the same pass. Reads check `cancel`.
pub struct HashedPieces {
    pieces: Vec<HashedPiece>,
    current: usize,
    pos: u64,
    cancel: Cancel,
    digests: Vec<(String, Digests)>,
}

struct HashedPiece {
    name: String,
    place: Place,
    view: crate::ova::PieceView,
    hasher: Option<DigestSet>,
}

impl HashedPieces {
    /// `algorithms(name)`: what the manifest lists for a piece (empty: not hashed).
    pub fn new(
        pkg: &Package,
        disk: &PackageDisk,
        algorithms: &dyn Fn(&str) -> Vec<Algorithm>,
        cancel: &Cancel,
    ) -> Result<Self> {
        let mut pieces = Vec::with_capacity(disk.pieces.len());
        for p in &disk.pieces {
            let place = Place::member(&pkg.source, &p.name);
            let view = pkg.piece_view(p).ok_or_else(|| {
                OvaError::unsupported(place.clone(), "its bytes are not available to read")
            })?;
            let algs = algorithms(&p.name);
            pieces.push(HashedPiece {
                name: p.name.clone(),
                place,
                view,
                hasher: (!algs.is_empty()).then(|| DigestSet::new(&algs)),
            });
        }
        Ok(HashedPieces {
            pieces,
            current: 0,
            pos: 0,
            cancel: cancel.clone(),
            digests: Vec::new(),
        })
    }

    /// Reads (and hashes) what is left, and returns each hashed piece's digests.
    pub fn finish(mut self) -> Result<Vec<(String, Digests)>> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(error_of(e, &self.source_path(), "the stored file")),
            }
        }
        Ok(self.digests)
    }

    fn source_path(&self) -> PathBuf {
        self.pieces
            .first()
            .map(|p| p.place.package.clone())
            .unwrap_or_default()
    }
}

impl Read for HashedPieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        self.cancel.check().map_err(io::Error::other)?;
        while let Some(piece) = self.pieces.get_mut(self.current) {
            let size = piece.view.size;
            if self.pos >= size {
                if let Some(h) = piece.hasher.take() {
                    self.digests.push((piece.name.clone(), h.finish()));
                }
                self.current += 1;
                self.pos = 0;
                continue;
            }
            let want = buf
                .len()
                .min(usize::try_from(size - self.pos).unwrap_or(usize::MAX));
            let n = piece
                .view
                .file
                .read_at(&mut buf[..want], piece.view.offset + self.pos)?;
            if n == 0 && want > 0 {
                let e = OvaError::corrupt(
                    piece.place.clone(),
                    "stored file",
                    self.pos,
                    "the file ended early (shrunk since it was opened)",
                );
                return Err(io::Error::other(Error::from(e)));
            }
            if let Some(h) = piece.hasher.as_mut() {
                h.update(&buf[..n]);
            }
            self.pos += n as u64;
            return Ok(n);
        }
        Ok(0)
    }
}

/// A reader whose errors carry the crate's typed error: the OVA layer's readers wrap an
/// `OvaError` in their `io::Error`s (a truncated member, a gzip stream past its bound),
/// which the VMDK reader, below the OVA layer, would not recognise.
pub struct Typed<R> {
    inner: R,
    place: Place,
}

impl<R: Read> Typed<R> {
    pub fn new(inner: R, place: Place) -> Self {
        Typed { inner, place }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Typed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.get_ref().is_some_and(|i| i.is::<Error>()) {
                return e;
            }
            io::Error::other(Error::from(OvaError::from_io(
                self.place.clone(),
                "the stored file",
                e,
            )))
        })
    }
}

/// The crate error an `io::Error` from these readers carries, or one made from it.
pub fn error_of(e: io::Error, path: &Path, what: &str) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        if let Some(Ok(inner)) = e.into_inner().map(|i| i.downcast::<Error>()) {
            return *inner;
        }
        return Error::input_io(path, what.to_string(), io::Error::other("unreadable"));
    }
    if e.get_ref().is_some_and(|i| i.is::<OvaError>()) {
        return Error::from(OvaError::from_io(Place::package(path), what.to_string(), e));
    }
    Error::input_io(path, what.to_string(), e)
}

/// The capacity the descriptor gives against the size the stored disk holds: they must
/// agree, or which one the VM expects is a guess (an error for convert, a warning for
/// info). None when they agree.
pub fn capacity_mismatch(disk_id: &str, name: &str, capacity: u64, size: u64) -> Option<String> {
    (capacity != size).then(|| {
        format!(
            "disk {disk_id:?} ({name}): the OVF descriptor gives a capacity of {capacity} bytes, but the disk it stores holds {size} bytes"
        )
    })
}

/// The crate error for a package error, naming the manifest in a digest mismatch (the
/// OVA layer knows the file that failed, not which manifest listed it).
pub fn with_manifest(e: OvaError, manifest: &str) -> Error {
    match e {
        OvaError::ManifestMismatch {
            place,
            algorithm,
            expected,
            found,
        } => Error::manifest_mismatch(
            &place.package,
            format!(
                "manifest {manifest}: {}: {algorithm} digest is {found}, the manifest says {expected}; the file was damaged or changed after the manifest was written",
                place.member.as_deref().unwrap_or("a listed file")
            ),
        ),
        other => Error::from(other),
    }
}

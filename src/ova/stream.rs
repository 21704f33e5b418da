//! An `.ova` read from a pipe, front to back: the descriptor first (the OVF specification
//! puts it first so that a reader need not scan the archive), then each stored file as it
//! passes, hashed on the way, so that the manifest is checked without a second pass. At
//! the end, the same model `Package::open_file` gives, and the manifest's verdict.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::error::{Algorithm, OvaError, OvaResult, Place};
use super::manifest::{DigestSet, Digests, MAX_MANIFEST, Manifest};
use super::names;
use super::ovf::{self, Compression, Envelope};
use super::package::{
    ManifestReport, OvaLayout, Package, PackageManifest, assemble_ova, is_descriptor,
    manifest_too_large,
};
use super::tar::{Member, MemberKind, MemberReader, TarIndex, TarStream};

/// At most this many small members (manifests) before the descriptor are held.
const MAX_EARLY: usize = 8;

/// An `.ova` being read from a pipe.
pub struct OvaStream<R> {
    tar: TarStream<R>,
    source: PathBuf,
    members: Vec<Member>,
    descriptor: Member,
    descriptor_bytes: Vec<u8>,
    envelope: Envelope,
    /// The descriptor's folder in the archive, and the manifest's and certificate's names.
    dir: String,
    manifest_name: String,
    certificate_name: String,
    manifest: Option<PackageManifest>,
    /// The file being read, and its hashers.
    current: Option<(String, DigestSet)>,
    digests: Vec<(String, Digests)>,
    /// Hash files and check the manifest (the default).
    verify: bool,
}

/// One stored file of the package as it passes: which References/File (and chunk) it
/// is, and a `Read` of exactly its bytes. What is not read is hashed and skipped by the
/// next `next_file` or `finish`.
pub struct StreamFile<'a, R> {
    /// Its name relative to the descriptor's folder (what the manifest lists).
    pub name: String,
    /// The References/File it stores, if any (None: not part of the package).
    pub file_id: Option<String>,
    /// For a file stored in chunks: which chunk.
    pub chunk: Option<u32>,
    /// The disk it belongs to, if any.
    pub disk_id: Option<String>,
    pub compression: Compression,
    reader: MemberReader<'a, R>,
    hasher: &'a mut DigestSet,
}

impl<R> StreamFile<'_, R> {
    pub fn member(&self) -> &Member {
        self.reader.member()
    }
}

impl<R: Read> Read for StreamFile<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// One stored file of the package as `next_entry` gives it: as `StreamFile`, without
/// the reader.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    /// Its name relative to the descriptor's folder (what the manifest lists).
    pub name: String,
    /// The References/File it stores, if any (None: not part of the package).
    pub file_id: Option<String>,
    /// For a file stored in chunks: which chunk.
    pub chunk: Option<u32>,
    /// The disk it belongs to, if any.
    pub disk_id: Option<String>,
    pub compression: Compression,
    /// The archive member holding it.
    pub member: Member,
}

/// What a finished stream gives.
#[derive(Debug)]
pub struct StreamOutcome {
    pub package: Package,
    /// The manifest's verdict (None without a manifest). A mismatch is an error instead.
    pub report: Option<ManifestReport>,
}

fn ends_with(name: &str, ext: &str) -> bool {
    name.len() >= ext.len()
        && name.is_char_boundary(name.len() - ext.len())
        && name[name.len() - ext.len()..].eq_ignore_ascii_case(ext)
}

impl<R: Read> OvaStream<R> {
    /// Reads up to and including the descriptor. Before it only a manifest or a
    /// certificate (and folders) may come; anything else would have to be held or lost.
    /// `source` names the stream in errors and in the model.
    pub fn new(reader: R, source: &Path) -> OvaResult<Self> {
        let mut tar = TarStream::new(reader, source);
        let mut members = Vec::new();
        let mut early: Vec<(Member, Vec<u8>)> = Vec::new();
        let (descriptor, descriptor_bytes) = loop {
            let Some(m) = tar.next_header()? else {
                return Err(OvaError::missing(
                    Place::package(source),
                    "the archive holds no .ovf descriptor",
                ));
            };
            members.push(m.clone());
            let place = Place::member(source, &m.name);
            // Folders, and the AppleDouble `._name` files macOS adds, carry nothing.
            if m.kind == MemberKind::Directory || names::file_name(&m.name).starts_with("._") {
                continue;
            }
            if m.kind == MemberKind::File && is_descriptor(&m.name) {
                if m.size > ovf::MAX_DESCRIPTOR {
                    return Err(ovf::too_large(&place, m.size));
                }
                let bytes = read_all(&mut tar, &place, m.size)?;
                break (m, bytes);
            }
            if m.kind == MemberKind::File && ends_with(&m.name, ".mf") && early.len() < MAX_EARLY {
                if m.size > MAX_MANIFEST {
                    return Err(manifest_too_large(&place, m.size));
                }
                let bytes = read_all(&mut tar, &place, m.size)?;
                early.push((m, bytes));
                continue;
            }
            if m.kind == MemberKind::File && ends_with(&m.name, ".cert") {
                continue;
            }
            return Err(OvaError::unsupported(
                place,
                "comes before the .ovf descriptor; reading from a pipe needs the descriptor first, as the OVF specification orders it (read the file instead)",
            ));
        };
        let place = Place::member(source, &descriptor.name);
        let envelope = ovf::parse(&descriptor_bytes, &place)?;
        let dir = names::parent(&descriptor.name).to_string();
        let stem = &descriptor.name[..descriptor.name.len() - ".ovf".len()];
        let manifest_name = format!("{stem}.mf");
        let certificate_name = format!("{stem}.cert");
        let manifest = early
            .into_iter()
            .find(|(m, _)| m.name == manifest_name)
            .map(|(m, bytes)| parse_manifest(source, &m, &bytes))
            .transpose()?;
        Ok(OvaStream {
            tar,
            source: source.to_path_buf(),
            members,
            descriptor,
            descriptor_bytes,
            envelope,
            dir,
            manifest_name,
            certificate_name,
            manifest,
            current: None,
            digests: Vec::new(),
            verify: true,
        })
    }

    /// Whether files are hashed and the manifest checked by `finish` (the default); off
    /// for --no-verify-manifest, which then costs no hashing.
    pub fn set_verify(&mut self, verify: bool) {
        self.verify = verify;
    }

    /// The member the manifest is, or would be, in (`<descriptor stem>.mf`).
    pub fn manifest_name(&self) -> &str {
        &self.manifest_name
    }

    /// The descriptor, parsed.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The next stored file, after hashing and skipping the rest of the previous one.
    /// Manifests, certificates and folders are consumed here, not returned. None at the
    /// end of the archive.
    pub fn next_file(&mut self) -> OvaResult<Option<StreamFile<'_, R>>> {
        let Some(entry) = self.next_entry()? else {
            return Ok(None);
        };
        let OvaStream { tar, current, .. } = self;
        let (_, hasher) = current.as_mut().expect("next_entry sets the current file");
        Ok(Some(StreamFile {
            name: entry.name,
            file_id: entry.file_id,
            chunk: entry.chunk,
            disk_id: entry.disk_id,
            compression: entry.compression,
            reader: tar.current_reader(entry.member),
            hasher,
        }))
    }

    /// As `next_file`, without borrowing the stream: what the file is, its bytes then
    /// read with `read_current` (hashed on the way). Lets a reader run on across the
    /// chunks of one file, each a member of its own.
    pub fn next_entry(&mut self) -> OvaResult<Option<StreamEntry>> {
        self.settle()?;
        let member = loop {
            let Some(m) = self.tar.next_header()? else {
                return Ok(None);
            };
            self.members.push(m.clone());
            let place = Place::member(&self.source, &m.name);
            if m.kind == MemberKind::File && is_descriptor(&m.name) {
                return Err(OvaError::unsupported(
                    place,
                    format!(
                        "is a second descriptor after {:?}; an OVA holds one package",
                        self.descriptor.name
                    ),
                ));
            }
            if m.kind == MemberKind::File && m.name == self.manifest_name && self.manifest.is_none()
            {
                if m.size > MAX_MANIFEST {
                    return Err(manifest_too_large(&place, m.size));
                }
                let bytes = read_all(&mut self.tar, &place, m.size)?;
                self.manifest = Some(parse_manifest(&self.source, &m, &bytes)?);
                continue;
            }
            if m.kind != MemberKind::File || m.name == self.certificate_name {
                continue;
            }
            break m;
        };
        let name = match self.dir.as_str() {
            "" => Some(member.name.clone()),
            dir => member
                .name
                .strip_prefix(dir)
                .and_then(|r| r.strip_prefix('/'))
                .map(str::to_string),
        };
        let (file_id, chunk, compression) = name
            .as_deref()
            .and_then(|n| self.role(n))
            .map_or((None, None, Compression::Identity), |(id, chunk, c)| {
                (Some(id), chunk, c)
            });
        let disk_id = file_id.as_deref().and_then(|id| {
            self.envelope
                .disks
                .iter()
                .find(|d| d.file_ref.as_deref() == Some(id))
                .map(|d| d.disk_id.clone())
        });
        // Hash with what the manifest asks for; before it is seen, with every algorithm.
        let algorithms = match (&self.manifest, &name) {
            _ if !self.verify => Vec::new(),
            (Some(pm), Some(n)) => pm.manifest.algorithms_for(n),
            (Some(_), None) => Vec::new(),
            (None, _) => Algorithm::ALL.to_vec(),
        };
        let name = name.unwrap_or_else(|| member.name.clone());
        self.current = Some((name.clone(), DigestSet::new(&algorithms)));
        Ok(Some(StreamEntry {
            name,
            file_id,
            chunk,
            disk_id,
            compression,
            member,
        }))
    }

    /// Reads the current file's data (after `next_entry`), hashing it; 0 at its end.
    /// Errors carrying an `OvaError` (a truncated archive) unwrap with
    /// `OvaError::from_io`.
    pub fn read_current(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some((_, hasher)) = self.current.as_mut() else {
            return Ok(0);
        };
        let n = self.tar.read_current(buf)?;
        hasher.update(&buf[..n]);
        Ok(n)
    }

    /// Bytes of the archive consumed so far.
    pub fn position(&self) -> u64 {
        self.tar.position()
    }

    /// Which References/File a name (relative to the descriptor's folder) stores.
    fn role(&self, name: &str) -> Option<(String, Option<u32>, Compression)> {
        self.envelope.files.iter().find_map(|f| {
            if f.chunk_size.is_none() {
                return (f.href == name).then(|| (f.id.clone(), None, f.compression));
            }
            let suffix = name.strip_prefix(f.href.as_str())?.strip_prefix('.')?;
            (suffix.len() == 9 && suffix.bytes().all(|b| b.is_ascii_digit()))
                .then(|| suffix.parse().ok())
                .flatten()
                .map(|i| (f.id.clone(), Some(i), f.compression))
        })
    }

    /// Hashes what is left of the current file and records its digests.
    fn settle(&mut self) -> OvaResult<()> {
        let Some((name, mut set)) = self.current.take() else {
            return Ok(());
        };
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = self.tar.read_current(&mut buf).map_err(|e| {
                OvaError::from_io(Place::member(&self.source, &name), "the member", e)
            })?;
            if n == 0 {
                break;
            }
            set.update(&buf[..n]);
        }
        self.digests.push((name, set.finish()));
        Ok(())
    }

    /// Reads the rest of the archive, builds the model and checks every digest the
    /// manifest lists (a mismatch is `OvaError::ManifestMismatch`).
    pub fn finish(mut self) -> OvaResult<StreamOutcome> {
        while self.next_file()?.is_some() {}
        self.settle()?;
        let index = TarIndex {
            members: self.members,
            warnings: self.tar.warnings().to_vec(),
        };
        let layout = OvaLayout::find(&index.members, &self.source)?;
        let package = assemble_ova(
            &self.source,
            &index,
            &layout,
            self.envelope,
            self.manifest,
            self.descriptor_bytes,
        )?;
        let digests = self.digests;
        let report = match &package.manifest {
            None => None,
            Some(_) if !self.verify => None,
            Some(pm) => Some(package.check_manifest(&pm.manifest, |name, _| {
                Ok(digests
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, d)| d.clone()))
            })?),
        };
        Ok(StreamOutcome { package, report })
    }
}

fn read_all<R: Read>(tar: &mut TarStream<R>, place: &Place, size: u64) -> OvaResult<Vec<u8>> {
    let mut bytes = Vec::with_capacity(size as usize);
    let mut buf = [0u8; 8192];
    loop {
        let n = tar
            .read_current(&mut buf)
            .map_err(|e| OvaError::from_io(place.clone(), "the member", e))?;
        if n == 0 {
            return Ok(bytes);
        }
        bytes.extend_from_slice(&buf[..n]);
    }
}

fn parse_manifest(source: &Path, m: &Member, bytes: &[u8]) -> OvaResult<PackageManifest> {
    Ok(PackageManifest {
        name: m.name.clone(),
        manifest: Manifest::parse(bytes, &Place::member(source, &m.name))?,
    })
}

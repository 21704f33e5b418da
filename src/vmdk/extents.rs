//! Assembling a VMDK disk from its descriptor: each extent line becomes a flat file range,
//! a sparse extent (hosted KDMV, ESXi COWD or seSparse), or zeros, and the disk is their
//! concatenation. A descriptor naming a parent (a snapshot delta) makes a layer of a
//! chain: its unallocated grains map as `Parent`, and `parent()` says where the parent is.

use std::path::{Path, PathBuf};

use crate::cancel::Cancel;
use crate::detect::Format;
use crate::disk::info::{ExtentInfo, Geometry, ImageInfo, VmdkDetails};
use crate::disk::{
    Disk, Folder, InputFile, LinkId, OpenError, OpenOptions, ParentHint, ParentLink, Run, RunKind,
    push_run,
};
use crate::error::{Error, Result};
use crate::rules;
use crate::vmdk::cowd::CowdExtent;
use crate::vmdk::descriptor::{Access, Descriptor, ExtentLine, ExtentType};
use crate::vmdk::header::{SECTOR, SparseHeader};
use crate::vmdk::sesparse::SeSparseExtent;
use crate::vmdk::sparse::SparseExtent;

enum ExtentData {
    Flat {
        file: InputFile,
        base: u64,
    },
    Sparse(Box<SparseExtent>),
    /// An ESXi vmfsSparse redo log.
    Cowd(Box<CowdExtent>),
    /// An ESXi seSparse redo log.
    SeSparse(Box<SeSparseExtent>),
    /// ZERO extents, and NOACCESS extents (which the guest may not read).
    Zero,
}

struct Extent {
    start: u64,
    len: u64,
    line: ExtentLine,
    data: ExtentData,
}

/// A VMDK disk: a descriptor and the extents it names.
pub struct VmdkDisk {
    path: PathBuf,
    descriptor: Descriptor,
    embedded: bool,
    extents: Vec<Extent>,
    size: u64,
    /// Where the parent is, for a delta.
    parent: Option<ParentLink>,
    warnings: Vec<String>,
}

/// Largest text descriptor read: real ones are a few hundred bytes.
const MAX_TEXT_DESCRIPTOR: u64 = 1 << 20;

impl VmdkDisk {
    /// Opens a VMDK of either kind `detect` found.
    pub fn open(file: InputFile, format: Format, options: &OpenOptions) -> Result<Self> {
        if format == Format::VmdkSparse {
            return Self::open_sparse(file)?.check_total();
        }
        if file.len() > MAX_TEXT_DESCRIPTOR {
            return Err(Error::corrupt(
                file.path(),
                "descriptor",
                0,
                format!(
                    "text descriptor is {} bytes; at most {MAX_TEXT_DESCRIPTOR} accepted",
                    file.len()
                ),
            ));
        }
        let mut text = vec![0u8; file.len() as usize];
        file.read_exact_at(&mut text, 0, "descriptor")?;
        Self::open_descriptor(file.path(), &text, options)?.check_total()
    }

    /// The sparse extents, for structural checks.
    pub fn sparse_extents(&self) -> impl Iterator<Item = &SparseExtent> {
        self.extents.iter().filter_map(|e| match &e.data {
            ExtentData::Sparse(s) => Some(s.as_ref()),
            _ => None,
        })
    }

    /// Opens a sparse file carrying its own descriptor (monolithicSparse, streamOptimized),
    /// or a bare sparse extent without one.
    fn open_sparse(file: InputFile) -> Result<Self> {
        let mut bytes = [0u8; 512];
        file.read_exact_at(&mut bytes, 0, "sparse header")?;
        let header = SparseHeader::parse(&bytes, file.path(), 0)?;
        let path = file.path().to_path_buf();
        if header.descriptor_offset == 0 {
            if let Some(descriptor) = descriptor_naming(file.path()) {
                return Err(Error::is_extent(
                    file.path(),
                    format!(
                        "is an extent of {}, which names it; convert that descriptor instead",
                        descriptor.display()
                    ),
                ));
            }
            let len = header.capacity * SECTOR;
            let line = ExtentLine {
                access: Access::Rw,
                sectors: header.capacity,
                kind: ExtentType::Sparse,
                file: Some(file_name(&path)),
                offset: 0,
                line: 0,
            };
            let sparse = SparseExtent::open(file, header, len, false)?;
            let mut disk = Self::assemble(
                path,
                Descriptor::default(),
                false,
                vec![(line, ExtentData::Sparse(Box::new(sparse)))],
            );
            disk.warnings.push(
                "no embedded descriptor: read as a single sparse extent (is this one piece of a split disk?)"
                    .to_string(),
            );
            return Ok(disk);
        }
        const MAX_DESCRIPTOR_SECTORS: u64 = 2048;
        if header.descriptor_size == 0 || header.descriptor_size > MAX_DESCRIPTOR_SECTORS {
            return Err(Error::broken(
                &path,
                &crate::rules::VMDK_HEADER,
                "sparse header",
                36,
                format!(
                    "embedded descriptor size {} sectors is outside 1..={MAX_DESCRIPTOR_SECTORS}",
                    header.descriptor_size
                ),
            ));
        }
        let desc_offset = header
            .descriptor_offset
            .checked_mul(SECTOR)
            .ok_or_else(|| {
                Error::broken(
                    &path,
                    &crate::rules::VMDK_HEADER,
                    "sparse header",
                    28,
                    "embedded descriptor offset overflows",
                )
            })?;
        let mut text = vec![0u8; (header.descriptor_size * SECTOR) as usize];
        file.read_exact_at(&mut text, desc_offset, "embedded descriptor")?;
        let descriptor = parse_descriptor(&path, &text)?;
        refuse_unsupported_kinds(&path, &descriptor)?;
        let [line] = descriptor.extents.as_slice() else {
            return Err(Error::unsupported(
                &path,
                format!(
                    "embedded descriptor lists {} extents; a sparse file with its own descriptor holds exactly one",
                    descriptor.extents.len()
                ),
            ));
        };
        if line.kind != ExtentType::Sparse {
            return Err(Error::descriptor(
                &path,
                line.line,
                format!(
                    "embedded descriptor's extent is {}, not SPARSE",
                    line.kind.name()
                ),
            ));
        }
        let line = line.clone();
        let len = line
            .sectors
            .checked_mul(SECTOR)
            .ok_or_else(|| Error::descriptor(&path, line.line, "extent size overflows"))?;
        // The extent line names this very file; use the file we have open, since the
        // image may have been renamed since the descriptor was written. A delta's
        // unallocated grains are its parent's.
        let delta = is_delta(&descriptor);
        let sparse = SparseExtent::open(file, header, len, delta)?;
        Ok(Self::assemble(
            path,
            descriptor,
            true,
            vec![(line, ExtentData::Sparse(Box::new(sparse)))],
        ))
    }

    /// Opens a text descriptor and every extent it names.
    fn open_descriptor(path: &Path, text: &[u8], options: &OpenOptions) -> Result<Self> {
        let descriptor = parse_descriptor(path, text)?;
        refuse_unsupported_kinds(path, &descriptor)?;
        let delta = is_delta(&descriptor);
        let dir = Folder::of(path)?;
        let mut parts = Vec::with_capacity(descriptor.extents.len());
        let mut warnings = Vec::new();
        for line in &descriptor.extents {
            let bad_line = |detail: &str| Error::descriptor(path, line.line, detail);
            let len = line
                .sectors
                .checked_mul(SECTOR)
                .ok_or_else(|| bad_line("extent size overflows"))?;
            if line.access == Access::Noaccess {
                warnings.push(format!(
                    "descriptor line {}: NOACCESS extent of {len} bytes read as zeros",
                    line.line
                ));
                parts.push((line.clone(), ExtentData::Zero));
                continue;
            }
            let data = match line.kind {
                ExtentType::Zero => ExtentData::Zero,
                ExtentType::Flat | ExtentType::Vmfs => {
                    let file = open_extent_file(path, &dir, line, options)?;
                    let base = line
                        .offset
                        .checked_mul(SECTOR)
                        .ok_or_else(|| bad_line("extent offset overflows"))?;
                    let needed = base
                        .checked_add(len)
                        .ok_or_else(|| bad_line("extent end overflows"))?;
                    if file.len() < needed {
                        return Err(Error::truncated(
                            file.path(),
                            "flat extent",
                            file.len(),
                            format!(
                                "file is {} bytes, but descriptor line {} needs {needed}",
                                file.len(),
                                line.line
                            ),
                        ));
                    }
                    ExtentData::Flat { file, base }
                }
                ExtentType::Sparse | ExtentType::Vmfssparse => {
                    let file = open_extent_file(path, &dir, line, options)?;
                    let mut bytes = [0u8; 512];
                    file.read_exact_at(&mut bytes, 0, "sparse header")?;
                    // The magic decides, not the line's type: qemu and ESXi write COWD
                    // redo logs under both names.
                    if bytes.starts_with(crate::vmdk::cowd::MAGIC)
                        || line.kind == ExtentType::Vmfssparse
                    {
                        ExtentData::Cowd(Box::new(CowdExtent::open(file, len)?))
                    } else {
                        let header = SparseHeader::parse(&bytes, file.path(), 0)?;
                        ExtentData::Sparse(Box::new(SparseExtent::open(file, header, len, delta)?))
                    }
                }
                ExtentType::Sesparse => {
                    let file = open_extent_file(path, &dir, line, options)?;
                    ExtentData::SeSparse(Box::new(SeSparseExtent::open(file, len)?))
                }
                ExtentType::Vmfsrdm | ExtentType::Vmfsraw => {
                    return Err(Error::refused(
                        path,
                        format!(
                            "descriptor line {}: {} extents map a raw device; vdconv reads only image files",
                            line.line,
                            line.kind.name()
                        ),
                    ));
                }
            };
            parts.push((line.clone(), data));
        }
        let mut disk = Self::assemble(path.to_path_buf(), descriptor, false, parts);
        disk.warnings.extend(warnings);
        Ok(disk)
    }

    /// Refuses a disk larger than any VMware product makes (62 TiB), with margin: a
    /// crafted descriptor could otherwise declare exabytes of ZERO extents.
    fn check_total(self) -> Result<Self> {
        const MAX_VIRTUAL_SIZE: u64 = 256 << 40;
        if self.size > MAX_VIRTUAL_SIZE {
            return Err(Error::unsupported(
                &self.path,
                format!(
                    "the extents add up to {} bytes, more than the 256 TiB vdconv accepts",
                    self.size
                ),
            ));
        }
        Ok(self)
    }

    fn assemble(
        path: PathBuf,
        descriptor: Descriptor,
        embedded: bool,
        parts: Vec<(ExtentLine, ExtentData)>,
    ) -> Self {
        let mut warnings = descriptor.warnings.clone();
        let mut extents = Vec::with_capacity(parts.len());
        let mut start = 0u64;
        for (line, data) in parts {
            match &data {
                ExtentData::Sparse(s) => warnings.extend(s.warnings.iter().cloned()),
                ExtentData::Cowd(s) => warnings.extend(s.warnings.iter().cloned()),
                ExtentData::SeSparse(s) => warnings.extend(s.warnings.iter().cloned()),
                ExtentData::Flat { .. } | ExtentData::Zero => {}
            }
            let len = line.sectors.saturating_mul(SECTOR);
            extents.push(Extent {
                start,
                len,
                line,
                data,
            });
            start = start.saturating_add(len);
        }
        VmdkDisk {
            parent: parent_link(&descriptor),
            path,
            descriptor,
            embedded,
            extents,
            size: start,
            warnings,
        }
    }

    /// Index of the extent holding virtual byte `offset` (`extents.len()` at the end).
    fn extent_at(&self, offset: u64) -> usize {
        self.extents.partition_point(|e| e.start + e.len <= offset)
    }

    /// Calls `f` for each extent piece of `[offset, offset + len)` with the extent index,
    /// the extent-relative offset, and the piece's length.
    fn for_pieces(
        &mut self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(&mut Extent, u64, u64, u64) -> Result<()>,
    ) -> Result<()> {
        let end = offset + len;
        let mut pos = offset;
        let mut index = self.extent_at(offset);
        while pos < end {
            let extent = &mut self.extents[index];
            let within = pos - extent.start;
            let n = (extent.len - within).min(end - pos);
            f(extent, within, n, pos - offset)?;
            pos += n;
            index += 1;
        }
        Ok(())
    }
}

/// Pushes a redo log's runs: `absent` where the log holds nothing.
fn push_delta_runs(delta: &[Run], absent: RunKind, out: &mut Vec<Run>) {
    for r in delta {
        let kind = match r.kind {
            RunKind::Parent => absent,
            kind => kind,
        };
        push_run(out, r.offset, r.len, kind);
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn parse_descriptor(path: &Path, text: &[u8]) -> Result<Descriptor> {
    Descriptor::parse_bytes(text).map_err(|e| Error::descriptor(path, e.line, e.detail))
}

/// Whether the descriptor makes a snapshot delta: it names a parent CID or a parent file.
fn is_delta(d: &Descriptor) -> bool {
    d.has_parent() || d.header.contains_key("parentfilenamehint")
}

/// A CID as descriptors write it: up to 8 hex digits.
fn parse_cid(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim(), 16).ok()
}

/// How a delta names its parent: its parentFileNameHint and the parent's CID.
fn parent_link(d: &Descriptor) -> Option<ParentLink> {
    if !is_delta(d) {
        return None;
    }
    let hints = d
        .header
        .get("parentfilenamehint")
        .filter(|h| !h.trim().is_empty())
        .map(|h| ParentHint {
            path: h.clone(),
            key: "parentFileNameHint",
        });
    let expected = d
        .parent_cid()
        .and_then(parse_cid)
        .filter(|&cid| cid != 0xFFFF_FFFF)
        .map(LinkId::VmdkCid);
    Some(ParentLink {
        hints: hints.into_iter().collect(),
        expected: expected.into_iter().collect(),
        expected_key: "parentCID",
        format: "vmdk",
        same_size: true,
        rule: &rules::VMDK_PARENT,
    })
}

/// Refuses what the descriptor header says is a device before any extent is opened, so
/// the message names the real reason.
fn refuse_unsupported_kinds(path: &Path, d: &Descriptor) -> Result<()> {
    let create_type = d.create_type().unwrap_or("").to_ascii_lowercase();
    match create_type.as_str() {
        "fulldevice"
        | "partitioneddevice"
        | "vmfsraw"
        | "vmfsrawdevicemap"
        | "vmfspassthroughrawdevicemap" => {
            return Err(Error::refused(
                path,
                format!(
                    "createType {} maps a raw device; vdconv reads only image files",
                    d.create_type().unwrap_or_default()
                ),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Opens an extent file named on a descriptor line, beneath the descriptor's folder unless
/// outside paths are allowed, refusing anything but a regular file (devices are never read).
fn open_extent_file(
    descriptor: &Path,
    dir: &Folder,
    line: &ExtentLine,
    options: &OpenOptions,
) -> Result<InputFile> {
    let name = line.file.as_deref().unwrap_or_default();
    let refuse = |detail: &str| {
        Error::refused(
            descriptor,
            format!(
                "descriptor line {}: extent file {name:?} {detail}",
                line.line
            ),
        )
    };
    match dir.open(Path::new(name), !options.allow_outside_paths) {
        Ok(file) => Ok(file),
        Err(OpenError::Escapes) => Err(refuse(
            "leads outside the descriptor's folder (an absolute name, '..', or a link); pass --allow-outside-paths if you trust this descriptor",
        )),
        Err(OpenError::NotRegular(what)) => Err(refuse(&format!(
            "is {what}, not a regular file (devices are never read)"
        ))),
        Err(OpenError::Io(e)) => Err(Error::missing_extent(
            &dir.path().join(name),
            format!(
                "the extent file named on line {} of {}",
                line.line,
                descriptor.display()
            ),
            e,
        )),
    }
}

/// A text descriptor in the same folder as `extent` that names it on an extent line: the
/// file a user meant when they gave an extent instead. Only small files are looked at.
pub fn descriptor_naming(extent: &Path) -> Option<PathBuf> {
    let name = extent.file_name()?.to_str()?;
    let dir = match extent.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("vmdk"))
        })
        .filter(|p| p.file_name() != extent.file_name())
        .take(1000)
        .collect();
    candidates.sort();
    candidates.into_iter().find(|p| {
        let Ok(file) = InputFile::open(p) else {
            return false;
        };
        if file.len() > MAX_TEXT_DESCRIPTOR || file.len() < 16 {
            return false;
        }
        let mut text = vec![0u8; file.len() as usize];
        if file.read_exact_at(&mut text, 0, "descriptor").is_err() {
            return false;
        }
        Descriptor::parse_bytes(&text).is_ok_and(|d| {
            d.extents.iter().any(|e| {
                e.file
                    .as_deref()
                    .is_some_and(|f| Path::new(f).file_name() == Some(name.as_ref()))
            })
        })
    })
}

impl Disk for VmdkDisk {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn map_range(&mut self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
        // What a redo log does not hold is the parent's; without a parent, zeros.
        let absent = if self.parent.is_some() {
            RunKind::Parent
        } else {
            RunKind::Zero
        };
        let mut delta = Vec::new();
        self.for_pieces(offset, len, |extent, within, n, _| {
            let abs = extent.start + within;
            delta.clear();
            match &mut extent.data {
                ExtentData::Zero => push_run(out, abs, n, RunKind::Zero),
                ExtentData::Flat { file, base } => file.map_holes(*base + within, n, abs, out),
                ExtentData::Sparse(s) => s.map(within, n, extent.start, out)?,
                ExtentData::Cowd(s) => s.map(within, n, extent.start, &mut delta)?,
                ExtentData::SeSparse(s) => s.map(within, n, extent.start, &mut delta)?,
            }
            push_delta_runs(&delta, absent, out);
            Ok(())
        })
    }

    fn read_range(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        // A layer reads what it does not hold as zeros; the chain fills it in.
        let mut absent = |_: u64, b: &mut [u8]| {
            b.fill(0);
            Ok(())
        };
        self.for_pieces(offset, buf.len() as u64, |extent, within, n, done| {
            let dst = &mut buf[done as usize..(done + n) as usize];
            match &mut extent.data {
                ExtentData::Zero => dst.fill(0),
                ExtentData::Flat { file, base } => {
                    file.read_exact_at(dst, *base + within, "flat extent")?
                }
                ExtentData::Sparse(s) => s.read_at(within, dst)?,
                ExtentData::Cowd(s) => s.read_at(within, dst, &mut absent)?,
                ExtentData::SeSparse(s) => s.read_at(within, dst, &mut absent)?,
            }
            Ok(())
        })
    }

    fn describe(&mut self, cancel: &Cancel) -> Result<ImageInfo> {
        let allocated = crate::disk::allocated_bytes(self, cancel)?;
        let ddb = &self.descriptor.ddb;
        let get = |k: &str| ddb.get(k).cloned();
        let geometry = match (
            ddb.get("ddb.geometry.cylinders")
                .and_then(|v| v.parse().ok()),
            ddb.get("ddb.geometry.heads").and_then(|v| v.parse().ok()),
            ddb.get("ddb.geometry.sectors").and_then(|v| v.parse().ok()),
        ) {
            (Some(cylinders), Some(heads), Some(sectors)) => Some(Geometry {
                cylinders,
                heads,
                sectors,
            }),
            _ => None,
        };
        let first_sparse = self.extents.iter().find_map(|e| match &e.data {
            ExtentData::Sparse(s) => Some(s.header().clone()),
            _ => None,
        });
        let redo_grain = self.extents.iter().find_map(|e| match &e.data {
            ExtentData::Cowd(s) => Some(s.header().grain_bytes()),
            ExtentData::SeSparse(_) => Some(crate::vmdk::sesparse::GRAIN_BYTES),
            _ => None,
        });
        let header = &self.descriptor.header;
        let details = VmdkDetails {
            version: header.get("version").cloned(),
            cid: header.get("cid").cloned(),
            parent_cid: header.get("parentcid").cloned(),
            create_type: header.get("createtype").cloned(),
            adapter_type: get("ddb.adaptertype"),
            // What the adapter means for Hyper-V is the pipeline's to say.
            adapter_hyperv: None,
            hardware_version: get("ddb.virtualhwversion"),
            geometry,
            uuid: get("ddb.uuid"),
            long_content_id: get("ddb.longcontentid"),
            embedded_descriptor: self.embedded,
            grain_size: first_sparse
                .as_ref()
                .map(|h| h.grain_bytes())
                .or(redo_grain),
            compressed: first_sparse.as_ref().is_some_and(|h| h.compressed()),
        };
        let layout = details
            .create_type
            .clone()
            .unwrap_or_else(|| "sparse extent".into());
        let extents = self
            .extents
            .iter()
            .map(|e| ExtentInfo {
                access: e.line.access.name().to_string(),
                kind: e.line.kind.name().to_string(),
                start: e.start,
                size: e.len,
                file: match &e.data {
                    ExtentData::Zero => e.line.file.clone(),
                    ExtentData::Flat { file, .. } => Some(file.path().display().to_string()),
                    ExtentData::Sparse(s) => Some(s.file().path().display().to_string()),
                    ExtentData::Cowd(s) => Some(s.file().path().display().to_string()),
                    ExtentData::SeSparse(s) => Some(s.file().path().display().to_string()),
                },
                file_offset: match &e.data {
                    ExtentData::Flat { base, .. } => *base,
                    _ => 0,
                },
            })
            .collect();
        Ok(ImageInfo {
            file: self.path.display().to_string(),
            format: "vmdk",
            layout,
            virtual_size: self.size,
            allocated_bytes: allocated,
            extents,
            vmdk: Some(details),
            vhd: None,
            vhdx: None,
            warnings: self.warnings.clone(),
        })
    }

    fn file_range(&self, offset: u64, len: u64) -> Option<(std::sync::Arc<std::fs::File>, u64)> {
        let e = self.extents.get(self.extent_at(offset))?;
        match &e.data {
            ExtentData::Flat { file, base } if offset + len <= e.start + e.len => {
                Some((file.shared(), base + offset - e.start))
            }
            _ => None,
        }
    }

    fn in_place_file(&self) -> std::result::Result<PathBuf, String> {
        let [e] = self.extents.as_slice() else {
            return Err(format!(
                "the disk has {} extents; only a single flat extent converts in place",
                self.extents.len()
            ));
        };
        match &e.data {
            ExtentData::Flat { base: 0, file } if file.len() == e.len => {
                Ok(file.path().to_path_buf())
            }
            ExtentData::Flat { base: 0, file } => Err(format!(
                "{} is {} bytes but its extent is {}: appending a footer would make the extra bytes part of the disk",
                file.path().display(),
                file.len(),
                e.len
            )),
            ExtentData::Flat { base, .. } => Err(format!(
                "the extent starts {base} bytes into its file, not at 0"
            )),
            _ => Err(format!("the extent is {}, not FLAT", e.line.kind.name())),
        }
    }

    fn adapter_type(&self) -> Option<String> {
        self.descriptor.ddb.get("ddb.adaptertype").cloned()
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.path.clone()];
        for e in &self.extents {
            match &e.data {
                ExtentData::Flat { file, .. } => files.push(file.path().to_path_buf()),
                ExtentData::Sparse(s) => files.push(s.file().path().to_path_buf()),
                ExtentData::Cowd(s) => files.push(s.file().path().to_path_buf()),
                ExtentData::SeSparse(s) => files.push(s.file().path().to_path_buf()),
                ExtentData::Zero => {}
            }
        }
        files
    }

    fn parent(&self) -> Option<&ParentLink> {
        self.parent.as_ref()
    }

    fn link_id(&self) -> Option<LinkId> {
        self.descriptor
            .header
            .get("cid")
            .and_then(|c| parse_cid(c))
            .map(LinkId::VmdkCid)
    }

    fn content_id(&self) -> Option<String> {
        self.descriptor.header.get("cid").cloned()
    }
}

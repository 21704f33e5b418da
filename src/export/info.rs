//! `vdconv info` on an export: the VM as its descriptor describes it (name, guest OS,
//! firmware, CPUs, memory, NICs), each disk with its capacity, file, format and place on
//! its controller, and what vdconv finds in each disk: the `info` of the image read in
//! place, or, for a disk stored gzip-compressed or in chunks, what its header says (only
//! a conversion reads such a disk through). A disk that cannot be read, or whose size
//! disagrees with the descriptor, is a warning here: `info` describes, `convert` refuses.

use serde::Serialize;

use crate::cancel::Cancel;
use crate::disk::OpenOptions;
use crate::error::Result;
use crate::info::InfoReport;
use crate::ova::ovf::{Attachment, Nic};
use crate::ova::{Algorithm, Compression, Package, PackageDisk, Place};
use crate::report::SCHEMA_VERSION;
use crate::target::Target;
use crate::vmdk::sequential::SequentialVmdk;

use super::advice;
use super::detect::ExportKind;
use super::disk::{Typed, capacity_mismatch, member_path, open_in_place};
use super::report::VmSummary;

/// `info --json` of an export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportInfo {
    pub schema_version: u32,
    /// The path given.
    pub file: String,
    /// `ova` or `ovf`.
    pub format: ExportKind,
    /// The descriptor's name in the package.
    pub descriptor: String,
    pub vm: VmSummary,
    /// NetworkSection names.
    pub networks: Vec<String>,
    pub nics: Vec<Nic>,
    pub disks: Vec<ExportDiskInfo>,
    /// Every References/File the package holds.
    pub files: Vec<FileInfo>,
    /// Null when the package has no manifest.
    pub manifest: Option<ManifestInfo>,
    /// The certificate's name: reported, its signature not verified.
    pub certificate: Option<String>,
    /// What the firmware suggests converting for.
    pub suggested_target: Option<Target>,
    pub warnings: Vec<String>,
}

/// A References/File.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    pub id: String,
    pub href: String,
    /// `ovf:size` as declared.
    pub declared_size: Option<u64>,
    /// Bytes stored (all chunks; compressed).
    pub stored_size: u64,
    pub compression: Compression,
    pub chunk_size: Option<u64>,
    /// Its pieces: 1, or the number of chunks.
    pub pieces: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestInfo {
    pub name: String,
    pub algorithms: Vec<Algorithm>,
    /// Digest lines.
    pub entries: usize,
}

/// One disk of the VM.
#[derive(Debug, Clone, Serialize)]
pub struct ExportDiskInfo {
    /// 1-based, in DiskSection order (what `convert --disk` takes).
    pub index: usize,
    pub disk_id: String,
    pub file_id: Option<String>,
    /// The file in the package; null for a blank disk.
    pub href: Option<String>,
    /// Guest-visible size in bytes, as the descriptor gives it.
    pub capacity: u64,
    pub populated_size: Option<u64>,
    /// The descriptor's format URI.
    pub format: Option<String>,
    pub compression: Compression,
    pub chunk_size: Option<u64>,
    pub stored_size: u64,
    /// Controller and position on it.
    pub controller: Option<Attachment>,
    /// `in place`, `front to back` (gzip, chunks: a conversion reads it in one pass) or
    /// `blank` (no file: an empty disk of its capacity).
    pub read: &'static str,
    /// What `info` says of the disk read in place.
    pub image: Option<InfoReport>,
    /// What the header says of a disk read front to back.
    pub stream: Option<StreamSummary>,
    /// Why the disk could not be described, if it could not.
    pub problem: Option<String>,
}

/// The header and embedded descriptor of a streamOptimized disk read front to back.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    pub virtual_size: u64,
    pub create_type: Option<String>,
    pub adapter_type: Option<String>,
    pub grain_size: u64,
    pub compressed: bool,
}

/// Describes the export at `path` (read in place; no disk is read through).
pub fn describe(path: &std::path::Path, kind: ExportKind, cancel: &Cancel) -> Result<ExportInfo> {
    let pkg = match kind {
        ExportKind::Ova => Package::open_file(path)?,
        ExportKind::Ovf => Package::open_dir(path)?,
    };
    let mut warnings = pkg.warnings.clone();
    let env = &pkg.envelope;
    let options = OpenOptions {
        cancel: cancel.clone(),
        ..Default::default()
    };
    let mut disks = Vec::with_capacity(pkg.disks.len());
    for (i, pd) in pkg.disks.iter().enumerate() {
        cancel.check()?;
        let d = describe_disk(&pkg, pd, i, &options, cancel, &mut warnings);
        disks.push(d);
    }
    let manifest = pkg.manifest.as_ref().map(|pm| {
        let mut algorithms: Vec<Algorithm> =
            pm.manifest.entries.iter().map(|e| e.algorithm).collect();
        algorithms.sort();
        algorithms.dedup();
        warnings.extend(
            pm.manifest
                .warnings
                .iter()
                .map(|w| format!("manifest {}: {w}", pm.name)),
        );
        ManifestInfo {
            name: pm.name.clone(),
            algorithms,
            entries: pm.manifest.entries.len(),
        }
    });
    if manifest.is_none() {
        warnings.push(super::report::NO_MANIFEST.into());
    }
    Ok(ExportInfo {
        schema_version: SCHEMA_VERSION,
        file: path.display().to_string(),
        format: kind,
        descriptor: pkg.descriptor.clone(),
        vm: VmSummary::of(env),
        networks: env.networks.clone(),
        nics: env.system.hardware.nics.clone(),
        files: pkg
            .files
            .iter()
            .map(|f| FileInfo {
                id: f.id.clone(),
                href: f.href.clone(),
                declared_size: f.declared_size,
                stored_size: f.stored_size(),
                compression: f.compression,
                chunk_size: f.chunk_size,
                pieces: f.pieces.len(),
            })
            .collect(),
        disks,
        manifest,
        certificate: pkg.certificate.clone(),
        suggested_target: advice::suggested_target(env.system.hardware.firmware),
        warnings,
    })
}

fn describe_disk(
    pkg: &Package,
    pd: &PackageDisk,
    i: usize,
    options: &OpenOptions,
    cancel: &Cancel,
    warnings: &mut Vec<String>,
) -> ExportDiskInfo {
    let shown = pd.href.clone().unwrap_or_else(|| pd.disk_id.clone());
    let mut info = ExportDiskInfo {
        index: i + 1,
        disk_id: pd.disk_id.clone(),
        file_id: pd.file_id.clone(),
        href: pd.href.clone(),
        capacity: pd.capacity,
        populated_size: pd.populated_size,
        format: pd.format.clone(),
        compression: pd.compression,
        chunk_size: pd.chunk_size,
        stored_size: pd.stored_size(),
        controller: pd.attachment.clone(),
        read: if pd.is_blank() {
            "blank"
        } else if super::disk::readable_in_place(pd) {
            "in place"
        } else {
            "front to back"
        },
        image: None,
        stream: None,
        problem: None,
    };
    if pd.is_blank() {
        return info;
    }
    let size = match open_in_place(pkg, pd, options) {
        Ok(Some(mut disk)) => match crate::info::describe(disk.as_mut(), cancel) {
            Ok(report) => {
                let size = report.image.virtual_size;
                info.image = Some(report);
                Ok(size)
            }
            Err(e) => Err(e),
        },
        Ok(None) => stream_summary(pkg, pd, &shown).map(|s| {
            let size = s.virtual_size;
            info.stream = Some(s);
            size
        }),
        Err(e) => Err(e),
    };
    match size {
        Ok(size) => {
            if let Some(w) = capacity_mismatch(&pd.disk_id, &shown, pd.capacity, size) {
                warnings.push(format!("{w} (convert refuses it)"));
            }
        }
        Err(e) => {
            warnings.push(format!(
                "disk {:?} ({shown}) cannot be read: {e}",
                pd.disk_id
            ));
            info.problem = Some(e.to_string());
        }
    }
    info
}

/// Reads the header and embedded descriptor of a disk stored gzip-compressed or in
/// chunks: a few KiB from its start.
fn stream_summary(pkg: &Package, pd: &PackageDisk, shown: &str) -> Result<StreamSummary> {
    let place = Place::member(&pkg.source, shown);
    let reader = Typed::new(pkg.disk_reader(pd)?, place);
    let seq = SequentialVmdk::open(reader, &member_path(&pkg.source, shown))?;
    let d = seq.descriptor();
    Ok(StreamSummary {
        virtual_size: seq.virtual_size(),
        create_type: d.and_then(|d| d.create_type().map(str::to_string)),
        adapter_type: d.and_then(|d| d.ddb.get("ddb.adaptertype").cloned()),
        grain_size: seq.header().grain_bytes(),
        compressed: seq.header().compressed(),
    })
}

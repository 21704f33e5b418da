//! What converting an export reports (`convert --json` on an OVA or OVF): the VM as its
//! descriptor describes it, every disk's ConvertReport, every file written, and what the
//! manifest check found.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::convert::ConvertReport;
use crate::ova::ovf::Attachment;
use crate::ova::package::PackageManifest;
use crate::ova::{Algorithm, Envelope, Firmware, ManifestReport};
use crate::report::SCHEMA_VERSION;
use crate::target::Target;

use super::detect::ExportKind;

/// The virtual machine, from the descriptor.
#[derive(Debug, Clone, Serialize)]
pub struct VmSummary {
    pub name: String,
    /// CIM operating system number (`OperatingSystemSection ovf:id`).
    pub os_id: Option<u32>,
    /// VMware guest id (`vmw:osType`), e.g. `windows9Server64Guest`.
    pub os_type: Option<String>,
    pub os_description: Option<String>,
    pub firmware: Firmware,
    pub secure_boot: Option<bool>,
    pub cpus: Option<u64>,
    pub cores_per_socket: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// `vssd:VirtualSystemType`, e.g. `vmx-10`.
    pub hardware_version: Option<String>,
}

impl VmSummary {
    pub fn of(env: &Envelope) -> Self {
        let s = &env.system;
        let hw = &s.hardware;
        VmSummary {
            name: s.display_name().to_string(),
            os_id: s.os.as_ref().and_then(|o| o.id),
            os_type: s.os.as_ref().and_then(|o| o.os_type.clone()),
            os_description: s.os.as_ref().and_then(|o| o.description.clone()),
            firmware: hw.firmware,
            secure_boot: hw.secure_boot,
            cpus: hw.cpus,
            cores_per_socket: hw.cores_per_socket,
            memory_bytes: hw.memory_bytes,
            hardware_version: hw.system_type.clone(),
        }
    }
}

/// No manifest: one warning says so.
pub const NO_MANIFEST: &str = "the package has no manifest (.mf): its files cannot be verified";

/// What the manifest check found.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ManifestSummary {
    /// The manifest's name in the package.
    pub name: String,
    /// The algorithms it uses.
    pub algorithms: Vec<Algorithm>,
    /// Whether digests were compared (false with --no-verify-manifest).
    pub checked: bool,
    /// Files whose every listed digest matched.
    pub verified: Vec<String>,
    /// Listed files not read, so not checked (disks not picked with --disk).
    pub not_read: Vec<String>,
    /// Package files the manifest does not list.
    pub unlisted: Vec<String>,
    /// Names the manifest lists that the package does not hold.
    pub absent: Vec<String>,
}

impl ManifestSummary {
    /// The package's manifest before any check, and the warnings its parsing left.
    pub fn of(pm: &PackageManifest) -> (Self, Vec<String>) {
        let mut algorithms: Vec<Algorithm> =
            pm.manifest.entries.iter().map(|e| e.algorithm).collect();
        algorithms.sort();
        algorithms.dedup();
        let warnings = pm
            .manifest
            .warnings
            .iter()
            .map(|w| format!("manifest {}: {w}", pm.name))
            .collect();
        let summary = ManifestSummary {
            name: pm.name.clone(),
            algorithms,
            ..Default::default()
        };
        (summary, warnings)
    }

    /// Names the manifest lists, once each.
    pub fn listed(pm: &PackageManifest) -> Vec<String> {
        let mut listed: Vec<String> = Vec::new();
        for e in &pm.manifest.entries {
            if !listed.contains(&e.name) {
                listed.push(e.name.clone());
            }
        }
        listed
    }

    /// Records a check's verdict; `listed` are the names the manifest lists.
    pub fn checked(&mut self, report: ManifestReport, listed: &[String]) {
        self.checked = true;
        self.not_read = listed
            .iter()
            .filter(|n| !report.verified.contains(n) && !report.absent.contains(n))
            .cloned()
            .collect();
        self.verified = report.verified;
        self.unlisted = report.unlisted;
        self.absent = report.absent;
    }

    /// One line each for what a user should know.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        for n in &self.unlisted {
            w.push(format!(
                "manifest {}: {n} is not listed, so it was not verified",
                self.name
            ));
        }
        for n in &self.absent {
            w.push(format!(
                "manifest {}: lists {n}, which the package does not hold",
                self.name
            ));
        }
        w
    }
}

/// One converted disk.
#[derive(Debug, Clone, Serialize)]
pub struct ExportDiskReport {
    /// 1-based, in DiskSection order (what --disk takes).
    pub index: usize,
    pub disk_id: String,
    /// The file in the package (null for a blank disk).
    pub href: Option<String>,
    /// The capacity the descriptor gives.
    pub capacity: u64,
    /// Where the VM attaches it.
    pub controller: Option<Attachment>,
    /// The disk's conversion, as `convert --json` reports one image.
    pub report: ConvertReport,
}

/// `convert --json` of an export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub schema_version: u32,
    /// The package as given (`-` for standard input).
    pub source: String,
    /// `ova` or `ovf`.
    pub package: ExportKind,
    /// `file` (read in place) or `pipe` (read front to back in one pass).
    pub read: &'static str,
    pub vm: VmSummary,
    /// DST as given.
    pub destination: PathBuf,
    /// The target the firmware suggests; null when the descriptor does not say.
    pub suggested_target: Option<Target>,
    pub disks: Vec<ExportDiskReport>,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// Null when the package has no manifest.
    pub manifest: Option<ManifestSummary>,
    /// The certificate's name: reported, its signature not verified.
    pub certificate: Option<String>,
    /// Anomalies tolerated and advice for the target.
    pub warnings: Vec<String>,
    pub seconds: f64,
}

impl ExportReport {
    /// The report of an export read from `source` as `read` ("file" or "pipe") whose
    /// `disks` were written: the VM and the suggested target from its `envelope`, the
    /// files written from the disks' own reports.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        source: &Path,
        package: ExportKind,
        read: &'static str,
        envelope: &Envelope,
        destination: &Path,
        disks: Vec<ExportDiskReport>,
        manifest: Option<ManifestSummary>,
        certificate: Option<String>,
        warnings: Vec<String>,
        seconds: f64,
    ) -> Self {
        ExportReport {
            schema_version: SCHEMA_VERSION,
            source: source.display().to_string(),
            package,
            read,
            vm: VmSummary::of(envelope),
            destination: destination.to_path_buf(),
            suggested_target: super::advice::suggested_target(envelope.system.hardware.firmware),
            files: disks
                .iter()
                .flat_map(|d| d.report.files.iter().cloned())
                .collect(),
            disks,
            manifest,
            certificate,
            warnings,
            seconds,
        }
    }
}

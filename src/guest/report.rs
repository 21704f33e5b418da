//! What `inspect` found: the guest's OS, kernels, firmware and volumes, and findings with
//! a severity per target. Serialisable as JSON; `render_text` groups findings by severity.

use std::fmt::Write as _;

use serde::Serialize;

use crate::platform::Target;

/// How much a finding matters for one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warn,
    /// The guest will not boot, or not be reachable, on the target.
    Block,
}

/// Severity of a finding on each target; None where the finding does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Severities {
    pub hyperv_gen1: Option<Severity>,
    pub hyperv_gen2: Option<Severity>,
    pub azure: Option<Severity>,
}

impl Severities {
    pub const fn new(
        gen1: Option<Severity>,
        gen2: Option<Severity>,
        azure: Option<Severity>,
    ) -> Self {
        Severities {
            hyperv_gen1: gen1,
            hyperv_gen2: gen2,
            azure,
        }
    }

    /// The same severity on every target.
    pub const fn all(s: Severity) -> Self {
        Severities::new(Some(s), Some(s), Some(s))
    }

    pub fn get(&self, target: Target) -> Option<Severity> {
        match target {
            Target::HypervGen1 => self.hyperv_gen1,
            Target::HypervGen2 => self.hyperv_gen2,
            Target::Azure => self.azure,
        }
    }

    /// The highest severity on any target.
    pub fn max(&self) -> Option<Severity> {
        [self.hyperv_gen1, self.hyperv_gen2, self.azure]
            .into_iter()
            .flatten()
            .max()
    }
}

/// Where a finding comes from: a file (and line) on a volume, or a registry value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The volume's name ("partition 2", "LV rhel/root").
    pub volume: Option<String>,
    /// Path inside the guest as mounted (`/etc/fstab`), or a registry path
    /// (`SYSTEM\ControlSet001\Services\storvsc\Start`).
    pub path: String,
    /// 1-based line, for text files.
    pub line: Option<usize>,
}

/// One thing the guest would meet on its new platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable kebab-case identifier (`linux-hv-storvsc-missing`).
    pub id: String,
    /// The catalogue entry it implements (GUEST.md section 8: L1..L9, W1..W4, X1, X2).
    pub check: String,
    pub severity: Severities,
    pub message: String,
    pub location: Option<Location>,
    /// One sentence saying how to fix it.
    pub fix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Bios,
    Uefi,
    /// GPT with both an ESP and a BIOS boot partition: either firmware can boot it.
    Both,
    Unknown,
}

/// How the disk boots, from its partitions and the ESP's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirmwareReport {
    pub boots_with: Firmware,
    /// What the caller said (from the VM's configuration), if anything.
    pub hint: Option<Firmware>,
    pub gpt: bool,
    pub esp: Option<String>,
    pub bios_boot_partition: bool,
    /// EFI loaders found on the ESP (`/EFI/BOOT/BOOTX64.EFI`, shim, bootmgfw.efi).
    pub efi_loaders: Vec<String>,
}

/// The operating system found on a root file system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OsReport {
    /// "linux" or "windows".
    pub kind: String,
    /// The volume holding the root (`C:` for Windows).
    pub root_volume: String,
    /// os-release NAME or Windows ProductName.
    pub name: Option<String>,
    /// os-release ID.
    pub id: Option<String>,
    /// os-release VERSION_ID or Windows CurrentMajor.Minor / DisplayVersion.
    pub version: Option<String>,
    /// Windows CurrentBuildNumber.
    pub build: Option<String>,
    /// Windows EditionID.
    pub edition: Option<String>,
    /// Linux mount points assembled from fstab: (mount point, volume).
    pub mounts: Vec<(String, String)>,
}

/// Whether a Hyper-V driver is there for a kernel at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriverState {
    BuiltIn,
    /// A module inside the kernel's initramfs.
    InInitramfs,
    /// A module on the root file system but not in the initramfs.
    NotInInitramfs,
    /// A module, but the initramfs could not be read or found.
    ModuleOnly,
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverReport {
    pub module: String,
    pub state: DriverState,
    /// Where it is blacklisted, if it is.
    pub blacklisted: Option<String>,
}

/// One installed kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelReport {
    pub version: String,
    pub image: Option<String>,
    pub initramfs: Option<String>,
    pub modules_dir: bool,
    pub default: bool,
    pub drivers: Vec<DriverReport>,
}

/// One volume of the disk as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeReport {
    pub name: String,
    pub content: String,
    pub fs: Option<String>,
    pub uuid: Option<String>,
    pub label: Option<String>,
    pub partition_type: Option<String>,
    pub lvm: Option<String>,
    pub problem: Option<String>,
}

/// Everything `inspect` says about a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InspectReport {
    /// The targets asked about (findings carry severities for all three regardless).
    pub targets: Vec<Target>,
    pub os: Vec<OsReport>,
    pub kernels: Vec<KernelReport>,
    pub default_kernel: Option<String>,
    pub firmware: FirmwareReport,
    pub volumes: Vec<VolumeReport>,
    pub findings: Vec<Finding>,
}

impl InspectReport {
    /// True when any finding blocks `target`: the caller exits 1.
    pub fn blocks(&self, target: Target) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity.get(target) == Some(Severity::Block))
    }

    /// Adds a finding from outside the guest (X2: the disk's format and size are the
    /// caller's to judge).
    pub fn add_finding(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Findings with this id.
    pub fn with_id<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings.iter().filter(move |f| f.id == id)
    }

    /// A human-readable report. With a target, findings are grouped by their severity on
    /// it (findings that do not apply are left out); without, by their highest severity.
    pub fn render_text(&self, target: Option<Target>) -> String {
        let mut out = String::new();
        for os in &self.os {
            let _ = writeln!(
                out,
                "{} on {}: {} {}{}",
                os.kind,
                os.root_volume,
                os.name.as_deref().unwrap_or("(unnamed)"),
                os.version.as_deref().unwrap_or(""),
                os.build
                    .as_deref()
                    .map(|b| format!(" build {b}"))
                    .unwrap_or_default()
            );
        }
        if self.os.is_empty() {
            out.push_str("no operating system found\n");
        }
        let _ = writeln!(out, "firmware: {:?}", self.firmware.boots_with);
        for k in &self.kernels {
            let drivers: Vec<String> = k
                .drivers
                .iter()
                .map(|d| format!("{} {:?}", d.module, d.state))
                .collect();
            let _ = writeln!(
                out,
                "kernel {}{}: {}",
                k.version,
                if k.default { " (default)" } else { "" },
                drivers.join(", ")
            );
        }
        for (severity, title) in [
            (Severity::Block, "BLOCKS"),
            (Severity::Warn, "WARNINGS"),
            (Severity::Info, "NOTES"),
        ] {
            let group: Vec<&Finding> = self
                .findings
                .iter()
                .filter(|f| match target {
                    Some(t) => f.severity.get(t) == Some(severity),
                    None => f.severity.max() == Some(severity),
                })
                .collect();
            if group.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{title}");
            for f in group {
                let _ = writeln!(out, "  [{}] {}", f.id, f.message);
                if let Some(loc) = &f.location {
                    let line = loc.line.map(|l| format!(":{l}")).unwrap_or_default();
                    let volume = loc
                        .volume
                        .as_deref()
                        .map(|v| format!(" ({v})"))
                        .unwrap_or_default();
                    let _ = writeln!(out, "      at {}{line}{volume}", loc.path);
                }
                let _ = writeln!(out, "      fix: {}", f.fix);
            }
        }
        out
    }
}

//! The readiness catalogue (GUEST.md section 8) over a guest's volumes: find the OS roots,
//! read what decides whether the guest boots and is reachable on Hyper-V or Azure, and
//! say so as findings with a severity per target. Knows nothing of VMDK or VHD.

pub mod catalogue;
mod findings;
mod firmware;
pub mod linux;
mod view;
mod volumes;
mod windows;

pub use findings::{Findings, sev};

use crate::guest::report::{Firmware, InspectReport};
use crate::guest::volume::Volume;
use crate::platform::Target;
use findings::W;

/// What the caller knows and wants.
pub struct InspectOptions<'a> {
    /// The targets the caller asks about (findings still carry all three severities).
    pub targets: Vec<Target>,
    /// The firmware the source VM was configured with (VMware's `firmware` setting), if
    /// known; reported next to what the disk says.
    pub firmware_hint: Option<Firmware>,
    /// Asked in long loops; true stops the inspection early with what was found.
    pub cancelled: &'a dyn Fn() -> bool,
}

impl Default for InspectOptions<'_> {
    fn default() -> Self {
        InspectOptions {
            targets: vec![Target::HypervGen1, Target::HypervGen2, Target::Azure],
            firmware_hint: None,
            cancelled: &|| false,
        }
    }
}

/// Inspects a guest. Never fails: what cannot be read becomes a finding.
pub fn inspect(volumes: &[Volume], options: &InspectOptions<'_>) -> InspectReport {
    let mut found = Findings::default();
    let firmware = firmware::detect(volumes, options.firmware_hint);
    volumes::findings(volumes, &mut found);
    let mut os = Vec::new();
    let mut kernels = Vec::new();
    let mut default_kernel = None;
    let mut linux_without_shim = false;
    for v in volumes {
        if (options.cancelled)() {
            break;
        }
        let Some(fs) = v.fs.as_deref() else { continue };
        if linux::is_root(fs) {
            let r = linux::inspect(v, fs, volumes, &mut found, options.cancelled);
            linux_without_shim |= !r.has_shim;
            os.push(r.os);
            if default_kernel.is_none() {
                default_kernel = r.default_kernel;
                kernels = r.kernels;
            }
        } else if windows::system_hive_path(fs).is_some() {
            os.push(windows::inspect(v, fs, firmware.boots_with, &mut found));
        }
    }
    if os.is_empty() {
        found.add(
            "guest-os-not-found",
            "X1",
            sev(W, W, W),
            "no Linux or Windows root file system was found: nothing inside the guest was checked"
                .into(),
            None,
            "Check that the disk is the OS disk and that its volumes are readable.",
        );
    }
    firmware::findings(&firmware, volumes, linux_without_shim, &mut found);
    if (options.cancelled)() {
        found.add(
            "inspect-interrupted",
            "X1",
            sev(W, W, W),
            "the inspection was interrupted; the report is incomplete".into(),
            None,
            "Run the inspection again.",
        );
    }
    InspectReport {
        targets: options.targets.clone(),
        os,
        kernels,
        default_kernel,
        firmware,
        volumes: volumes::summary(volumes),
        findings: found.list,
    }
}

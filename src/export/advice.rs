//! What the VM's descriptor says about where its disks can boot: the firmware picks the
//! Hyper-V generation (EFI: generation 2; BIOS: generation 1, or Azure), so a target is
//! suggested when none was asked, and one that does not fit the firmware is warned about.
//! The controller the first disk hangs on matters to generation 1, which boots only from
//! IDE.

use crate::disk::Disk;
use crate::ova::Firmware;
use crate::ova::ovf::{Attachment, ControllerKind};
use crate::target::{self, Target};

/// The target that fits the firmware, if the descriptor says which.
pub fn suggested_target(firmware: Firmware) -> Option<Target> {
    match firmware {
        Firmware::Efi => Some(Target::HypervGen2),
        Firmware::Bios => Some(Target::HypervGen1),
        Firmware::Unknown => None,
    }
}

/// Notes (when no target was asked) and warnings (when the asked one does not fit).
pub fn firmware_advice(
    firmware: Firmware,
    secure_boot: Option<bool>,
    asked: Option<Target>,
) -> (Vec<String>, Vec<String>) {
    let secure = if secure_boot == Some(true) {
        " with Secure Boot"
    } else {
        ""
    };
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    match (firmware, asked) {
        (Firmware::Efi, None) => notes.push(format!(
            "the VM boots with EFI{secure}: for Hyper-V, --target hyperv-gen2 (a generation 2 machine{secure})"
        )),
        (Firmware::Bios, None) => notes.push(
            "the VM boots with BIOS: for Hyper-V, --target hyperv-gen1 (a generation 1 machine); for Azure, --target azure"
                .into(),
        ),
        (Firmware::Unknown, None) => notes.push(
            "the descriptor does not say which firmware the VM boots with: --target hyperv-gen1 for BIOS, hyperv-gen2 for EFI"
                .into(),
        ),
        (Firmware::Efi, Some(Target::HypervGen1)) => warnings.push(
            "the VM boots with EFI, but a Hyper-V generation 1 machine boots with BIOS: use --target hyperv-gen2 unless the guest is changed to boot with BIOS"
                .into(),
        ),
        (Firmware::Efi, Some(Target::Azure)) => warnings.push(
            "the VM boots with EFI: on Azure it needs a generation 2 VM".into(),
        ),
        (Firmware::Bios, Some(Target::HypervGen2)) => warnings.push(
            "the VM boots with BIOS, but a Hyper-V generation 2 machine boots with UEFI: use --target hyperv-gen1 unless the guest is changed to boot with UEFI"
                .into(),
        ),
        _ => {}
    }
    (notes, warnings)
}

/// For a generation 1 target: a warning when the VM's first disk (its boot disk) is not
/// on an IDE controller.
pub fn controller_advice(target: Target, attachment: Option<&Attachment>) -> Option<String> {
    if !matches!(target, Target::HypervGen1 | Target::Azure) {
        return None;
    }
    let a = attachment?;
    let bus = match &a.controller {
        ControllerKind::Ide => return None,
        ControllerKind::Scsi => "SCSI",
        ControllerKind::Sata => "SATA",
        ControllerKind::Nvme => "NVMe",
        ControllerKind::Other(_) => "non-IDE",
    };
    let subtype = a
        .subtype
        .as_deref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    Some(format!(
        "the VM's first disk is on a {bus} controller{subtype}; a generation 1 machine boots only from IDE: attach it to the IDE controller there"
    ))
}

/// Warnings about booting `disk` on `target`'s machines from its partition table (as for
/// a single disk, without the VMDK adapter type: the descriptor's controller says more).
pub fn fit_advice(target: Target, disk: &mut dyn Disk) -> Vec<String> {
    match crate::partition::inspect(disk) {
        Ok(table) => target::fit_warnings(target, &table, disk.virtual_size(), None),
        Err(e) => vec![format!("partition table unreadable, fit not checked: {e}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firmware_picks_the_generation() {
        assert_eq!(suggested_target(Firmware::Efi), Some(Target::HypervGen2));
        let (notes, warnings) = firmware_advice(Firmware::Efi, Some(true), None);
        assert!(notes[0].contains("hyperv-gen2") && notes[0].contains("Secure Boot"));
        assert!(warnings.is_empty());
        let (notes, warnings) = firmware_advice(Firmware::Bios, None, Some(Target::HypervGen2));
        assert!(notes.is_empty());
        assert!(warnings[0].contains("hyperv-gen1"), "{warnings:?}");
        assert!(
            firmware_advice(Firmware::Bios, None, Some(Target::HypervGen1))
                .1
                .is_empty()
        );
    }
}

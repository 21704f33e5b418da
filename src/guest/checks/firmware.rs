//! Which firmware the disk boots with (GUEST.md 5.1: a GPT ESP and no BIOS boot partition
//! means UEFI, as virt-v2v decides), the EFI loaders on the ESP, and L3's findings.

use super::findings::{B, Findings, I, NA, W, at, sev};
use super::view::find_ci;
use crate::guest::report::{Firmware, FirmwareReport};
use crate::guest::volume::Volume;

pub const ESP_GUID: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
pub const BIOS_BOOT_GUID: &str = "21686148-6449-6e6f-744e-656564454649";

/// The fallback loader firmware starts when no NVRAM entry exists (entries do not travel).
const FALLBACK: &str = "/EFI/BOOT/BOOTX64.EFI";

fn is_esp(v: &Volume) -> bool {
    v.partition_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(ESP_GUID) || t.eq_ignore_ascii_case("0xef"))
}

pub fn detect(volumes: &[Volume], hint: Option<Firmware>) -> FirmwareReport {
    let gpt = volumes
        .iter()
        .any(|v| v.lvm.is_none() && v.partition_type.as_deref().is_some_and(|t| t.contains('-')));
    let esp = volumes
        .iter()
        .find(|v| is_esp(v) && v.partition_type.as_deref().is_some_and(|t| t.contains('-')));
    let bios_boot = volumes.iter().any(|v| {
        v.partition_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(BIOS_BOOT_GUID))
    });
    let any_partition = volumes.iter().any(|v| v.partition_type.is_some());
    let boots_with = match (gpt, esp.is_some(), bios_boot) {
        (true, true, false) => Firmware::Uefi,
        (true, true, true) => Firmware::Both,
        (true, false, _) => Firmware::Bios,
        (false, _, _) if any_partition => Firmware::Bios,
        _ => Firmware::Unknown,
    };
    let mut efi_loaders = Vec::new();
    // Loaders from any ESP-typed volume (an MBR 0xEF one too: it says what is installed).
    for v in volumes.iter().filter(|v| is_esp(v)) {
        let Some(fs) = v.fs.as_deref() else { continue };
        for path in [FALLBACK, "/EFI/Microsoft/Boot/bootmgfw.efi"] {
            if let Some(p) = find_ci(fs, path) {
                efi_loaders.push(p);
            }
        }
        for vendor in fs
            .read_dir(b"/EFI")
            .unwrap_or_default()
            .into_iter()
            .take(64)
        {
            let vendor = String::from_utf8_lossy(&vendor.name).into_owned();
            for f in fs
                .read_dir(format!("/EFI/{vendor}").as_bytes())
                .unwrap_or_default()
                .into_iter()
                .take(256)
            {
                let name = String::from_utf8_lossy(&f.name).into_owned();
                let lower = name.to_ascii_lowercase();
                if lower.starts_with("shim") && lower.ends_with(".efi") || lower == "grubx64.efi" {
                    efi_loaders.push(format!("/EFI/{vendor}/{name}"));
                }
            }
        }
    }
    efi_loaders.dedup();
    FirmwareReport {
        boots_with,
        hint,
        gpt,
        esp: esp.map(|v| v.name.clone()),
        bios_boot_partition: bios_boot,
        efi_loaders,
    }
}

/// L3: the disk's boot path against each target.
pub fn findings(
    report: &FirmwareReport,
    volumes: &[Volume],
    linux_without_shim: bool,
    findings: &mut Findings,
) {
    match report.boots_with {
        Firmware::Uefi => findings.add(
            "firmware-uefi-only",
            "L3",
            sev(B, NA, I),
            "the disk boots with UEFI only (GPT with an EFI system partition, no BIOS boot partition): Hyper-V generation 1 cannot boot it; on Azure it needs a generation 2 VM".into(),
            None,
            "Use a generation 2 machine, or add a BIOS boot path (BIOS boot partition + grub-install --target=i386-pc).",
        ),
        Firmware::Bios => findings.add(
            "firmware-bios-only",
            "L3",
            sev(NA, B, I),
            "the disk boots with BIOS only (MBR, or GPT without an EFI system partition): Hyper-V generation 2 cannot boot it; on Azure it needs a generation 1 VM".into(),
            None,
            "Use a generation 1 machine, or convert to GPT with an EFI system partition (mbr2gpt on Windows).",
        ),
        Firmware::Both | Firmware::Unknown => {}
    }
    if let (Some(hint), boots) = (report.hint, report.boots_with)
        && boots != Firmware::Unknown
        && boots != Firmware::Both
        && hint != boots
    {
        findings.add(
            "firmware-hint-mismatch",
            "L3",
            sev(I, I, I),
            format!("the VM was configured for {hint:?} but the disk's partitions say {boots:?}"),
            None,
            "Check which firmware the source VM really boots with.",
        );
    }
    if matches!(report.boots_with, Firmware::Uefi | Firmware::Both) {
        let esp = volumes
            .iter()
            .find(|v| Some(&v.name) == report.esp.as_ref());
        // Opened is not enough: a reader that stopped on damaged data (a crate's panic
        // contained on its thread) answers nothing, which is not "no loader".
        let readable =
            esp.is_some_and(|v| v.fs.as_deref().is_some_and(|fs| fs.read_dir(b"/").is_ok()));
        let location = report
            .esp
            .as_deref()
            .and_then(|n| at(Some(n), FALLBACK, None));
        let uefi_only = report.boots_with == Firmware::Uefi;
        if !readable {
            findings.add(
                "firmware-esp-unreadable",
                "L3",
                sev(NA, W, if uefi_only { W } else { NA }),
                "the EFI system partition could not be read; its boot loaders are unverified"
                    .into(),
                location,
                "Check the ESP holds \\EFI\\BOOT\\BOOTX64.EFI.",
            );
        } else if !report
            .efi_loaders
            .iter()
            .any(|l| l.eq_ignore_ascii_case(FALLBACK))
        {
            findings.add(
                "firmware-uefi-fallback-missing",
                "L3",
                sev(NA, B, if uefi_only { B } else { NA }),
                "the EFI system partition has no \\EFI\\BOOT\\BOOTX64.EFI: the NVRAM boot entries stay behind with VMware, so the new firmware finds nothing to start".into(),
                location,
                "Copy the OS loader (shimx64.efi or grubx64.efi; bootmgfw.efi for Windows) to \\EFI\\BOOT\\BOOTX64.EFI.",
            );
        }
        if readable && linux_without_shim {
            findings.add(
                "linux-secure-boot-shim-missing",
                "L3",
                sev(NA, W, I),
                "no signed shim (shimx64.efi) on the ESP: with Secure Boot on (the Hyper-V generation 2 default) the loader is refused".into(),
                report.esp.as_deref().and_then(|n| at(Some(n), "/EFI", None)),
                "Install shim (shim-x64 / shim-signed), or turn Secure Boot off for the VM.",
            );
        }
    }
}

//! Every finding id the checks produce: its catalogue entry (GUEST.md section 8), the
//! severities it may carry on each target, and one line saying what it means. The one
//! table docs/json.md lists; `Findings::add` asserts (in debug builds) that what the checks
//! produce is in it, and a contract test keeps the docs in step.

use crate::guest::report::{Severities, Severity};
use crate::platform::Target;

/// One kind of finding.
#[derive(Debug)]
pub struct Entry {
    pub id: &'static str,
    /// The catalogue entry it implements (L1..L9, W1..W4, X1, X2).
    pub check: &'static str,
    /// The severities a finding of this id may carry; more than one where the severity
    /// depends on the disk (e.g. its firmware).
    pub severities: &'static [Severities],
    /// What it means, in one line.
    pub summary: &'static str,
}

impl Entry {
    /// True when a finding with this check and severities is one this entry allows.
    pub fn allows(&self, check: &str, severity: &Severities) -> bool {
        self.check == check && self.severities.contains(severity)
    }

    /// The entry's severities on `target` as the docs spell them: "block", "warn or info",
    /// "—" (does not apply).
    pub fn column(&self, target: Target) -> String {
        let mut names: Vec<&str> = Vec::new();
        for s in self.severities {
            let name = severity_name(s.get(target));
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.join(" or ")
    }
}

fn severity_name(s: Option<Severity>) -> &'static str {
    match s {
        Some(Severity::Block) => "block",
        Some(Severity::Warn) => "warn",
        Some(Severity::Info) => "info",
        None => "—",
    }
}

const B: Option<Severity> = Some(Severity::Block);
const W: Option<Severity> = Some(Severity::Warn);
const I: Option<Severity> = Some(Severity::Info);
const NA: Option<Severity> = None;

/// Severities in catalogue column order: Hyper-V Gen1, Gen2, Azure.
const fn s(gen1: Option<Severity>, gen2: Option<Severity>, azure: Option<Severity>) -> Severities {
    Severities::new(gen1, gen2, azure)
}

macro_rules! catalogue {
    ($($id:literal, $check:literal, [$($sev:expr),+], $summary:literal;)*) => {
        /// Every finding the checks produce, in the order docs/json.md lists them.
        pub const ALL: &[Entry] = &[$(Entry {
            id: $id,
            check: $check,
            severities: &[$($sev),+],
            summary: $summary,
        }),*];
    };
}

catalogue! {
    // X1: what could not be inspected.
    "guest-os-not-found", "X1", [s(W, W, W)], "No Linux or Windows root file system was found: nothing inside the guest was checked.";
    "inspect-interrupted", "X1", [s(W, W, W)], "The inspection was interrupted; the report is incomplete.";
    "volume-bitlocker", "X1", [s(W, W, W)], "A BitLocker-encrypted volume: not inspected; a key sealed in VMware's vTPM does not travel.";
    "volume-luks", "X1", [s(W, W, W)], "A LUKS-encrypted volume: not inspected; a key sealed in the TPM does not travel.";
    "volume-cannot-inspect", "X1", [s(I, I, I)], "A volume that could not be inspected (a RAID member, a damaged or unsupported file system).";
    // L3: firmware.
    "firmware-uefi-only", "L3", [s(B, NA, I)], "The disk boots with UEFI only (GPT, an ESP, no BIOS boot partition).";
    "firmware-bios-only", "L3", [s(NA, B, I)], "The disk boots with BIOS only (MBR, or GPT without an ESP).";
    "firmware-hint-mismatch", "L3", [s(I, I, I)], "The firmware the VM was configured with differs from what the partitions say.";
    "firmware-esp-unreadable", "L3", [s(NA, W, W), s(NA, W, NA)], "The EFI system partition could not be read; its loaders are unverified (Azure: on a UEFI-only disk).";
    "firmware-uefi-fallback-missing", "L3", [s(NA, B, B), s(NA, B, NA)], "No \\EFI\\BOOT\\BOOTX64.EFI on the ESP: NVRAM entries stay behind, so the new firmware finds no loader (Azure: on a UEFI-only disk).";
    "linux-secure-boot-shim-missing", "L3", [s(NA, W, I)], "No signed shim on the ESP: with Secure Boot on, the loader is refused.";
    // L1, L2: Hyper-V drivers of the default kernel.
    "linux-no-kernel", "L1", [s(W, W, W)], "No kernel found in /boot or /lib/modules: the Hyper-V drivers cannot be checked.";
    "linux-default-kernel-unknown", "L1", [s(I, I, I)], "No bootloader entry read; the newest kernel is taken as the default.";
    "linux-initramfs-missing", "L1", [s(B, B, B)], "The default kernel needs an initramfs (its drivers are modules) and none was found.";
    "linux-initramfs-unreadable", "L1", [s(W, W, W)], "The default kernel's initramfs cannot be read (damaged, or compressed with bzip2/lzo): its drivers are unverified.";
    "linux-hv-vmbus-missing", "L1", [s(B, B, B)], "hv_vmbus is neither built in nor in the default kernel's initramfs.";
    "linux-hv-storvsc-missing", "L1", [s(B, B, B)], "hv_storvsc is neither built in nor in the default kernel's initramfs: the root disk is not found (Gen1 too).";
    "linux-hv-netvsc-missing", "L2", [s(W, W, B)], "hv_netvsc is neither built in nor a module of the default kernel: no network.";
    "linux-hv-vmbus-blacklisted", "L1", [s(B, B, B)], "hv_vmbus is blacklisted (modprobe.d, the initramfs or the command line).";
    "linux-hv-storvsc-blacklisted", "L1", [s(B, B, B)], "hv_storvsc is blacklisted (modprobe.d, the initramfs or the command line).";
    "linux-hv-netvsc-blacklisted", "L2", [s(W, W, B)], "hv_netvsc is blacklisted (modprobe.d, the initramfs or the command line).";
    "linux-hv-drivers-missing-other-kernel", "L1", [s(I, I, I)], "A kernel that is not the default lacks hv_vmbus or hv_storvsc at boot.";
    // L4, L5: device names.
    "linux-fstab-root-device-name", "L4", [s(B, B, B)], "fstab mounts / from a hardware-bound name (/dev/sdX, by-path, VMware by-id).";
    "linux-fstab-device-name", "L4", [s(W, W, W)], "fstab mounts another file system from a hardware-bound name.";
    "linux-fstab-unresolved", "L4", [s(I, I, I)], "An fstab entry names a volume that is not on this disk.";
    "linux-crypttab-device-name", "L4", [s(W, W, W)], "crypttab opens a device by a hardware-bound name.";
    "linux-cmdline-root-device-name", "L4", [s(B, B, B)], "The kernel command line's root= is a hardware-bound name.";
    "linux-cmdline-resume-device-name", "L4", [s(W, W, W)], "The kernel command line's resume= is a hardware-bound name.";
    "linux-lvm-devices-file-vmware", "L5", [s(B, B, B)], "/etc/lvm/devices/system.devices admits PVs by VMware disk IDs: LVM ignores the disk after the move.";
    "linux-lvm-devices-file", "L5", [s(W, W, W)], "/etc/lvm/devices/system.devices admits PVs by hardware IDs that will change.";
    // L6: network.
    "linux-net-mac-pinned", "L6", [s(W, W, B)], "A network configuration (netplan, ifcfg, keyfile, udev, networkd) is pinned to the old NIC's MAC.";
    "linux-net-interface-name", "L6", [s(W, W, B)], "A network configuration names a VMware-era interface (ens192, ...) that will not exist.";
    "linux-net-static-ipv4", "L6", [s(W, W, B)], "A static IPv4 address is configured; Azure assigns addresses by DHCP.";
    // L7..L9: Azure.
    "linux-azure-agent-missing", "L7", [s(NA, NA, B)], "Neither waagent nor cloud-init is installed: Azure cannot provision the VM.";
    "linux-azure-agent-disabled", "L7", [s(NA, NA, W)], "The Azure agent is installed but not enabled.";
    "linux-cloud-init-no-azure-datasource", "L7", [s(NA, NA, W)], "cloud-init's datasource_list does not include Azure.";
    "linux-udf-disabled", "L8", [s(NA, NA, B)], "udf is blacklisted or not built: Azure provisioning media cannot be read.";
    "linux-vfat-disabled", "L8", [s(NA, NA, B)], "vfat is blacklisted or not built: Azure provisioning media cannot be read.";
    "linux-swap-on-os-disk", "L9", [s(NA, NA, W)], "Swap on the OS disk; Azure wants it on the resource disk.";
    "linux-serial-console-missing", "L9", [s(NA, NA, W)], "The default kernel command line has no console=ttyS0: no serial console or boot diagnostics.";
    "linux-kernel-old", "L9", [s(NA, NA, W)], "The default kernel predates 3.8.";
    // W1..W4: Windows.
    "windows-hive-unreadable", "W1", [s(W, W, W)], "The SYSTEM or SOFTWARE hive cannot be read (or has no current control set): the checks that need it were skipped.";
    "windows-hive-dirty", "W4", [s(W, W, W)], "A hive was not cleanly written; changes in its .LOG files are not read.";
    "windows-storvsc-not-boot-start", "W1", [s(W, B, B)], "The storvsc driver is not boot-start (Start=0): INACCESSIBLE_BOOT_DEVICE on the synthetic SCSI disk.";
    "windows-vmbus-not-boot-start", "W1", [s(W, B, B)], "The vmbus driver is not boot-start.";
    "windows-storflt-not-boot-start", "W1", [s(W, B, B)], "The storflt driver is not boot-start.";
    "windows-intelide-not-boot-start", "W2", [s(B, NA, B), s(B, NA, I)], "The intelide driver is not boot-start: no IDE boot disk on Gen1 (Azure: info on a UEFI-only disk).";
    "windows-atapi-not-boot-start", "W2", [s(B, NA, B), s(B, NA, I)], "The atapi driver is not boot-start: no IDE boot disk on Gen1 (Azure: info on a UEFI-only disk).";
    "windows-san-policy", "W3", [s(W, W, W), s(I, I, I)], "SanPolicy is not 1 (OnlineAll): disks may come up offline (info when not set).";
    "windows-rdp-disabled", "W3", [s(W, W, B)], "Remote Desktop is disabled (fDenyTSConnections).";
    "windows-dhcp-not-automatic", "W3", [s(W, W, B)], "The DHCP client service does not start automatically.";
    "windows-static-ip", "W3", [s(W, W, B)], "An interface has a static IPv4 address.";
    "windows-hibernated", "W4", [s(B, B, B)], "Windows is hibernated or shut down with Fast Startup (hiberfil.sys holds an image).";
    "windows-fast-startup-enabled", "W4", [s(W, W, W)], "Fast Startup is enabled: a normal shutdown leaves the system hibernated.";
    "windows-pending-reboot", "W4", [s(W, W, W)], "A reboot is pending (servicing, Windows Update, file renames).";
    "windows-dynamic-disk", "W4", [s(B, B, B)], "A volume of a Windows dynamic disk (LDM): not inspected, not supported as a system disk.";
}

/// The entry for `id`, if the catalogue has one.
pub fn entry(id: &str) -> Option<&'static Entry> {
    ALL.iter().find(|e| e.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_kebab_case() {
        let mut ids: Vec<&str> = ALL.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), ALL.len());
        for e in ALL {
            assert!(
                e.id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{}",
                e.id
            );
            assert!(e.summary.ends_with('.'), "{}", e.id);
        }
    }

    /// Every id literal in the checks' sources is catalogued, and every catalogued id is
    /// spelt somewhere in them (literally, or as the parts a `format!` joins).
    #[test]
    fn the_sources_and_the_catalogue_agree() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("firmware.rs"),
            include_str!("volumes.rs"),
            include_str!("windows.rs"),
            include_str!("linux/mod.rs"),
        ]
        .concat();
        let prefixes = [
            "\"linux-",
            "\"windows-",
            "\"firmware-",
            "\"volume-",
            "\"guest-",
            "\"inspect-",
        ];
        for (at, _) in sources.match_indices('"') {
            let rest = &sources[at..];
            if !prefixes.iter().any(|p| rest.starts_with(p)) {
                continue;
            }
            let lit = &rest[1..rest[1..].find('"').map_or(1, |e| e + 1)];
            if lit.contains('{') || lit.contains(' ') {
                continue;
            }
            assert!(entry(lit).is_some(), "{lit} is not in the catalogue");
        }
        for e in ALL {
            // linux-hv-MODULE-{missing,blacklisted}: a driver of HV_DRIVERS, joined by format!.
            let driver = e.id.strip_prefix("linux-hv-").and_then(|rest| {
                let (module, what) = rest.rsplit_once('-')?;
                Some((format!("\"hv_{}\"", module.replace('-', "_")), what))
            });
            let spelt = sources.contains(&format!("\"{}\"", e.id))
                || driver.is_some_and(|(module, what)| {
                    include_str!("linux/kernels.rs").contains(&module)
                        && sources.contains(&format!("format!(\"{{id_base}}-{what}\")"))
                })
                || e.id
                    .strip_prefix("windows-")
                    .and_then(|r| r.strip_suffix("-not-boot-start"))
                    .is_some_and(|svc| sources.contains(&format!("(\"{svc}\", sev(")));
            assert!(spelt, "{} is catalogued but no check produces it", e.id);
        }
    }

    #[test]
    fn columns_say_every_severity_once() {
        let e = entry("windows-intelide-not-boot-start").unwrap();
        assert_eq!(e.column(Target::HypervGen1), "block");
        assert_eq!(e.column(Target::HypervGen2), "—");
        assert_eq!(e.column(Target::Azure), "block or info");
    }
}

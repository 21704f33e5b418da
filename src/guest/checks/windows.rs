//! Windows guests: the SYSTEM and SOFTWARE hives and the root's files, for the catalogue's
//! Windows checks (GUEST.md section 4 and 8, W1..W4).

use super::findings::{B, Findings, I, NA, W, at, sev};
use super::view::find_ci;
use crate::guest::fs::GuestFs;
use crate::guest::registry::Hive;
use crate::guest::report::{Firmware, OsReport, Severities};
use crate::guest::volume::Volume;

/// Hives are tens of MiB; a larger "hive" is not read.
pub const HIVE_LIMIT: u64 = 512 << 20;
/// Bytes of hiberfil.sys that tell whether it holds a hibernated system (ntfs-3g's rule).
const HIBERFIL_HEAD: u64 = 4096;

pub fn system_hive_path(fs: &dyn GuestFs) -> Option<String> {
    find_ci(fs, "/Windows/System32/config/SYSTEM")
}

pub fn inspect(
    root: &Volume,
    fs: &dyn GuestFs,
    firmware: Firmware,
    findings: &mut Findings,
) -> OsReport {
    let mut os = OsReport {
        kind: "windows".into(),
        root_volume: root.name.clone(),
        ..OsReport::default()
    };
    let Some(system) = open_hive(root, fs, "SYSTEM", findings) else {
        return os;
    };
    let software = open_hive(root, fs, "SOFTWARE", findings);
    if let Some(sw) = &software {
        let cv = "Microsoft\\Windows NT\\CurrentVersion";
        let s = |name: &str| {
            sw.value(cv, name)
                .ok()
                .flatten()
                .and_then(|v| v.as_string())
        };
        let d = |name: &str| sw.value(cv, name).ok().flatten().and_then(|v| v.as_dword());
        os.name = s("ProductName");
        os.build = s("CurrentBuildNumber");
        os.edition = s("EditionID");
        os.version = match (
            d("CurrentMajorVersionNumber"),
            d("CurrentMinorVersionNumber"),
        ) {
            (Some(major), Some(minor)) => Some(format!("{major}.{minor}")),
            _ => s("CurrentVersion"),
        };
    }
    let current = system
        .value("Select", "Current")
        .ok()
        .flatten()
        .and_then(|v| v.as_dword());
    let Some(current) = current else {
        findings.add(
            "windows-hive-unreadable",
            "W1",
            sev(W, W, W),
            "SYSTEM\\Select\\Current is missing: the current control set is unknown".into(),
            at(Some(&root.name), "SYSTEM\\Select\\Current", None),
            "Check the SYSTEM hive with Windows' own tools.",
        );
        return os;
    };
    let cs = format!("ControlSet{current:03}");
    let reg = |key: &str, name: &str| at(Some(&root.name), &format!("SYSTEM\\{key}\\{name}"), None);

    // W1, W2: boot-start storage drivers.
    let uefi_only = firmware == Firmware::Uefi;
    let ide_azure = if uefi_only { I } else { B };
    let services: [(&str, Severities, &str); 5] = [
        ("storvsc", sev(W, B, B), "W1"),
        ("vmbus", sev(W, B, B), "W1"),
        ("storflt", sev(W, B, B), "W1"),
        ("intelide", sev(B, NA, ide_azure), "W2"),
        ("atapi", sev(B, NA, ide_azure), "W2"),
    ];
    for (service, severity, check) in services {
        let key = format!("{cs}\\Services\\{service}");
        let start = system
            .value(&key, "Start")
            .ok()
            .flatten()
            .and_then(|v| v.as_dword());
        if start != Some(0) {
            let what = match start {
                Some(s) => format!("Start={s} ({})", start_name(s)),
                None => "no service entry".into(),
            };
            findings.add(
                &format!("windows-{service}-not-boot-start"),
                check,
                severity,
                format!("the {service} driver is not boot-start ({what}): Windows stops with INACCESSIBLE_BOOT_DEVICE (0x7B) where it needs it"),
                reg(&key, "Start"),
                "Set the service's Start to 0 (boot) before the move, e.g. reg add HKLM\\SYSTEM\\CurrentControlSet\\Services\\<name> /v Start /t REG_DWORD /d 0.",
            );
        }
    }

    // W3: SAN policy, RDP, DHCP client, static addresses.
    let partmgr = format!("{cs}\\Services\\partmgr\\Parameters");
    match system
        .value(&partmgr, "SanPolicy")
        .ok()
        .flatten()
        .and_then(|v| v.as_dword())
    {
        Some(1) => {}
        policy => findings.add(
            "windows-san-policy",
            "W3",
            if policy.is_some() {
                sev(W, W, W)
            } else {
                sev(I, I, I)
            },
            match policy {
                Some(p) => {
                    format!("SanPolicy is {p}, not 1 (OnlineAll): disks may come up offline")
                }
                None => {
                    "SanPolicy is not set (Windows Server defaults to offline shared disks)".into()
                }
            },
            reg(&partmgr, "SanPolicy"),
            "Run diskpart: san policy=onlineall.",
        ),
    }
    let ts = format!("{cs}\\Control\\Terminal Server");
    let deny_system = system
        .value(&ts, "fDenyTSConnections")
        .ok()
        .flatten()
        .and_then(|v| v.as_dword());
    let policy_key = "Policies\\Microsoft\\Windows NT\\Terminal Services";
    let deny_policy = software
        .as_ref()
        .and_then(|sw| sw.value(policy_key, "fDenyTSConnections").ok().flatten())
        .and_then(|v| v.as_dword());
    let rdp_off = if deny_policy == Some(1) {
        Some(format!("SOFTWARE\\{policy_key}\\fDenyTSConnections"))
    } else if deny_policy.is_none() && deny_system != Some(0) {
        Some(format!("SYSTEM\\{ts}\\fDenyTSConnections"))
    } else {
        None
    };
    if let Some(path) = rdp_off {
        findings.add(
            "windows-rdp-disabled",
            "W3",
            sev(W, W, B),
            "Remote Desktop is disabled (fDenyTSConnections is not 0): the VM cannot be reached"
                .into(),
            at(Some(&root.name), &path, None),
            "Enable Remote Desktop (fDenyTSConnections=0, in the policy key too if set).",
        );
    }
    let dhcp_key = format!("{cs}\\Services\\Dhcp");
    let dhcp = system
        .value(&dhcp_key, "Start")
        .ok()
        .flatten()
        .and_then(|v| v.as_dword());
    if dhcp != Some(2) {
        findings.add(
            "windows-dhcp-not-automatic",
            "W3",
            sev(W, W, B),
            format!(
                "the DHCP client service is not automatic ({})",
                dhcp.map(|s| format!("Start={s}"))
                    .unwrap_or_else(|| "no service entry".into())
            ),
            reg(&dhcp_key, "Start"),
            "Set the Dhcp service to start automatically.",
        );
    }
    let ifaces = format!("{cs}\\Services\\Tcpip\\Parameters\\Interfaces");
    if let Ok(Some(key)) = system.key(&ifaces) {
        for iface in key.subkeys().unwrap_or_default().into_iter().take(1000) {
            let dhcp_on = iface.dword("EnableDHCP").ok().flatten();
            let addrs = iface
                .value("IPAddress")
                .ok()
                .flatten()
                .and_then(|v| v.as_multi_string())
                .unwrap_or_default();
            let real: Vec<&String> = addrs
                .iter()
                .filter(|a| !a.is_empty() && a.as_str() != "0.0.0.0")
                .collect();
            if dhcp_on == Some(0) && !real.is_empty() {
                findings.add(
                    "windows-static-ip",
                    "W3",
                    sev(W, W, B),
                    format!(
                        "interface {} has a static IPv4 address ({}); the new adapter gets a new identity and Azure assigns addresses by DHCP",
                        iface.name(),
                        real.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    reg(&format!("{ifaces}\\{}", iface.name()), "IPAddress"),
                    "Switch the adapter to DHCP before the move.",
                );
            }
        }
    }

    // W4: hibernation, fast startup, pending reboot, dirty hives.
    let hibernated = hibernation_state(fs);
    if let Some((path, why)) = &hibernated {
        findings.add(
            "windows-hibernated",
            "W4",
            sev(B, B, B),
            format!("Windows is hibernated or shut down with Fast Startup ({why}): the file systems are not clean and booting elsewhere can lose data"),
            at(Some(&root.name), path, None),
            "Boot the VM on VMware and shut it down fully (shutdown /s /t 0), with hibernation off (powercfg /h off).",
        );
    }
    let power = format!("{cs}\\Control\\Session Manager\\Power");
    if hibernated.is_none()
        && system
            .value(&power, "HiberbootEnabled")
            .ok()
            .flatten()
            .and_then(|v| v.as_dword())
            == Some(1)
    {
        findings.add(
            "windows-fast-startup-enabled",
            "W4",
            sev(W, W, W),
            "Fast Startup is enabled: a normal shutdown leaves the system hibernated".into(),
            reg(&power, "HiberbootEnabled"),
            "Disable Fast Startup (powercfg /h off) and shut down fully before the copy.",
        );
    }
    let mut pending = Vec::new();
    if let Some(sw) = &software {
        for key in [
            "Microsoft\\Windows\\CurrentVersion\\Component Based Servicing\\RebootPending",
            "Microsoft\\Windows\\CurrentVersion\\WindowsUpdate\\Auto Update\\RebootRequired",
        ] {
            if sw.key(key).ok().flatten().is_some() {
                pending.push(format!("SOFTWARE\\{key}"));
            }
        }
    }
    let sm = format!("{cs}\\Control\\Session Manager");
    if system
        .value(&sm, "PendingFileRenameOperations")
        .ok()
        .flatten()
        .and_then(|v| v.as_multi_string())
        .is_some_and(|l| !l.is_empty())
    {
        pending.push(format!("SYSTEM\\{sm}\\PendingFileRenameOperations"));
    }
    if let Some(first) = pending.first() {
        findings.add(
            "windows-pending-reboot",
            "W4",
            sev(W, W, W),
            format!("a reboot is pending ({})", pending.join(", ")),
            at(Some(&root.name), first, None),
            "Restart the VM on VMware and let the updates finish before the copy.",
        );
    }
    os
}

fn start_name(start: u32) -> &'static str {
    match start {
        0 => "boot",
        1 => "system",
        2 => "automatic",
        3 => "manual",
        4 => "disabled",
        _ => "unknown",
    }
}

fn open_hive(root: &Volume, fs: &dyn GuestFs, name: &str, findings: &mut Findings) -> Option<Hive> {
    let path = find_ci(fs, &format!("/Windows/System32/config/{name}"))?;
    let result = fs
        .read_file(path.as_bytes(), HIVE_LIMIT)
        .and_then(Hive::from_bytes);
    match result {
        Ok(hive) => {
            if hive.dirty() {
                findings.add(
                    "windows-hive-dirty",
                    "W4",
                    sev(W, W, W),
                    format!("the {name} hive was not cleanly written (sequence numbers differ); changes in its .LOG files are not read, so values may be stale"),
                    at(Some(&root.name), &path, None),
                    "Shut Windows down cleanly before the copy.",
                );
            }
            Some(hive)
        }
        Err(e) => {
            findings.add(
                "windows-hive-unreadable",
                "W1",
                sev(W, W, W),
                format!("the {name} hive cannot be read: {e}"),
                at(Some(&root.name), &path, None),
                "Check the hive with Windows' own tools; the Windows checks that need it were skipped.",
            );
            None
        }
    }
}

/// hiberfil.sys's first 4 KiB: "hibr" (any case) or any non-zero byte means a hibernated
/// image is there (ntfs-3g's ntfs_volume_check_hiberfile; GUEST.md 4.3).
fn hibernation_state(fs: &dyn GuestFs) -> Option<(String, String)> {
    let path = find_ci(fs, "/hiberfil.sys")?;
    let meta = fs.metadata(path.as_bytes()).ok()?;
    if meta.size == 0 {
        return None;
    }
    match fs.read_head(path.as_bytes(), HIBERFIL_HEAD) {
        Ok(head) => {
            let magic = head.get(..4).map(|m| m.to_ascii_lowercase());
            if magic.as_deref() == Some(b"hibr".as_slice()) {
                Some((path, "hiberfil.sys starts with \"hibr\"".into()))
            } else if head.iter().any(|&b| b != 0) {
                Some((path, "hiberfil.sys holds data".into()))
            } else {
                None
            }
        }
        Err(_) => None,
    }
}

//! Linux guests: find the root, assemble its mounts from fstab, then the catalogue's Linux
//! checks (GUEST.md section 8, L1..L9).

pub mod boot;
pub mod devices;
pub mod kernels;
pub mod modprobe;
pub mod network;

use super::findings::{B, Findings, I, NA, W, at, sev};
use super::view::View;
use crate::guest::fs::GuestFs;
use crate::guest::initramfs::Listing;
use crate::guest::report::{DriverReport, DriverState, KernelReport, OsReport};
use crate::guest::volume::{Content, Volume};
use devices::{DeviceName, classify, find_volume, parse_tab};
use kernels::HV_DRIVERS;
use modprobe::{Blacklist, MODPROBE_DIRS};
use network::NetIssue;

/// True when the file system looks like a Linux root.
pub fn is_root(fs: &dyn GuestFs) -> bool {
    (fs.metadata(b"/etc/os-release").is_ok() || fs.metadata(b"/usr/lib/os-release").is_ok())
        && fs.metadata(b"/etc").is_ok()
}

/// What inspecting one Linux root produced.
pub struct LinuxResult {
    pub os: OsReport,
    pub kernels: Vec<KernelReport>,
    pub default_kernel: Option<String>,
    /// Whether /boot/efi holds shim (for the Secure Boot note).
    pub has_shim: bool,
}

pub fn inspect(
    root: &Volume,
    fs: &dyn GuestFs,
    volumes: &[Volume],
    findings: &mut Findings,
    cancelled: &dyn Fn() -> bool,
) -> LinuxResult {
    let mut view = View::new(root, fs);
    let fstab_text = view.text("/etc/fstab").unwrap_or_default();
    let fstab = parse_tab(&fstab_text);
    for e in &fstab {
        let (Some(spec), Some(point)) = (e.fields.first(), e.fields.get(1)) else {
            continue;
        };
        if !point.starts_with('/') || point == "/" {
            continue;
        }
        match find_volume(spec, volumes) {
            Some(v) => {
                if let Some(vfs) = v.fs.as_deref() {
                    view.mount(point, v, vfs);
                }
            }
            None if classify(spec) == DeviceName::Stable && !is_pseudo(e.fields.get(2)) => findings
                .add(
                    "linux-fstab-unresolved",
                    "L4",
                    sev(I, I, I),
                    format!("{spec} (mounted on {point}) is not on this disk"),
                    at(Some(&root.name), "/etc/fstab", Some(e.line)),
                    "Move the volume along with this disk, or mark the entry nofail.",
                ),
            None => {}
        }
    }
    let vol_name = |view: &View<'_>, path: &str| {
        view.resolve(path)
            .ok()
            .and_then(|p| view.volume_of(&p))
            .map(|v| v.name.clone())
    };

    let os = os_report(&view, root);
    let kernels = kernels::find(&view);
    let bootloader = boot::read(&view);
    let default_entry = bootloader.default.and_then(|i| bootloader.entries.get(i));
    let default_version = default_entry
        .and_then(|e| e.version())
        .filter(|v| kernels.iter().any(|k| &k.version == v))
        .or_else(|| kernels.first().map(|k| k.version.clone()));
    if kernels.is_empty() {
        findings.add(
            "linux-no-kernel",
            "L1",
            sev(W, W, W),
            "no kernel found in /boot or /lib/modules; the Hyper-V drivers cannot be checked"
                .into(),
            at(Some(&root.name), "/boot", None),
            "Make sure /boot is on this disk and its fstab entry resolves.",
        );
    } else if default_entry.is_none() {
        findings.add(
            "linux-default-kernel-unknown",
            "L1",
            sev(I, I, I),
            format!(
                "no bootloader entry read; the newest kernel ({}) is taken as the default",
                default_version.as_deref().unwrap_or("?")
            ),
            None,
            "Check which kernel the bootloader starts.",
        );
    }
    let cmdline = default_entry.map(|e| e.options.clone()).unwrap_or_default();

    // Blacklists: the root's modprobe.d and the default command line.
    let mut blacklist = Blacklist::default();
    for dir in MODPROBE_DIRS {
        for (path, text) in view.texts_in(dir, ".conf") {
            blacklist.add_conf(&path, &text);
        }
    }
    if let Some(e) = default_entry {
        blacklist.add_cmdline(&format!("{}:{}", e.source.0, e.source.1), &e.options);
    }

    let mut kernel_reports = Vec::new();
    for k in &kernels {
        if cancelled() {
            break;
        }
        let is_default = default_version.as_deref() == Some(k.version.as_str());
        // The bootloader entry's initrd (relative to the partition holding it) wins.
        let initramfs_path = is_default
            .then(|| default_entry.and_then(|e| e.initrd.clone()))
            .flatten()
            .and_then(|p| {
                [p.clone(), format!("/boot{p}")]
                    .into_iter()
                    .find(|c| view.exists(c))
            })
            .or_else(|| k.initramfs.clone());
        let listing: Option<Result<Listing, String>> = initramfs_path
            .as_ref()
            .map(|p| kernels::list_initramfs(&view, p, cancelled));
        let mut kernel_blacklist = blacklist.clone();
        if let Some(Ok(l)) = &listing {
            for (name, data) in &l.captured {
                let text = String::from_utf8_lossy(data);
                if name.starts_with("etc/cmdline") {
                    kernel_blacklist.add_cmdline(&format!("initramfs /{name}"), &text);
                } else {
                    kernel_blacklist.add_conf(&format!("initramfs /{name}"), &text);
                }
            }
        }
        let ok_listing = listing.as_ref().and_then(|l| l.as_ref().ok());
        let drivers: Vec<DriverReport> = HV_DRIVERS
            .iter()
            .map(|(module, _, symbol)| DriverReport {
                module: module.to_string(),
                state: kernels::driver_state(k, module, symbol, ok_listing),
                blacklisted: kernel_blacklist.find(module).map(str::to_string),
            })
            .collect();
        if is_default {
            default_kernel_findings(findings, root, k, &initramfs_path, &listing, &drivers);
            filesystem_driver_findings(findings, k, &kernel_blacklist);
        } else {
            let missing: Vec<&str> = drivers
                .iter()
                .take(2)
                .filter(|d| matches!(d.state, DriverState::Missing | DriverState::NotInInitramfs))
                .map(|d| d.module.as_str())
                .collect();
            if !missing.is_empty() {
                findings.add(
                    "linux-hv-drivers-missing-other-kernel",
                    "L1",
                    sev(I, I, I),
                    format!(
                        "kernel {} (not the default) lacks {} at boot",
                        k.version,
                        missing.join(", ")
                    ),
                    initramfs_path
                        .as_deref()
                        .and_then(|p| at(vol_name(&view, p).as_deref(), p, None)),
                    "Rebuild that kernel's initramfs with the Hyper-V drivers, or do not boot it.",
                );
            }
        }
        kernel_reports.push(KernelReport {
            version: k.version.clone(),
            image: k.image.clone(),
            initramfs: initramfs_path.clone(),
            modules_dir: k.modules_dir.is_some(),
            default: is_default,
            drivers,
        });
    }

    device_name_findings(findings, &view, root, &fstab, &bootloader, default_entry);
    lvm_devices_findings(findings, &view, root);
    network_findings(findings, &view);
    azure_agent_findings(findings, &view, &cmdline);
    swap_findings(findings, root, &fstab, volumes);
    if default_entry.is_some()
        && !cmdline
            .split_whitespace()
            .any(|w| w.starts_with("console=ttyS0"))
    {
        let e = default_entry.map(|e| e.source.clone()).unwrap_or_default();
        findings.add(
            "linux-serial-console-missing",
            "L9",
            sev(NA, NA, W),
            "the default kernel command line has no console=ttyS0: Azure's serial console and boot diagnostics stay empty".into(),
            at(vol_name(&view, &e.0).as_deref(), &e.0, Some(e.1)),
            "Add console=ttyS0 earlyprintk=ttyS0 to GRUB_CMDLINE_LINUX and regenerate the GRUB configuration.",
        );
    }
    if let Some(v) = &default_version
        && boot::compare_versions(v, "3.8") == std::cmp::Ordering::Less
    {
        findings.add(
            "linux-kernel-old",
            "L9",
            sev(NA, NA, W),
            format!("the default kernel {v} predates 3.8; Azure recommends 3.8 or later (older ones need separate LIS drivers or numa=off)"),
            None,
            "Update the kernel, or install Linux Integration Services.",
        );
    }
    let has_shim = ["/boot/efi/EFI"].iter().any(|d| {
        view.names(d).iter().any(|vendor| {
            view.names(&format!("{d}/{vendor}"))
                .iter()
                .any(|f| f.to_ascii_lowercase().starts_with("shim"))
        })
    });
    LinuxResult {
        os,
        kernels: kernel_reports,
        default_kernel: default_version,
        has_shim,
    }
}

fn is_pseudo(fstype: Option<&String>) -> bool {
    fstype.is_some_and(|t| {
        matches!(
            t.as_str(),
            "tmpfs"
                | "proc"
                | "sysfs"
                | "devpts"
                | "none"
                | "swap"
                | "nfs"
                | "nfs4"
                | "cifs"
                | "smbfs"
                | "bind"
        )
    })
}

fn os_report(view: &View<'_>, root: &Volume) -> OsReport {
    let text = view
        .text("/etc/os-release")
        .or_else(|| view.text("/usr/lib/os-release"))
        .unwrap_or_default();
    let get = |k: &str| boot::shell_var(&text, k).map(|(_, v)| v);
    OsReport {
        kind: "linux".into(),
        root_volume: root.name.clone(),
        name: get("NAME"),
        id: get("ID"),
        version: get("VERSION_ID"),
        mounts: view
            .mounts()
            .iter()
            .map(|m| {
                (
                    if m.point.is_empty() {
                        "/".into()
                    } else {
                        m.point.clone()
                    },
                    m.volume.name.clone(),
                )
            })
            .collect(),
        ..OsReport::default()
    }
}

fn default_kernel_findings(
    findings: &mut Findings,
    root: &Volume,
    k: &kernels::Kernel,
    initramfs_path: &Option<String>,
    listing: &Option<Result<Listing, String>>,
    drivers: &[DriverReport],
) {
    let ver = &k.version;
    let needs_initramfs = drivers.iter().take(2).any(|d| {
        matches!(
            d.state,
            DriverState::ModuleOnly | DriverState::NotInInitramfs
        )
    });
    match (initramfs_path, listing) {
        (None, _) if needs_initramfs => findings.add(
            "linux-initramfs-missing",
            "L1",
            sev(B, B, B),
            format!("the default kernel {ver} has no initramfs, and its Hyper-V storage drivers are modules"),
            at(Some(&root.name), "/boot", None),
            "Build an initramfs with hv_vmbus and hv_storvsc (dracut -f --add-drivers \"hv_vmbus hv_storvsc hv_netvsc\", or update-initramfs -u).",
        ),
        (Some(p), Some(Err(e))) => findings.add(
            "linux-initramfs-unreadable",
            "L1",
            sev(W, W, W),
            format!("the initramfs of the default kernel {ver} cannot be read ({e}); its Hyper-V drivers are unverified"),
            at(None, p, None),
            "Check the image inside the guest with lsinitrd or lsinitramfs.",
        ),
        _ => {}
    }
    let location = initramfs_path.as_deref().and_then(|p| at(None, p, None));
    for d in drivers {
        let critical = d.module != "hv_netvsc";
        let sevs = if critical { sev(B, B, B) } else { sev(W, W, B) };
        let id_base = format!("linux-{}", d.module.replace('_', "-"));
        let missing = if critical {
            matches!(d.state, DriverState::Missing | DriverState::NotInInitramfs)
        } else {
            // The network driver loads after the switch to the root: a module file will do.
            d.state == DriverState::Missing
        };
        if missing {
            let why = match d.state {
                DriverState::NotInInitramfs => "is a module that is not in its initramfs",
                _ => "is neither built in nor present as a module",
            };
            findings.add(
                &format!("{id_base}-missing"),
                if critical { "L1" } else { "L2" },
                sevs,
                format!("{} for the default kernel {ver} {why}", d.module),
                location.clone(),
                "Rebuild the initramfs with the Hyper-V drivers (dracut -f --add-drivers \"hv_vmbus hv_storvsc hv_netvsc\"; on Debian add them to /etc/initramfs-tools/modules and run update-initramfs -u).",
            );
        }
        if let Some(where_) = &d.blacklisted {
            findings.add(
                &format!("{id_base}-blacklisted"),
                if critical { "L1" } else { "L2" },
                sevs,
                format!(
                    "{} is blacklisted ({where_}), so it will not load",
                    d.module
                ),
                where_
                    .rsplit_once(':')
                    .and_then(|(p, l)| at(None, p, l.parse().ok())),
                "Remove the blacklist or install line, then rebuild the initramfs.",
            );
        }
    }
}

/// L8: udf and vfat must stay loadable for Azure provisioning.
fn filesystem_driver_findings(findings: &mut Findings, k: &kernels::Kernel, blacklist: &Blacklist) {
    for (module, symbol, id) in [
        ("udf", "CONFIG_UDF_FS", "linux-udf-disabled"),
        ("vfat", "CONFIG_VFAT_FS", "linux-vfat-disabled"),
    ] {
        let why = blacklist
            .find(module)
            .map(|w| format!("blacklisted ({w})"))
            .or_else(|| {
                (k.config_value(symbol) == Some("n"))
                    .then(|| format!("not built ({symbol} is not set)"))
            });
        if let Some(why) = why {
            findings.add(
                id,
                "L8",
                sev(NA, NA, B),
                format!("{module} is {why}: Azure provisioning reads its settings from a {module} medium"),
                None,
                "Remove the blacklist or install line for it from /etc/modprobe.d.",
            );
        }
    }
}

fn device_name_findings(
    findings: &mut Findings,
    view: &View<'_>,
    root: &Volume,
    fstab: &[devices::TabEntry],
    bootloader: &boot::Bootloader,
    default_entry: Option<&boot::BootEntry>,
) {
    for e in fstab {
        let (Some(spec), Some(point)) = (e.fields.first(), e.fields.get(1)) else {
            continue;
        };
        if let DeviceName::HardwareBound(why) = classify(spec) {
            let is_root = point == "/";
            findings.add(
                if is_root {
                    "linux-fstab-root-device-name"
                } else {
                    "linux-fstab-device-name"
                },
                "L4",
                if is_root { sev(B, B, B) } else { sev(W, W, W) },
                format!("fstab mounts {point} from {why}"),
                at(Some(&root.name), "/etc/fstab", Some(e.line)),
                "Use UUID= (from blkid) instead of the device name.",
            );
        }
    }
    if let Some(text) = view.text("/etc/crypttab") {
        for e in parse_tab(&text) {
            if let Some(dev) = e.fields.get(1)
                && let DeviceName::HardwareBound(why) = classify(dev)
            {
                findings.add(
                    "linux-crypttab-device-name",
                    "L4",
                    sev(W, W, W),
                    format!(
                        "crypttab opens {} from {why}",
                        e.fields.first().map(String::as_str).unwrap_or("?")
                    ),
                    at(Some(&root.name), "/etc/crypttab", Some(e.line)),
                    "Use UUID= of the LUKS device instead of the device name.",
                );
            }
        }
    }
    let mut lines: Vec<(String, usize, String)> = bootloader.cmdline_sources.clone();
    if let Some(e) = default_entry {
        lines.push((e.source.0.clone(), e.source.1, e.options.clone()));
    }
    for (path, line, text) in lines {
        for word in text.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            if key != "root" && key != "resume" {
                continue;
            }
            if let DeviceName::HardwareBound(why) = classify(value) {
                let is_root = key == "root";
                let volume = view
                    .resolve(&path)
                    .ok()
                    .and_then(|p| view.volume_of(&p))
                    .map(|v| v.name.clone());
                findings.add(
                    if is_root {
                        "linux-cmdline-root-device-name"
                    } else {
                        "linux-cmdline-resume-device-name"
                    },
                    "L4",
                    if is_root { sev(B, B, B) } else { sev(W, W, W) },
                    format!("the kernel command line's {key}= is {why}"),
                    at(volume.as_deref(), &path, Some(line)),
                    "Use root=UUID=... (or the LVM name) and regenerate the GRUB configuration.",
                );
            }
        }
    }
}

fn lvm_devices_findings(findings: &mut Findings, view: &View<'_>, root: &Volume) {
    let path = "/etc/lvm/devices/system.devices";
    let Some(text) = view.text(path) else {
        return;
    };
    let mut other = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') || !line.contains("IDTYPE=") {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if lower.contains("6000c29") || lower.contains("vmware") {
            findings.add(
                "linux-lvm-devices-file-vmware",
                "L5",
                sev(B, B, B),
                "the LVM devices file admits physical volumes by VMware disk IDs; LVM will ignore the disk after the move".into(),
                at(Some(&root.name), path, Some(i + 1)),
                "Delete /etc/lvm/devices/system.devices (or run vgimportdevices -a on the new platform), then rebuild the initramfs.",
            );
            return;
        }
        if other.is_none()
            && !lower.contains("idtype=lvmlv_uuid")
            && !lower.contains("idtype=mpath_uuid")
            && !lower.contains("idtype=md_uuid")
        {
            other = Some(i + 1);
        }
    }
    if let Some(line) = other {
        findings.add(
            "linux-lvm-devices-file",
            "L5",
            sev(W, W, W),
            "the LVM devices file admits physical volumes by hardware IDs that will change".into(),
            at(Some(&root.name), path, Some(line)),
            "Delete /etc/lvm/devices/system.devices before the move, or regenerate it after.",
        );
    }
}

fn network_findings(findings: &mut Findings, view: &View<'_>) {
    for f in network::scan(view) {
        let volume = view
            .resolve(&f.path)
            .ok()
            .and_then(|p| view.volume_of(&p))
            .map(|v| v.name.clone());
        let (id, fix) = match f.issue {
            NetIssue::MacPinned => (
                "linux-net-mac-pinned",
                "Remove the MAC address match so the new NIC is configured (Azure: match on driver hv_netvsc or use DHCP on eth0).",
            ),
            NetIssue::InterfaceName => (
                "linux-net-interface-name",
                "Configure the interface by a name the new NIC will have (eth0 on Azure) or match all Ethernet devices.",
            ),
            NetIssue::StaticIpv4 => (
                "linux-net-static-ipv4",
                "Switch the interface to DHCP; Azure assigns the address.",
            ),
        };
        let what = match f.issue {
            NetIssue::MacPinned => {
                "the network configuration is pinned to the old NIC's MAC address"
            }
            NetIssue::InterfaceName => {
                "the network configuration names a VMware-era interface that will not exist"
            }
            NetIssue::StaticIpv4 => "a static IPv4 address is configured",
        };
        findings.add(
            id,
            "L6",
            sev(W, W, B),
            format!("{what}: {}", f.detail),
            at(volume.as_deref(), &f.path, f.line),
            fix,
        );
    }
}

fn azure_agent_findings(findings: &mut Findings, view: &View<'_>, cmdline: &str) {
    let waagent = [
        "/usr/sbin/waagent",
        "/usr/bin/waagent",
        "/usr/local/sbin/waagent",
    ]
    .iter()
    .any(|p| view.exists(p))
        && view.exists("/etc/waagent.conf");
    let waagent_enabled = ["waagent.service", "walinuxagent.service"]
        .iter()
        .any(|u| view.exists(&format!("/etc/systemd/system/multi-user.target.wants/{u}")));
    let cloud_init = ["/usr/bin/cloud-init", "/usr/local/bin/cloud-init"]
        .iter()
        .any(|p| view.exists(p));
    let cloud_init_enabled = cloud_init
        && !view.exists("/etc/cloud/cloud-init.disabled")
        && !cmdline.contains("cloud-init=disabled");
    if !waagent && !cloud_init {
        findings.add(
            "linux-azure-agent-missing",
            "L7",
            sev(NA, NA, B),
            "neither the Azure Linux Agent (waagent) nor cloud-init is installed: Azure cannot provision the VM or report it ready".into(),
            None,
            "Install WALinuxAgent or cloud-init (with the Azure datasource) before the move.",
        );
    } else if !(cloud_init_enabled || waagent && waagent_enabled) {
        findings.add(
            "linux-azure-agent-disabled",
            "L7",
            sev(NA, NA, W),
            "the Azure agent is installed but not enabled (no waagent unit in multi-user.target.wants, cloud-init disabled or absent)".into(),
            None,
            "Enable waagent.service (walinuxagent.service on Ubuntu) or cloud-init.",
        );
    }
    if cloud_init {
        let mut files = vec![(
            "/etc/cloud/cloud.cfg".to_string(),
            view.text("/etc/cloud/cloud.cfg").unwrap_or_default(),
        )];
        files.extend(view.texts_in("/etc/cloud/cloud.cfg.d", ".cfg"));
        // The last file (in order) setting datasource_list wins, as cloud-init merges them.
        let mut setting = None;
        for (path, text) in &files {
            let mut lines = text.lines().enumerate();
            while let Some((i, line)) = lines.next() {
                if let Some(value) = line.trim_start().strip_prefix("datasource_list:") {
                    let mut value = value.trim().to_string();
                    // A block list on the following lines.
                    if value.is_empty() {
                        for (_, next) in lines.by_ref() {
                            match next.trim().strip_prefix("- ") {
                                Some(item) => value.push_str(&format!(" {item}")),
                                None => break,
                            }
                        }
                    }
                    setting = Some((path.clone(), i + 1, value));
                }
            }
        }
        if let Some((path, line, value)) = setting
            && !value.contains("Azure")
        {
            findings.add(
                "linux-cloud-init-no-azure-datasource",
                "L7",
                sev(NA, NA, W),
                format!(
                    "cloud-init's datasource_list ({}) does not include Azure",
                    value.trim()
                ),
                at(None, &path, Some(line)),
                "Set datasource_list: [ Azure ] in /etc/cloud/cloud.cfg.d/90-azure.cfg.",
            );
        }
    }
}

fn swap_findings(
    findings: &mut Findings,
    root: &Volume,
    fstab: &[devices::TabEntry],
    volumes: &[Volume],
) {
    let mut any = false;
    for e in fstab {
        if e.fields.get(2).map(String::as_str) == Some("swap")
            && !e.fields.first().is_some_and(|s| s.contains("zram"))
        {
            any = true;
            findings.add(
                "linux-swap-on-os-disk",
                "L9",
                sev(NA, NA, W),
                format!("swap on {} is on the OS disk; Azure wants swap on the resource disk", e.fields.first().map(String::as_str).unwrap_or("?")),
                at(Some(&root.name), "/etc/fstab", Some(e.line)),
                "Remove the swap entry and let waagent or cloud-init create swap on the resource disk.",
            );
        }
    }
    if !any && let Some(v) = volumes.iter().find(|v| v.content == Content::Swap) {
        findings.add(
            "linux-swap-on-os-disk",
            "L9",
            sev(NA, NA, W),
            format!("{} is a swap partition on the OS disk; Azure wants swap on the resource disk", v.name),
            None,
            "Remove the swap partition and let waagent or cloud-init create swap on the resource disk.",
        );
    }
}

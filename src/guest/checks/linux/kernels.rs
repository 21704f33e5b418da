//! Installed kernels and, for each, whether hv_vmbus, hv_storvsc and hv_netvsc are there
//! at boot: built in (modules.builtin, `/boot/config-<ver>`) or a module inside the
//! kernel's initramfs (GUEST.md 1.3).

use super::super::view::View;
use super::boot::compare_versions;
use crate::guest::initramfs::{self, Limits, Listing};
use crate::guest::report::DriverState;

/// Module, its file under kernel/, its Kconfig symbol.
pub const HV_DRIVERS: [(&str, &str, &str); 3] = [
    ("hv_vmbus", "kernel/drivers/hv/hv_vmbus.ko", "CONFIG_HYPERV"),
    (
        "hv_storvsc",
        "kernel/drivers/scsi/hv_storvsc.ko",
        "CONFIG_HYPERV_STORAGE",
    ),
    (
        "hv_netvsc",
        "kernel/drivers/net/hyperv/hv_netvsc.ko",
        "CONFIG_HYPERV_NET",
    ),
];

/// An initramfs image larger than this is not read (real ones are tens of MiB).
pub const INITRAMFS_FILE_LIMIT: u64 = 512 << 20;

/// One installed kernel as found on the root.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub version: String,
    pub image: Option<String>,
    pub modules_dir: Option<String>,
    pub initramfs: Option<String>,
    /// Lines of modules.builtin (and names from modules.builtin.modinfo), normalised.
    pub builtin: Vec<String>,
    /// `/boot/config-<ver>` as (symbol, value).
    pub config: Vec<(String, String)>,
    /// Module files (normalised names) present under `/lib/modules/<ver>`.
    pub module_files: Vec<String>,
}

impl Kernel {
    pub fn config_value(&self, symbol: &str) -> Option<&str> {
        self.config
            .iter()
            .find(|(k, _)| k == symbol)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the driver is compiled into this kernel.
    pub fn built_in(&self, module: &str, symbol: &str) -> bool {
        self.builtin.iter().any(|b| b == module) || self.config_value(symbol) == Some("y")
    }
}

/// Kernel versions from `/boot/vmlinuz-*` and `/lib/modules/*`, newest first.
pub fn find(view: &View<'_>) -> Vec<Kernel> {
    let mut versions: Vec<String> = Vec::new();
    for name in view.names("/boot") {
        if let Some(v) = ["vmlinuz-", "vmlinux-", "kernel-"]
            .iter()
            .find_map(|p| name.strip_prefix(p))
            && !v.contains("rescue")
            && !versions.iter().any(|x| x == v)
        {
            versions.push(v.to_string());
        }
    }
    for name in view.names("/lib/modules") {
        if !versions.contains(&name) {
            versions.push(name);
        }
    }
    versions.sort_by(|a, b| compare_versions(b, a));
    versions.truncate(64);
    versions.into_iter().map(|v| describe(view, v)).collect()
}

fn describe(view: &View<'_>, version: String) -> Kernel {
    let image = ["vmlinuz-", "vmlinux-", "kernel-"]
        .iter()
        .map(|p| format!("/boot/{p}{version}"))
        .find(|p| view.exists(p));
    let modules_dir = ["/lib/modules", "/usr/lib/modules"]
        .iter()
        .map(|d| format!("{d}/{version}"))
        .find(|p| view.exists(p));
    // LISA's order: SUSE, RHEL/Fedora, Debian/Ubuntu (GUEST.md 1.4).
    let initramfs = [
        format!("/boot/initrd-{version}"),
        format!("/boot/initramfs-{version}.img"),
        format!("/boot/initrd.img-{version}"),
    ]
    .into_iter()
    .find(|p| view.exists(p));
    let mut builtin = Vec::new();
    let mut module_files = Vec::new();
    if let Some(dir) = &modules_dir {
        if let Some(text) = view.text(&format!("{dir}/modules.builtin")) {
            builtin.extend(text.lines().filter_map(module_name_of_path));
        }
        if let Ok(bytes) = view.read(&format!("{dir}/modules.builtin.modinfo"), 8 << 20) {
            for record in bytes.split(|&b| b == 0) {
                if let Some(dot) = record.iter().position(|&b| b == b'.') {
                    let name = super::modprobe::normalise(&String::from_utf8_lossy(&record[..dot]));
                    if !builtin.contains(&name) {
                        builtin.push(name);
                    }
                }
            }
        }
        // modules.dep lists every module file; fall back to the known paths.
        if let Ok(bytes) = view.read(&format!("{dir}/modules.dep"), 16 << 20) {
            let text = String::from_utf8_lossy(&bytes);
            module_files.extend(
                text.lines()
                    .filter_map(|l| module_name_of_path(l.split(':').next().unwrap_or(""))),
            );
        }
        for (module, path, _) in HV_DRIVERS {
            if !module_files.iter().any(|m| m == module)
                && ["", ".xz", ".zst", ".gz"]
                    .iter()
                    .any(|ext| view.exists(&format!("{dir}/{path}{ext}")))
            {
                module_files.push(module.to_string());
            }
        }
    }
    let config_text = view
        .text(&format!("/boot/config-{version}"))
        .or_else(|| {
            modules_dir
                .as_ref()
                .and_then(|d| view.text(&format!("{d}/config")))
        })
        .or_else(|| view.text(&format!("/usr/lib/kernel/config-{version}")))
        .unwrap_or_default();
    let config = config_text
        .lines()
        .filter_map(|l| {
            if let Some(sym) = l
                .strip_prefix("# ")
                .and_then(|r| r.strip_suffix(" is not set"))
            {
                return Some((sym.to_string(), "n".to_string()));
            }
            let (k, v) = l.split_once('=')?;
            k.starts_with("CONFIG_")
                .then(|| (k.to_string(), v.to_string()))
        })
        .collect();
    Kernel {
        version,
        image,
        modules_dir,
        initramfs,
        builtin,
        config,
        module_files,
    }
}

/// `kernel/drivers/hv/hv_vmbus.ko.xz` -> `hv_vmbus`.
pub fn module_name_of_path(path: &str) -> Option<String> {
    let file = path.trim().rsplit('/').next()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz", ".o"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    Some(super::modprobe::normalise(stem))
}

/// Lists a kernel's initramfs. Err holds why it could not be read.
pub fn list_initramfs(
    view: &View<'_>,
    path: &str,
    cancelled: &dyn Fn() -> bool,
) -> Result<Listing, String> {
    let bytes = view
        .read(path, INITRAMFS_FILE_LIMIT)
        .map_err(|e| e.to_string())?;
    initramfs::list(
        &bytes,
        &Limits::default(),
        &super::modprobe::is_initramfs_modprobe_conf,
        cancelled,
    )
    .map_err(|e| e.to_string())
}

/// Whether the initramfs holds `module` for `version` (under lib/ or usr/lib/modules).
pub fn initramfs_has(listing: &Listing, version: &str, module: &str) -> bool {
    let prefixes = [
        format!("lib/modules/{version}/"),
        format!("usr/lib/modules/{version}/"),
    ];
    listing.entries.iter().any(|e| {
        prefixes.iter().any(|p| e.name.starts_with(p.as_str()))
            && module_name_of_path(&e.name).as_deref() == Some(module)
    })
}

/// A driver's state for a kernel, from what was found.
pub fn driver_state(
    kernel: &Kernel,
    module: &str,
    symbol: &str,
    listing: Option<&Listing>,
) -> DriverState {
    if kernel.built_in(module, symbol) {
        return DriverState::BuiltIn;
    }
    let is_module =
        kernel.module_files.iter().any(|m| m == module) || kernel.config_value(symbol) == Some("m");
    match listing {
        Some(l) if initramfs_has(l, &kernel.version, module) => DriverState::InInitramfs,
        Some(_) if is_module => DriverState::NotInInitramfs,
        Some(_) => DriverState::Missing,
        None if is_module => DriverState::ModuleOnly,
        None => DriverState::Missing,
    }
}

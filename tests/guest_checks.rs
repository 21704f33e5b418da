//! The readiness catalogue over guests laid out as host directories: good Debian-like,
//! RHEL-like and Windows-like guests report nothing blocking, and each guest that differs
//! by one defect reports exactly that finding with the catalogue's severities.

#[path = "common/guest_hive.rs"]
mod guest_hive;
#[path = "common/guest_initramfs.rs"]
mod guest_initramfs;
#[path = "common/guest_tools.rs"]
mod guest_tools;
#[path = "common/host_dir_fs.rs"]
mod host_dir_fs;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_hive::{HVal, HiveKeys, IFACE, build_hive, system_hive};
use guest_initramfs::{Compressor, initramfs};
use host_dir_fs::HostDirFs;
use vdconv::guest::checks::{InspectOptions, inspect};
use vdconv::guest::report::{Firmware, InspectReport, Severities, Severity};
use vdconv::guest::{Content, Volume};
use vdconv::target::Target;

const ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
const BIOS_BOOT: &str = "21686148-6449-6e6f-744e-656564454649";
const LINUX_FS: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
const B: Option<Severity> = Some(Severity::Block);
const W: Option<Severity> = Some(Severity::Warn);
const I: Option<Severity> = Some(Severity::Info);
const NA: Option<Severity> = None;
const ALL: [Target; 3] = [Target::HypervGen1, Target::HypervGen2, Target::Azure];

fn sev(gen1: Option<Severity>, gen2: Option<Severity>, azure: Option<Severity>) -> Severities {
    Severities::new(gen1, gen2, azure)
}

fn tools() -> bool {
    guest_tools::have_cpio()
        & guest_tools::have_hivex()
        & Compressor::Zstd.available()
        & Compressor::Gzip.available()
}

/// A guest file tree under construction.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new(root: PathBuf) -> Tree {
        fs::create_dir_all(&root).unwrap();
        Tree { root }
    }

    fn write(&self, path: &str, data: impl AsRef<[u8]>) -> &Self {
        let p = self.root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&p);
        fs::write(p, data).unwrap();
        self
    }

    fn link(&self, path: &str, target: &str) -> &Self {
        let p = self.root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&p);
        std::os::unix::fs::symlink(target, p).unwrap();
        self
    }

    fn remove(&self, path: &str) -> &Self {
        fs::remove_file(self.root.join(path.trim_start_matches('/'))).unwrap();
        self
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

fn volume(name: &str, content: Content, fs: Option<HostDirFs>, ptype: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        source: Arc::new(vec![0u8; 4096]),
        disk_offset: 0,
        partition_type: ptype.map(str::to_string),
        part_uuid: None,
        part_label: None,
        lvm: None,
        content,
        fs: fs.map(|f| Box::new(f) as Box<dyn vdconv::guest::GuestFs>),
        problem: None,
    }
}

fn run(volumes: &[Volume]) -> InspectReport {
    let started = Instant::now();
    let report = inspect(volumes, &InspectOptions::default());
    assert!(started.elapsed() < Duration::from_secs(20));
    // The report serialises, and renders.
    serde_json::to_string(&report).unwrap();
    report.render_text(Some(Target::Azure));
    report
}

fn ids(r: &InspectReport) -> BTreeSet<String> {
    r.findings.iter().map(|f| f.id.clone()).collect()
}

fn assert_no_block(r: &InspectReport, targets: &[Target]) {
    for &t in targets {
        assert!(!r.blocks(t), "{t:?} blocked:\n{}", r.render_text(Some(t)));
    }
}

/// The defect's guest reports exactly the ids `want` beyond the good guest's, each with
/// the given severities.
fn assert_exactly(good: &InspectReport, bad: &InspectReport, want: &[(&str, Severities)]) {
    let new: BTreeSet<String> = ids(bad).difference(&ids(good)).cloned().collect();
    let expected: BTreeSet<String> = want.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(new, expected, "\n{}", bad.render_text(None));
    for (id, s) in want {
        for f in bad.with_id(id) {
            assert_eq!(&f.severity, s, "{id}: {}", f.message);
            assert!(!f.fix.is_empty());
        }
    }
}

// ---------------------------------------------------------------- Debian-like guest

const DEB_VER: &str = "6.1.0-18-amd64";
const DEB_ROOT_UUID: &str = "5f2b8c1e-7a4d-4f8e-9c3b-2d1e0f9a8b7c";
const DEB_ESP_UUID: &str = "A1B2-C3D4";

fn hv_module_paths(ver: &str, ext: &str) -> Vec<String> {
    let m = format!("usr/lib/modules/{ver}/kernel/drivers");
    vec![
        format!("{m}/hv/hv_vmbus.ko{ext}"),
        format!("{m}/scsi/hv_storvsc.ko{ext}"),
        format!("{m}/net/hyperv/hv_netvsc.ko{ext}"),
    ]
}

fn debian_initrd(tree: &Tree, modules: &[String], extra: &[(&str, &[u8])]) {
    let mut files: Vec<(&str, &[u8])> = modules
        .iter()
        .map(|m| (m.as_str(), b"\x7fELF".as_slice()))
        .collect();
    files.push(("init", b"#!/bin/sh\n"));
    files.push((
        "etc/modprobe.d/local.conf",
        b"options hv_storvsc storvsc_ringbuffer_size=131072\n",
    ));
    files.extend_from_slice(extra);
    tree.write(
        &format!("/boot/initrd.img-{DEB_VER}"),
        initramfs(&files, Compressor::Zstd),
    );
}

fn debian(dir: &Path) -> (Tree, Tree) {
    let root = Tree::new(dir.join("root"));
    let esp = Tree::new(dir.join("esp"));
    root.write("/etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n")
        .write("/etc/fstab", format!("# <file system> <mount point> <type> <options> <dump> <pass>\nUUID={DEB_ROOT_UUID} / ext4 errors=remount-ro 0 1\nUUID={DEB_ESP_UUID} /boot/efi vfat umask=0077 0 1\ntmpfs /tmp tmpfs defaults 0 0\n"))
        .link("/lib", "usr/lib")
        .write(&format!("/boot/vmlinuz-{DEB_VER}"), "kernel")
        .write(&format!("/boot/config-{DEB_VER}"), "CONFIG_HYPERV=m\nCONFIG_HYPERV_STORAGE=m\nCONFIG_HYPERV_NET=m\nCONFIG_UDF_FS=m\nCONFIG_VFAT_FS=m\n")
        .write(&format!("/usr/lib/modules/{DEB_VER}/modules.builtin"), "kernel/fs/ext4/ext4.ko\n")
        .write(&format!("/usr/lib/modules/{DEB_VER}/modules.dep"), "kernel/drivers/hv/hv_vmbus.ko:\nkernel/drivers/scsi/hv_storvsc.ko: kernel/drivers/hv/hv_vmbus.ko\nkernel/drivers/net/hyperv/hv_netvsc.ko: kernel/drivers/hv/hv_vmbus.ko\n")
        .write("/boot/grub/grub.cfg", format!("set default=\"0\"\nmenuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-{DEB_ROOT_UUID}' {{\n\tlinux\t/boot/vmlinuz-{DEB_VER} root=UUID={DEB_ROOT_UUID} ro quiet console=tty0 console=ttyS0,115200n8\n\tinitrd\t/boot/initrd.img-{DEB_VER}\n}}\n"))
        .write("/etc/default/grub", "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200n8\"\n")
        .write("/etc/netplan/50-cloud-init.yaml", "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n")
        .write("/usr/bin/cloud-init", "#!/usr/bin/python3\n")
        .write("/etc/cloud/cloud.cfg", "datasource_list: [ Azure, None ]\n")
        .write("/etc/modprobe.d/blacklist.conf", "blacklist floppy\n");
    for m in hv_module_paths(DEB_VER, "") {
        root.write(&m, "\x7fELF");
    }
    debian_initrd(&root, &hv_module_paths(DEB_VER, ""), &[]);
    esp.write("/EFI/BOOT/BOOTX64.EFI", "MZ")
        .write("/EFI/debian/shimx64.efi", "MZ")
        .write("/EFI/debian/grubx64.efi", "MZ");
    (root, esp)
}

fn debian_volumes(root: &Tree, esp: &Tree) -> Vec<Volume> {
    vec![
        volume("partition 1", Content::NoFileSystem, None, Some(BIOS_BOOT)),
        volume(
            "partition 2",
            Content::Fat,
            Some(HostDirFs::new(&esp.root, "vfat", Some(DEB_ESP_UUID), None)),
            Some(ESP),
        ),
        volume(
            "partition 3",
            Content::Ext,
            Some(HostDirFs::new(
                &root.root,
                "ext4",
                Some(DEB_ROOT_UUID),
                None,
            )),
            Some(LINUX_FS),
        ),
    ]
}

#[test]
fn debian_guest_and_its_defects() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, esp) = debian(dir.path());
    let good = run(&debian_volumes(&root, &esp));
    assert_no_block(&good, &ALL);
    assert!(
        good.findings
            .iter()
            .all(|f| f.severity.max() < Some(Severity::Warn)),
        "{}",
        good.render_text(None)
    );
    assert_eq!(good.os[0].name.as_deref(), Some("Debian GNU/Linux"));
    assert_eq!(good.os[0].version.as_deref(), Some("12"));
    assert_eq!(good.default_kernel.as_deref(), Some(DEB_VER));
    assert_eq!(good.firmware.boots_with, Firmware::Both);
    assert!(
        good.os[0]
            .mounts
            .iter()
            .any(|(p, v)| p == "/boot/efi" && v == "partition 2")
    );
    let k = &good.kernels[0];
    assert!(
        k.default
            && k.drivers
                .iter()
                .all(|d| d.state == vdconv::guest::report::DriverState::InInitramfs),
        "{k:?}"
    );

    // Each defect on a fresh copy of the good guest.
    type Defect = (
        &'static str,
        fn(&Tree, &Tree),
        Vec<(&'static str, Severities)>,
    );
    let defects: Vec<Defect> = vec![
        (
            "initramfs without hv_storvsc",
            |r, _| {
                let mods: Vec<String> = hv_module_paths(DEB_VER, "")
                    .into_iter()
                    .filter(|m| !m.contains("storvsc"))
                    .collect();
                debian_initrd(r, &mods, &[]);
            },
            vec![("linux-hv-storvsc-missing", sev(B, B, B))],
        ),
        (
            "blacklist hv_vmbus",
            |r, _| {
                r.write("/etc/modprobe.d/hyperv.conf", "blacklist hv_vmbus\n");
            },
            vec![("linux-hv-vmbus-blacklisted", sev(B, B, B))],
        ),
        (
            "install hv_storvsc /bin/true inside the initramfs",
            |r, _| {
                debian_initrd(
                    r,
                    &hv_module_paths(DEB_VER, ""),
                    &[(
                        "etc/modprobe.d/nohv.conf",
                        b"install hv_storvsc /bin/true\n",
                    )],
                );
            },
            vec![("linux-hv-storvsc-blacklisted", sev(B, B, B))],
        ),
        (
            "no hv_netvsc anywhere",
            |r, _| {
                let mods: Vec<String> = hv_module_paths(DEB_VER, "")
                    .into_iter()
                    .filter(|m| !m.contains("netvsc"))
                    .collect();
                debian_initrd(r, &mods, &[]);
                r.remove(&hv_module_paths(DEB_VER, "")[2]);
                r.write(
                    &format!("/usr/lib/modules/{DEB_VER}/modules.dep"),
                    "kernel/drivers/hv/hv_vmbus.ko:\n",
                );
                r.write(
                    &format!("/boot/config-{DEB_VER}"),
                    "CONFIG_HYPERV=m\nCONFIG_HYPERV_STORAGE=m\n# CONFIG_HYPERV_NET is not set\n",
                );
            },
            vec![("linux-hv-netvsc-missing", sev(W, W, B))],
        ),
        (
            "fstab root on /dev/sda2",
            |r, _| {
                r.write("/etc/fstab", format!("/dev/sda2 / ext4 errors=remount-ro 0 1\nUUID={DEB_ESP_UUID} /boot/efi vfat umask=0077 0 1\n"));
            },
            vec![("linux-fstab-root-device-name", sev(B, B, B))],
        ),
        (
            "fstab data disk by VMware by-id",
            |r, _| {
                r.write("/etc/fstab", format!("UUID={DEB_ROOT_UUID} / ext4 errors=remount-ro 0 1\nUUID={DEB_ESP_UUID} /boot/efi vfat umask=0077 0 1\n/dev/disk/by-id/scsi-36000c29a1b2c3d4e5f60718293a4b5c6-part1 /data ext4 defaults 0 2\n"));
            },
            vec![("linux-fstab-device-name", sev(W, W, W))],
        ),
        (
            "grub root=/dev/sda2",
            |r, _| {
                r.write("/boot/grub/grub.cfg", format!("menuentry 'Debian GNU/Linux' {{\n\tlinux\t/boot/vmlinuz-{DEB_VER} root=/dev/sda2 ro console=ttyS0\n\tinitrd\t/boot/initrd.img-{DEB_VER}\n}}\n"));
            },
            vec![("linux-cmdline-root-device-name", sev(B, B, B))],
        ),
        (
            "netplan matches a MAC",
            |r, _| {
                r.write("/etc/netplan/50-cloud-init.yaml", "network:\n  version: 2\n  ethernets:\n    nic0:\n      match:\n        macaddress: \"00:50:56:9a:bc:de\"\n      set-name: eth0\n      dhcp4: true\n");
            },
            vec![("linux-net-mac-pinned", sev(W, W, B))],
        ),
        (
            "netplan static on ens192",
            |r, _| {
                r.write("/etc/netplan/01-netcfg.yaml", "network:\n  version: 2\n  ethernets:\n    ens192:\n      dhcp4: no\n      addresses:\n        - 192.168.10.20/24\n      routes:\n        - to: default\n          via: 192.168.10.1\n");
            },
            vec![
                ("linux-net-interface-name", sev(W, W, B)),
                ("linux-net-static-ipv4", sev(W, W, B)),
            ],
        ),
        (
            "ifupdown static",
            |r, _| {
                r.write("/etc/network/interfaces", "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n  address 10.1.2.3/24\n");
            },
            vec![("linux-net-static-ipv4", sev(W, W, B))],
        ),
        (
            "udev persistent net rules",
            |r, _| {
                r.write("/etc/udev/rules.d/70-persistent-net.rules", "SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"00:50:56:9a:bc:de\", NAME=\"eth0\"\n");
            },
            vec![("linux-net-mac-pinned", sev(W, W, B))],
        ),
        (
            "no cloud-init nor waagent",
            |r, _| {
                r.remove("/usr/bin/cloud-init");
            },
            vec![("linux-azure-agent-missing", sev(NA, NA, B))],
        ),
        (
            "cloud-init without the Azure datasource",
            |r, _| {
                r.write(
                    "/etc/cloud/cloud.cfg.d/99-vmware.cfg",
                    "datasource_list:\n  - VMware\n  - OVF\n",
                );
            },
            vec![("linux-cloud-init-no-azure-datasource", sev(NA, NA, W))],
        ),
        (
            "udf blacklisted",
            |r, _| {
                r.write("/etc/modprobe.d/cis.conf", "install udf /bin/false\n");
            },
            vec![("linux-udf-disabled", sev(NA, NA, B))],
        ),
        (
            "swap partition in fstab",
            |r, _| {
                r.write("/etc/fstab", format!("UUID={DEB_ROOT_UUID} / ext4 errors=remount-ro 0 1\nUUID={DEB_ESP_UUID} /boot/efi vfat umask=0077 0 1\nUUID=0a1b2c3d-0000-4000-8000-000000000001 none swap sw 0 0\n"));
            },
            vec![("linux-swap-on-os-disk", sev(NA, NA, W))],
        ),
        (
            "no console=ttyS0",
            |r, _| {
                r.write("/boot/grub/grub.cfg", format!("menuentry 'Debian GNU/Linux' {{\n\tlinux\t/boot/vmlinuz-{DEB_VER} root=UUID={DEB_ROOT_UUID} ro quiet\n\tinitrd\t/boot/initrd.img-{DEB_VER}\n}}\n"));
            },
            vec![("linux-serial-console-missing", sev(NA, NA, W))],
        ),
        (
            "no UEFI fallback loader",
            |_, e| {
                e.remove("/EFI/BOOT/BOOTX64.EFI");
            },
            vec![("firmware-uefi-fallback-missing", sev(NA, B, NA))],
        ),
        (
            "no shim",
            |_, e| {
                e.remove("/EFI/debian/shimx64.efi");
            },
            vec![("linux-secure-boot-shim-missing", sev(NA, W, I))],
        ),
        (
            "LVM devices file with a VMware WWID",
            |r, _| {
                r.write("/etc/lvm/devices/system.devices", "# LVM uses devices listed in this file.\nVERSION=1.1.2\nIDTYPE=sys_wwid IDNAME=naa.6000c29a1b2c3d4e5f60718293a4b5c6 DEVNAME=/dev/sda3 PVID=abc PART=3\n");
            },
            vec![("linux-lvm-devices-file-vmware", sev(B, B, B))],
        ),
        (
            "an initramfs whose cpio header claims 4 GiB",
            |r, _| {
                let mut image = format!("070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}", 1, 0o100644, 0, 0, 1, 0, u32::MAX, 0, 0, 0, 0, 5, 0).into_bytes();
                image.extend_from_slice(b"huge\0\0\0\0");
                image.extend_from_slice(&[0x55; 256]);
                r.write(&format!("/boot/initrd.img-{DEB_VER}"), image);
            },
            vec![("linux-initramfs-unreadable", sev(W, W, W))],
        ),
    ];
    for (i, (what, apply, want)) in defects.iter().enumerate() {
        let d = dir.path().join(format!("defect{i}"));
        let (r, e) = debian(&d);
        apply(&r, &e);
        let started = Instant::now();
        let bad = run(&debian_volumes(&r, &e));
        assert!(started.elapsed() < Duration::from_secs(2), "{what}: slow");
        eprintln!("checked: {what}");
        assert_exactly(&good, &bad, want);
    }
}

// ---------------------------------------------------------------- RHEL-like guest

const EL_NEW: &str = "5.14.0-362.8.1.el9_3.x86_64";
const EL_OLD: &str = "5.14.0-70.13.1.el9_0.x86_64";
const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";
const EL_BOOT_UUID: &str = "7e1c7d6a-1111-4222-8333-944455556666";
const EL_ESP_UUID: &str = "5A6B-7C8D";

fn rhel_initramfs(boot: &Tree, ver: &str, with_hv: bool) {
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("init".into(), b"systemd".to_vec()),
        (
            format!("usr/lib/modules/{ver}/kernel/drivers/scsi/vmw_pvscsi.ko.xz"),
            b"x".to_vec(),
        ),
    ];
    if with_hv {
        for m in hv_module_paths(ver, ".xz") {
            files.push((m, b"x".to_vec()));
        }
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    boot.write(
        &format!("/initramfs-{ver}.img"),
        initramfs(&refs, Compressor::Gzip),
    );
}

fn rhel(dir: &Path) -> (Tree, Tree, Tree) {
    let root = Tree::new(dir.join("root"));
    let boot = Tree::new(dir.join("boot"));
    let esp = Tree::new(dir.join("esp"));
    root.write("/etc/os-release", "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"9.3 (Plow)\"\nID=\"rhel\"\nVERSION_ID=\"9.3\"\n")
        .write("/etc/fstab", format!("/dev/mapper/rhel-root / xfs defaults 0 0\nUUID={EL_BOOT_UUID} /boot xfs defaults 0 0\nUUID={EL_ESP_UUID} /boot/efi vfat umask=0077,shortname=winnt 0 2\n"))
        .link("/lib", "usr/lib")
        .write("/etc/default/grub", "GRUB_TIMEOUT=5\nGRUB_DEFAULT=saved\nGRUB_CMDLINE_LINUX=\"resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root console=ttyS0,115200\"\nGRUB_ENABLE_BLSCFG=true\n")
        .write("/etc/sysconfig/network-scripts/ifcfg-eth0", "DEVICE=eth0\nBOOTPROTO=dhcp\nONBOOT=yes\nTYPE=Ethernet\n")
        .write("/etc/NetworkManager/system-connections/eth0.nmconnection", "[connection]\nid=eth0\ntype=ethernet\ninterface-name=eth0\n\n[ipv4]\nmethod=auto\n")
        .write("/usr/sbin/waagent", "#!/usr/bin/python3\n")
        .write("/etc/waagent.conf", "Provisioning.Agent=auto\n")
        .write("/usr/lib/systemd/system/waagent.service", "[Unit]\n")
        .link("/etc/systemd/system/multi-user.target.wants/waagent.service", "/usr/lib/systemd/system/waagent.service");
    for ver in [EL_NEW, EL_OLD] {
        for m in hv_module_paths(ver, ".xz") {
            root.write(&m, "x");
        }
        boot.write(&format!("/vmlinuz-{ver}"), "kernel")
            .write(&format!("/config-{ver}"), "CONFIG_HYPERV=m\nCONFIG_HYPERV_STORAGE=m\nCONFIG_HYPERV_NET=m\nCONFIG_UDF_FS=m\nCONFIG_VFAT_FS=m\n")
            .write(
                &format!("/loader/entries/{MACHINE_ID}-{ver}.conf"),
                format!("title Red Hat Enterprise Linux ({ver}) 9.3 (Plow)\nversion {ver}\nlinux /vmlinuz-{ver}\ninitrd /initramfs-{ver}.img $tuned_initrd\noptions root=/dev/mapper/rhel-root ro $kernelopts console=ttyS0,115200\ngrub_users $grub_users\n"),
            );
    }
    rhel_initramfs(&boot, EL_NEW, true);
    rhel_initramfs(&boot, EL_OLD, false);
    boot.write("/grub2/grub.cfg", "set default=\"${saved_entry}\"\nload_env -f ${config_directory}/grubenv\nblscfg\n")
        .write("/grub2/grubenv", format!("# GRUB Environment Block\nsaved_entry={MACHINE_ID}-{EL_NEW}\nkernelopts=resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root\n{}", "#".repeat(200)));
    esp.write("/EFI/BOOT/BOOTX64.EFI", "MZ")
        .write("/EFI/redhat/shimx64.efi", "MZ")
        .write("/EFI/redhat/grubx64.efi", "MZ");
    (root, boot, esp)
}

fn rhel_volumes(root: &Tree, boot: &Tree, esp: &Tree) -> Vec<Volume> {
    let mut lv = volume(
        "LV rhel/root",
        Content::Xfs,
        Some(HostDirFs::new(
            &root.root,
            "xfs",
            Some("11111111-2222-4333-8444-555555555555"),
            None,
        )),
        None,
    );
    lv.lvm = Some(("rhel".into(), "root".into()));
    vec![
        volume("partition 1", Content::NoFileSystem, None, Some(BIOS_BOOT)),
        volume(
            "partition 2",
            Content::Fat,
            Some(HostDirFs::new(&esp.root, "vfat", Some(EL_ESP_UUID), None)),
            Some(ESP),
        ),
        volume(
            "partition 3",
            Content::Xfs,
            Some(HostDirFs::new(&boot.root, "xfs", Some(EL_BOOT_UUID), None)),
            Some(LINUX_FS),
        ),
        volume(
            "partition 4",
            Content::LvmPv,
            None,
            Some("e6d6d379-f507-44c2-a23c-238f2a3df928"),
        ),
        lv,
    ]
}

#[test]
fn rhel_guest_and_its_defects() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, boot, esp) = rhel(dir.path());
    let good = run(&rhel_volumes(&root, &boot, &esp));
    assert_no_block(&good, &ALL);
    assert_eq!(
        good.default_kernel.as_deref(),
        Some(EL_NEW),
        "{}",
        good.render_text(None)
    );
    assert_eq!(good.os[0].id.as_deref(), Some("rhel"));
    assert_eq!(good.kernels.len(), 2);
    // The older kernel's host-only initramfs lacks the drivers: a note, not a block.
    assert_eq!(
        ids(&good).into_iter().collect::<Vec<_>>(),
        ["linux-hv-drivers-missing-other-kernel"],
        "{}",
        good.render_text(None)
    );

    type Defect = (
        &'static str,
        fn(&Tree, &Tree, &Tree),
        Vec<(&'static str, Severities)>,
    );
    let defects: Vec<Defect> = vec![
        (
            "grubenv saves the older kernel, whose host-only initramfs lacks the drivers",
            |_, b, _| {
                b.write(
                    "/grub2/grubenv",
                    format!("saved_entry={MACHINE_ID}-{EL_OLD}\nkernelopts=rd.lvm.lv=rhel/root\n"),
                );
                // hv_netvsc loads from the root after the switch: its module file is enough.
            },
            vec![
                ("linux-hv-vmbus-missing", sev(B, B, B)),
                ("linux-hv-storvsc-missing", sev(B, B, B)),
            ],
        ),
        (
            "system.devices with a VMware WWID",
            |r, _, _| {
                r.write("/etc/lvm/devices/system.devices", "VERSION=1.1.1\nIDTYPE=sys_wwid IDNAME=naa.6000c29d8e7f6a5b4c3d2e1f0a9b8c7d DEVNAME=/dev/sda4 PVID=Xyz PART=4\n");
            },
            vec![("linux-lvm-devices-file-vmware", sev(B, B, B))],
        ),
        (
            "ifcfg with a static IPADDR",
            |r, _, _| {
                r.write(
                    "/etc/sysconfig/network-scripts/ifcfg-eth0",
                    "DEVICE=eth0\nBOOTPROTO=none\nIPADDR=10.20.30.40\nPREFIX=24\nONBOOT=yes\n",
                );
            },
            vec![("linux-net-static-ipv4", sev(W, W, B))],
        ),
        (
            "ifcfg pinned to HWADDR on ens192",
            |r, _, _| {
                r.write(
                    "/etc/sysconfig/network-scripts/ifcfg-ens192",
                    "DEVICE=ens192\nHWADDR=00:50:56:aa:bb:cc\nBOOTPROTO=dhcp\n",
                );
            },
            vec![
                ("linux-net-mac-pinned", sev(W, W, B)),
                ("linux-net-interface-name", sev(W, W, B)),
            ],
        ),
        (
            "keyfile static",
            |r, _, _| {
                r.write("/etc/NetworkManager/system-connections/eth0.nmconnection", "[connection]\nid=eth0\ntype=ethernet\n\n[ipv4]\nmethod=manual\naddress1=10.0.0.9/24,10.0.0.1\n");
            },
            vec![("linux-net-static-ipv4", sev(W, W, B))],
        ),
        (
            "waagent not enabled",
            |r, _, _| {
                r.remove("/etc/systemd/system/multi-user.target.wants/waagent.service");
            },
            vec![("linux-azure-agent-disabled", sev(NA, NA, W))],
        ),
        (
            "kernelopts root on a by-path name",
            |_, b, _| {
                b.write("/grub2/grubenv", format!("saved_entry={MACHINE_ID}-{EL_NEW}\nkernelopts=root=/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part3 ro\n"));
            },
            vec![("linux-cmdline-root-device-name", sev(B, B, B))],
        ),
        (
            "vfat blacklisted by a command-line option",
            |_, b, _| {
                b.write("/grub2/grubenv", format!("saved_entry={MACHINE_ID}-{EL_NEW}\nkernelopts=rd.lvm.lv=rhel/root modprobe.blacklist=vfat\n"));
            },
            vec![("linux-vfat-disabled", sev(NA, NA, B))],
        ),
    ];
    for (i, (what, apply, want)) in defects.iter().enumerate() {
        let d = dir.path().join(format!("defect{i}"));
        let (r, b, e) = rhel(&d);
        apply(&r, &b, &e);
        let bad = run(&rhel_volumes(&r, &b, &e));
        eprintln!("checked: {what}");
        assert_exactly(&good, &bad, want);
    }
}

// ---------------------------------------------------------------- Windows-like guest

/// One registry defect: what, the edit, whether on the UEFI layout, the expected findings.
type RegistryDefect = (
    &'static str,
    fn(&mut HiveKeys),
    bool,
    Vec<(&'static str, Severities)>,
);

fn windows(dir: &Path, edit_system: &dyn Fn(&mut HiveKeys)) -> (Tree, Tree) {
    let c = Tree::new(dir.join("c"));
    let esp = Tree::new(dir.join("esp"));
    c.write("/Windows/System32/cmd.exe", "MZ");
    fs::create_dir_all(c.path("/Windows/System32/config")).unwrap();
    system_hive(&c.path("/Windows/System32/config/SYSTEM"), edit_system);
    build_hive(
        &c.path("/Windows/System32/config/SOFTWARE"),
        &[(
            "Microsoft\\Windows NT\\CurrentVersion",
            vec![
                (
                    "ProductName",
                    HVal::Sz("Windows Server 2022 Datacenter".into()),
                ),
                ("CurrentBuildNumber", HVal::Sz("20348".into())),
                ("EditionID", HVal::Sz("ServerDatacenter".into())),
                ("CurrentMajorVersionNumber", HVal::Dword(10)),
                ("CurrentMinorVersionNumber", HVal::Dword(0)),
            ],
        )],
    );
    esp.write("/EFI/Microsoft/Boot/bootmgfw.efi", "MZ")
        .write("/EFI/Boot/bootx64.efi", "MZ");
    (c, esp)
}

/// Generation 2 / UEFI layout: ESP, MSR, C:.
fn windows_gpt(c: &Tree, esp: &Tree) -> Vec<Volume> {
    vec![
        volume(
            "partition 1",
            Content::Fat,
            Some(HostDirFs::new(&esp.root, "vfat", Some("1A2B-3C4D"), None)),
            Some(ESP),
        ),
        volume(
            "partition 2",
            Content::NoFileSystem,
            None,
            Some("e3c9e316-0b5c-4db8-817d-f92df00215ae"),
        ),
        volume(
            "partition 3",
            Content::Ntfs,
            Some(HostDirFs::new(
                &c.root,
                "ntfs",
                Some("0123456789ABCDEF"),
                None,
            )),
            Some("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"),
        ),
    ]
}

/// Generation 1 / BIOS layout: System Reserved and C: on MBR.
fn windows_mbr(c: &Tree, _esp: &Tree) -> Vec<Volume> {
    vec![
        volume("partition 1", Content::Ntfs, None, Some("0x07")),
        volume(
            "partition 2",
            Content::Ntfs,
            Some(HostDirFs::new(
                &c.root,
                "ntfs",
                Some("0123456789ABCDEF"),
                None,
            )),
            Some("0x07"),
        ),
    ]
}

fn set(
    keys: &mut [(String, Vec<(&'static str, HVal)>)],
    key_suffix: &str,
    name: &'static str,
    v: HVal,
) {
    let k = keys
        .iter_mut()
        .find(|(k, _)| k.ends_with(key_suffix))
        .unwrap();
    k.1.retain(|(n, _)| *n != name);
    k.1.push((name, v));
}

#[test]
fn windows_guest_and_its_defects() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (c, esp) = windows(&dir.path().join("good"), &|_| {});
    let good_gpt = run(&windows_gpt(&c, &esp));
    assert_no_block(&good_gpt, &[Target::HypervGen2, Target::Azure]);
    assert!(
        good_gpt.blocks(Target::HypervGen1),
        "a UEFI-only disk blocks generation 1"
    );
    assert_eq!(
        ids(&good_gpt).into_iter().collect::<Vec<_>>(),
        ["firmware-uefi-only"]
    );
    let os = &good_gpt.os[0];
    assert_eq!(
        (
            os.kind.as_str(),
            os.name.as_deref(),
            os.build.as_deref(),
            os.edition.as_deref()
        ),
        (
            "windows",
            Some("Windows Server 2022 Datacenter"),
            Some("20348"),
            Some("ServerDatacenter")
        )
    );
    let good_mbr = run(&windows_mbr(&c, &esp));
    assert_no_block(&good_mbr, &[Target::HypervGen1, Target::Azure]);
    assert_eq!(
        ids(&good_mbr).into_iter().collect::<Vec<_>>(),
        ["firmware-bios-only"]
    );

    let registry_defects: Vec<RegistryDefect> = vec![
        (
            "storvsc Start=3",
            |k| set(k, "\\storvsc", "Start", HVal::Dword(3)),
            true,
            vec![("windows-storvsc-not-boot-start", sev(W, B, B))],
        ),
        (
            "vmbus Start=3",
            |k| set(k, "\\vmbus", "Start", HVal::Dword(3)),
            true,
            vec![("windows-vmbus-not-boot-start", sev(W, B, B))],
        ),
        (
            "intelide Start=3 on BIOS",
            |k| set(k, "\\intelide", "Start", HVal::Dword(3)),
            false,
            vec![("windows-intelide-not-boot-start", sev(B, NA, B))],
        ),
        (
            "atapi Start=3 on UEFI",
            |k| set(k, "\\atapi", "Start", HVal::Dword(3)),
            true,
            vec![("windows-atapi-not-boot-start", sev(B, NA, I))],
        ),
        (
            "RDP denied",
            |k| set(k, "\\Terminal Server", "fDenyTSConnections", HVal::Dword(1)),
            true,
            vec![("windows-rdp-disabled", sev(W, W, B))],
        ),
        (
            "DHCP client disabled",
            |k| set(k, "\\Dhcp", "Start", HVal::Dword(4)),
            true,
            vec![("windows-dhcp-not-automatic", sev(W, W, B))],
        ),
        (
            "static IP",
            |k| {
                set(k, IFACE, "EnableDHCP", HVal::Dword(0));
                set(k, IFACE, "IPAddress", HVal::Multi(vec!["10.0.0.7".into()]));
            },
            true,
            vec![("windows-static-ip", sev(W, W, B))],
        ),
        (
            "SAN policy offline shared",
            |k| set(k, "partmgr\\Parameters", "SanPolicy", HVal::Dword(2)),
            true,
            vec![("windows-san-policy", sev(W, W, W))],
        ),
        (
            "Fast Startup on",
            |k| set(k, "\\Power", "HiberbootEnabled", HVal::Dword(1)),
            true,
            vec![("windows-fast-startup-enabled", sev(W, W, W))],
        ),
        (
            "pending file renames",
            |k| {
                k.push((
                    "ControlSet001\\Control\\Session Manager".into(),
                    vec![(
                        "PendingFileRenameOperations",
                        HVal::Multi(vec!["\\??\\C:\\a".into(), String::new()]),
                    )],
                ))
            },
            true,
            vec![("windows-pending-reboot", sev(W, W, W))],
        ),
    ];
    for (i, (what, edit, uefi, want)) in registry_defects.iter().enumerate() {
        let (c, esp) = windows(&dir.path().join(format!("defect{i}")), edit);
        let (good, bad) = if *uefi {
            (&good_gpt, run(&windows_gpt(&c, &esp)))
        } else {
            (&good_mbr, run(&windows_mbr(&c, &esp)))
        };
        eprintln!("checked: {what}");
        assert_exactly(good, &bad, want);
    }

    // Hibernated: hiberfil.sys begins with "hibr".
    let (c, esp) = windows(&dir.path().join("hibr"), &|_| {});
    let mut hiberfil = b"hibr".to_vec();
    hiberfil.resize(64 * 1024, 0);
    c.write("/hiberfil.sys", hiberfil);
    assert_exactly(
        &good_gpt,
        &run(&windows_gpt(&c, &esp)),
        &[("windows-hibernated", sev(B, B, B))],
    );
    // A zeroed hiberfil.sys is no hibernation.
    c.write("/hiberfil.sys", vec![0u8; 8192]);
    assert_exactly(&good_gpt, &run(&windows_gpt(&c, &esp)), &[]);
    // No UEFI fallback loader on a UEFI-only disk: blocks generation 2 and Azure.
    esp.remove("/EFI/Boot/bootx64.efi");
    assert_exactly(
        &good_gpt,
        &run(&windows_gpt(&c, &esp)),
        &[("firmware-uefi-fallback-missing", sev(NA, B, B))],
    );
}

#[test]
fn windows_hive_with_a_cycle_is_bounded() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (c, esp) = windows(dir.path(), &|_| {});
    // Point Select's subkey list at an ri index that contains itself.
    let path = c.path("/Windows/System32/config/SYSTEM");
    let mut bytes = fs::read(&path).unwrap();
    let hive = vdconv::guest::registry::Hive::from_bytes(bytes.clone()).unwrap();
    let root = hive.root().unwrap().offset();
    let next = (bytes.len() - 4096 + 32) as u32;
    let ri = guest_hive::append_cells(&mut bytes, &[guest_hive::list_cell(b"ri", &[next])]);
    guest_hive::patch_u32(&mut bytes, root, 20, 1);
    guest_hive::patch_u32(&mut bytes, root, 28, ri[0]);
    fs::write(&path, bytes).unwrap();
    let started = Instant::now();
    let r = run(&windows_gpt(&c, &esp));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        ids(&r).contains("windows-hive-unreadable"),
        "{}",
        r.render_text(None)
    );
}

#[test]
fn volumes_that_cannot_be_inspected() {
    let mut raid = volume("partition 2", Content::MdRaid, None, Some("0xfd"));
    raid.problem = Some("RAID member".into());
    let mut broken = volume("partition 3", Content::Ext, None, Some("0x83"));
    broken.problem = Some("ext4: unknown incompat feature 0x80000".into());
    let volumes = vec![
        volume("partition 1", Content::Luks, None, Some("0x83")),
        raid,
        broken,
        volume("partition 4", Content::BitLocker, None, Some("0x07")),
        volume("partition 5", Content::WindowsDynamic, None, Some("0x42")),
    ];
    let r = run(&volumes);
    let got = ids(&r);
    for id in [
        "volume-luks",
        "volume-cannot-inspect",
        "volume-bitlocker",
        "windows-dynamic-disk",
        "guest-os-not-found",
    ] {
        assert!(got.contains(id), "{id}: {}", r.render_text(None));
    }
    assert_eq!(r.with_id("volume-cannot-inspect").count(), 2);
    assert!(r.blocks(Target::Azure), "a dynamic disk blocks");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["findings"][0]["severity"]["azure"], "warn");
    assert!(json["firmware"]["boots_with"].is_string());
}

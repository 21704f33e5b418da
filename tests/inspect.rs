//! `vdconv inspect`, `check --guest` and `convert --inspect` through the binary, on guest
//! disks built from real file systems with the real tools: a Debian-like guest (GPT with a
//! BIOS boot partition and an ESP made by mkfs.vfat and mtools, an ext4 root made by
//! mkfs.ext4 -d, an initramfs made by cpio and zstd), a RHEL-like guest (XFS on LVM made by
//! lvm2 and a loop mount, dracut layout with BLS entries and grubenv) and a Windows-like
//! guest (NTFS made by mkntfs and ntfs-3g, hives by hivexsh). Each is converted to VMDK by
//! qemu-img (streamOptimized and monolithicSparse) and inspected through both with
//! identical results; guests that differ from a good one by one defect report exactly that
//! finding; hostile guests end quickly, in little memory, with a finding and exit 1.
//!
//! A missing tool fails the test unless VDCONV_SKIP_MISSING_TOOLS=1; so does not being
//! root (loop devices, mounts).

mod common;
#[path = "common/guest_hive.rs"]
mod guest_hive;
#[path = "common/guest_images.rs"]
mod guest_images;
#[path = "common/guest_initramfs.rs"]
mod guest_initramfs;
#[path = "common/guest_tools.rs"]
mod guest_tools;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;

use common::{listing, stderr, vdconv, vdconv_measured};
use guest_hive::{HVal, HiveKeys, IFACE, build_hive, system_hive};
use guest_images::{Loop, lvm, partitions, sfdisk, sh, sh_env, sparse_copy, sparse_file, write_at};
use guest_initramfs::{Compressor, initramfs};

const MIB: u64 = 1 << 20;
/// What any hostile case may take (vdconv alone, not the image build).
const HOSTILE_TIME: Duration = Duration::from_secs(2);
/// Peak resident memory any hostile case may use.
const HOSTILE_RSS_KIB: u64 = 64 * 1024;

const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const BIOS_BOOT_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";
const LINUX_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const LVM_TYPE: &str = "E6D6D379-F507-44C2-A23C-238F2A3DF928";
const MSR_TYPE: &str = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE";
const BASIC_DATA_TYPE: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";

// ------------------------------------------------------------------------ tools, trees

/// Every tool the tests build with, as guest_tools::have_tool checks them (a missing one
/// fails unless VDCONV_SKIP_MISSING_TOOLS=1).
fn have_tools(tools: &[(&str, &str)]) -> bool {
    let mut ok = true;
    for (tool, package) in tools {
        ok &= guest_tools::have_tool(tool, package);
    }
    ok
}

const BASE_TOOLS: &[(&str, &str)] = &[
    ("qemu-img", "qemu-utils"),
    ("sfdisk", "fdisk"),
    ("mkfs.vfat", "dosfstools"),
    ("mmd", "mtools"),
    ("mcopy", "mtools"),
    ("cpio", "cpio"),
    ("zstd", "zstd"),
    ("gzip", "gzip"),
];

/// Loop devices and mounts need root: fails unless VDCONV_SKIP_MISSING_TOOLS=1.
fn have_root() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if !root {
        if std::env::var_os("VDCONV_SKIP_MISSING_TOOLS").is_none() {
            panic!(
                "this test needs root (loop devices, mounts); VDCONV_SKIP_MISSING_TOOLS=1 skips"
            );
        }
        eprintln!("skipping: not root");
    }
    root
}

/// A guest file tree on the host, to build a file system from.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new(root: PathBuf) -> Tree {
        fs::create_dir_all(&root).unwrap();
        Tree { root }
    }

    /// A copy of `self` at `to` (symlinks kept), for a variant.
    fn copy(&self, to: &Path) -> Tree {
        let _ = fs::remove_dir_all(to);
        sh(
            "cp",
            &["-a", self.root.to_str().unwrap(), to.to_str().unwrap()],
        );
        Tree {
            root: to.to_path_buf(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn write(&self, p: &str, data: impl AsRef<[u8]>) -> &Self {
        let path = self.path(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&path);
        fs::write(path, data).unwrap();
        self
    }

    fn link(&self, p: &str, target: &str) -> &Self {
        let path = self.path(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&path);
        std::os::unix::fs::symlink(target, path).unwrap();
        self
    }

    fn remove(&self, p: &str) -> &Self {
        fs::remove_file(self.path(p)).unwrap();
        self
    }
}

/// vdconv_measured: vdconv's own peak memory (GNU time measures it from a small process).
fn measured(args: &[&dyn AsRef<std::ffi::OsStr>]) -> common::Measured {
    vdconv_measured(args)
}

/// A FAT ESP image of `size` bytes with serial `serial` (8 hex digits) holding `files`.
fn fat_image(img: &Path, size: u64, serial: &str, files: &[&str]) {
    sparse_file(img, size);
    sh(
        "mkfs.vfat",
        &["-F", "16", "-n", "ESP", "-i", serial, img.to_str().unwrap()],
    );
    let i = img.to_str().unwrap();
    let scratch = img.with_extension("loader");
    fs::write(&scratch, b"MZ\x90\0 an EFI application").unwrap();
    let mut made = BTreeSet::new();
    for f in files {
        let parts: Vec<&str> = f.trim_start_matches('/').split('/').collect();
        for depth in 1..parts.len() {
            let dir = format!("::/{}", parts[..depth].join("/"));
            if made.insert(dir.clone()) {
                sh("mmd", &["-i", i, &dir]);
            }
        }
        sh(
            "mcopy",
            &["-i", i, scratch.to_str().unwrap(), &format!("::{f}")],
        );
    }
    fs::remove_file(scratch).unwrap();
}

/// An ext4 image of `size` bytes made from `tree` with mkfs.ext4 -d.
fn ext4_image(tree: &Path, img: &Path, size: u64, uuid: &str) {
    let _ = fs::remove_file(img);
    sparse_file(img, size);
    sh(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-U",
            uuid,
            "-d",
            tree.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
}

/// mkfs.xfs refuses file systems under 300 MB unless run as xfstests runs it.
fn xfs_image(img: &Path, size: u64, uuid: &str) {
    let _ = fs::remove_file(img);
    sparse_file(img, size);
    sh_env(
        "mkfs.xfs",
        &[
            "-q",
            "-f",
            "-m",
            &format!("uuid={uuid}"),
            img.to_str().unwrap(),
        ],
        &[("TEST_DIR", "1"), ("TEST_DEV", "1"), ("QA_CHECK_FS", "1")],
    );
}

/// Copies `tree` into the file system image `img` through a loop mount (XFS).
fn fill_by_mount(img: &Path, tree: &Path) {
    let mnt = img.with_extension("mnt");
    let m = guest_images::mount_loop(img, &mnt);
    sh(
        "cp",
        &[
            "-a",
            &format!("{}/.", tree.display()),
            m.dir.to_str().unwrap(),
        ],
    );
    drop(m);
}

/// An NTFS image mounted with ntfs-3g in the foreground, so that unmounting waits for it
/// to write everything back.
struct NtfsMount {
    dir: PathBuf,
    child: Option<Child>,
}

impl NtfsMount {
    fn new(img: &Path, dir: &Path) -> NtfsMount {
        fs::create_dir_all(dir).unwrap();
        let child = Command::new("ntfs-3g")
            .args(["-o", "no_detach"])
            .arg(img)
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run ntfs-3g");
        let mut m = NtfsMount {
            dir: dir.to_path_buf(),
            child: Some(child),
        };
        let want = fs::canonicalize(dir).unwrap();
        for _ in 0..500 {
            let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
            if mounts
                .lines()
                .any(|l| l.split(' ').nth(1) == Some(want.to_str().unwrap()))
            {
                return m;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        m.unmount();
        panic!("ntfs-3g did not mount {}", img.display());
    }

    fn unmount(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("umount").arg(&self.dir).status();
            let _ = child.wait();
        }
    }
}

impl Drop for NtfsMount {
    fn drop(&mut self) {
        self.unmount();
    }
}

// ------------------------------------------------------------------------ through vdconv

/// `vdconv inspect --json [args] IMG`: the exit code and the document (the schema is
/// checked by common::vdconv).
fn inspect(img: &Path, args: &[&str]) -> (i32, Value) {
    let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"inspect", &"--json"];
    for x in args {
        a.push(x);
    }
    a.push(&img);
    let o = vdconv(&a);
    let code = o.status.code().unwrap_or(-1);
    assert!(
        !stderr(&o).contains("panicked"),
        "vdconv panicked: {}",
        stderr(&o)
    );
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (code, doc)
}

/// The document without what differs between two files holding the same disk.
fn comparable(doc: &Value) -> Value {
    let mut d = doc.clone();
    let obj = d.as_object_mut().unwrap();
    obj.remove("image");
    obj.remove("seconds");
    d
}

/// Converts the raw disk to streamOptimized and monolithicSparse VMDKs with qemu-img,
/// inspects both, asserts identical results (findings, OS, kernels, firmware, volumes,
/// even the bytes read) and returns the document and the two VMDKs.
fn inspect_as_vmdks(raw: &Path, name: &str) -> (Value, PathBuf, PathBuf) {
    let dir = raw.parent().unwrap();
    let stream = dir.join(format!("{name}-stream.vmdk"));
    let sparse = dir.join(format!("{name}-sparse.vmdk"));
    for (out, sub) in [(&stream, "streamOptimized"), (&sparse, "monolithicSparse")] {
        let _ = fs::remove_file(out);
        common::qemu_vmdk(raw, out, &format!("subformat={sub}"));
    }
    let (code_a, a) = inspect(&stream, &[]);
    let (code_b, b) = inspect(&sparse, &[]);
    assert!(matches!(code_a, 0 | 1), "{name}: exit {code_a}: {a}");
    assert_eq!(code_a, code_b, "{name}: exit codes differ");
    assert_eq!(
        comparable(&a),
        comparable(&b),
        "{name}: streamOptimized and monolithicSparse differ"
    );
    (a, stream, sparse)
}

/// The same disk packed in an OVA (the way ovftool lays it out, firmware efi) reads the
/// same through `inspect VM.ova`: its boot disk in place, with the VM's firmware as a hint.
fn inspect_inside_an_ova(d: &Path, stream: &Path, direct: &Value) {
    let pack = d.join("ova");
    fs::create_dir_all(&pack).unwrap();
    fs::copy(stream, pack.join("vm-disk1.vmdk")).unwrap();
    let size = fs::metadata(stream).unwrap().len();
    let capacity = direct["virtual_size"].as_u64().unwrap();
    let ovf = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="vm-disk1.vmdk" ovf:id="file1" ovf:size="{size}"/></References>
  <DiskSection><Info>Disks</Info><Disk ovf:capacity="{capacity}" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/></DiskSection>
  <VirtualSystem ovf:id="vm"><Info>A VM</Info><Name>vm</Name>
    <VirtualHardwareSection><Info>Hardware</Info>
      <Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    );
    fs::write(pack.join("vm.ovf"), ovf).unwrap();
    let ova = d.join("vm.ova");
    common::run_ok(
        "tar",
        &[
            &"--format=ustar",
            &"-cf",
            &ova,
            &"-C",
            &pack,
            &"vm.ovf",
            &"vm-disk1.vmdk",
        ],
    );
    let (code, doc) = inspect(&ova, &[]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["firmware"]["hint"], "uefi", "{doc:#}");
    for field in [
        "findings",
        "os",
        "kernels",
        "default_kernel",
        "volumes",
        "ready_for",
    ] {
        assert_eq!(doc[field], direct[field], "{field} through the OVA");
    }
    fs::remove_dir_all(&pack).unwrap();
    fs::remove_file(&ova).unwrap();
}

fn ids(doc: &Value) -> BTreeSet<String> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

/// Severities as the catalogue columns: Gen1, Gen2, Azure ("-" where it does not apply).
type Sev = [&'static str; 3];

fn severities(f: &Value) -> [String; 3] {
    ["hyperv_gen1", "hyperv_gen2", "azure"]
        .map(|t| f["severity"][t].as_str().unwrap_or("-").to_string())
}

fn ready_for(doc: &Value) -> Vec<String> {
    doc["ready_for"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// The defect's guest reports exactly `want` beyond the good guest's findings, with those
/// severities; the same OS and firmware; `ready_for` follows from the severities.
fn assert_exactly(what: &str, good: &Value, bad: &Value, want: &[(&str, Sev)]) {
    let new: BTreeSet<String> = ids(bad).difference(&ids(good)).cloned().collect();
    let expected: BTreeSet<String> = want.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(new, expected, "{what}:\n{bad:#}");
    for (id, sev) in want {
        for f in bad["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["id"] == *id)
        {
            assert_eq!(severities(f), sev.map(str::to_string), "{what}: {id}");
            assert!(!f["fix"].as_str().unwrap().is_empty());
        }
    }
    assert_eq!(
        bad["os"].as_array().unwrap().len(),
        good["os"].as_array().unwrap().len()
    );
    assert_eq!(bad["firmware"], good["firmware"], "{what}");
    let open: Vec<String> = ["hyperv-gen1", "hyperv-gen2", "azure"]
        .iter()
        .enumerate()
        .filter(|(i, t)| {
            ready_for(good).contains(&t.to_string()) && !want.iter().any(|(_, s)| s[*i] == "block")
        })
        .map(|(_, t)| t.to_string())
        .collect();
    assert_eq!(ready_for(bad), open, "{what}: ready_for");
}

/// Exit codes with each --target agree with `ready_for` (0 ready, 1 blocked).
fn assert_target_exits(img: &Path, doc: &Value) {
    for t in ["hyperv-gen1", "hyperv-gen2", "azure"] {
        let (code, d) = inspect(img, &["--target", t]);
        let ready = ready_for(doc).contains(&t.to_string());
        assert_eq!(code, if ready { 0 } else { 1 }, "--target {t}");
        assert_eq!(d["ready"], ready);
        assert_eq!(d["targets"], serde_json::json!([t]));
        assert_eq!(ids(&d), ids(doc), "the target does not change the findings");
    }
}

/// A hostile image through the binary: bounded time and memory, no panic, exit 1 with
/// `finding` reported (and the gate failing closed).
fn assert_hostile(what: &str, img: &Path, finding: &str) -> Value {
    let m = measured(&[&"inspect", &"--json", &img]);
    let err = String::from_utf8_lossy(&m.output.stderr);
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert_eq!(m.output.status.code(), Some(1), "{what}: {err}");
    eprintln!(
        "hostile {what}: {:?}, peak RSS {} KiB",
        m.elapsed, m.max_rss_kib
    );
    assert!(m.elapsed < HOSTILE_TIME, "{what}: took {:?}", m.elapsed);
    assert!(
        m.max_rss_kib < HOSTILE_RSS_KIB,
        "{what}: peak RSS {} KiB",
        m.max_rss_kib
    );
    let doc: Value = serde_json::from_slice(&m.output.stdout).unwrap();
    let got = ids(&doc);
    assert!(got.contains(finding), "{what}: no {finding} in {got:?}");
    assert!(
        doc["ready_for"].as_array().unwrap().is_empty(),
        "{what}: {doc:#}"
    );
    doc
}

// ------------------------------------------------------------------------ Debian-like

const DEB_VER: &str = "6.1.0-18-amd64";
const DEB_ROOT_UUID: &str = "5f2b8c1e-7a4d-4f8e-9c3b-2d1e0f9a8b7c";
/// mkfs.vfat -i A1B2C3D4: fstab spells the serial A1B2-C3D4.
const DEB_ESP_SERIAL: &str = "A1B2C3D4";

fn hv_modules(ver: &str, ext: &str) -> Vec<String> {
    let m = format!("usr/lib/modules/{ver}/kernel/drivers");
    vec![
        format!("{m}/hv/hv_vmbus.ko{ext}"),
        format!("{m}/scsi/hv_storvsc.ko{ext}"),
        format!("{m}/net/hyperv/hv_netvsc.ko{ext}"),
    ]
}

/// The initrd as update-initramfs makes it: early microcode, then a zstd archive with the
/// given modules.
fn debian_initrd(tree: &Tree, modules: &[String]) {
    let mut files: Vec<(&str, &[u8])> = modules
        .iter()
        .map(|m| (m.as_str(), b"\x7fELF module".as_slice()))
        .collect();
    files.push(("init", b"#!/bin/sh\n"));
    files.push(("conf/initramfs.conf", b"MODULES=most\n"));
    tree.write(
        &format!("/boot/initrd.img-{DEB_VER}"),
        initramfs(&files, Compressor::Zstd),
    );
}

/// A Debian 12 root: initramfs-tools layout (MODULES=most), GRUB with console=ttyS0,
/// netplan on DHCP, cloud-init with the Azure datasource, the Hyper-V modules.
fn debian_tree(root: &Tree) {
    root.write("/etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n")
        .write("/etc/fstab", format!("# <file system> <mount point> <type> <options> <dump> <pass>\nUUID={DEB_ROOT_UUID} / ext4 errors=remount-ro 0 1\nUUID=A1B2-C3D4 /boot/efi vfat umask=0077 0 1\ntmpfs /tmp tmpfs defaults 0 0\n"))
        .link("/lib", "usr/lib")
        .write(&format!("/boot/vmlinuz-{DEB_VER}"), "kernel image")
        .write(&format!("/boot/config-{DEB_VER}"), "CONFIG_HYPERV=m\nCONFIG_HYPERV_STORAGE=m\nCONFIG_HYPERV_NET=m\nCONFIG_UDF_FS=m\nCONFIG_VFAT_FS=m\n")
        .write(&format!("/usr/lib/modules/{DEB_VER}/modules.builtin"), "kernel/fs/ext4/ext4.ko\n")
        .write(&format!("/usr/lib/modules/{DEB_VER}/modules.dep"), "kernel/drivers/hv/hv_vmbus.ko:\nkernel/drivers/scsi/hv_storvsc.ko: kernel/drivers/hv/hv_vmbus.ko\nkernel/drivers/net/hyperv/hv_netvsc.ko: kernel/drivers/hv/hv_vmbus.ko\n")
        .write("/etc/initramfs-tools/initramfs.conf", "MODULES=most\nCOMPRESS=zstd\n")
        .write("/etc/initramfs-tools/modules", "# modules for the initramfs\n")
        .write("/boot/grub/grub.cfg", format!("set default=\"0\"\nmenuentry 'Debian GNU/Linux' --class debian {{\n\tlinux\t/boot/vmlinuz-{DEB_VER} root=UUID={DEB_ROOT_UUID} ro quiet console=tty0 console=ttyS0,115200n8\n\tinitrd\t/boot/initrd.img-{DEB_VER}\n}}\n"))
        .write("/etc/default/grub", "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200n8\"\n")
        .write("/etc/netplan/50-cloud-init.yaml", "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n")
        .write("/usr/bin/cloud-init", "#!/usr/bin/python3\n")
        .write("/etc/cloud/cloud.cfg", "datasource_list: [ Azure, None ]\n")
        .write("/etc/modprobe.d/blacklist.conf", "blacklist floppy\n");
    for m in hv_modules(DEB_VER, "") {
        root.write(&m, "\x7fELF module");
    }
    debian_initrd(root, &hv_modules(DEB_VER, ""));
}

/// The Debian disk: GPT with a BIOS boot partition, an ESP and the ext4 root. The raw
/// disk is `dir/NAME.raw`.
struct DebianDisk {
    base: PathBuf,
    root_part: (u64, u64),
}

impl DebianDisk {
    fn build(dir: &Path, tree: &Tree) -> DebianDisk {
        let base = dir.join("debian.raw");
        sparse_file(&base, 96 * MIB);
        sfdisk(
            &base,
            &format!(
                "label: gpt\nstart=2048, size=1M, type={BIOS_BOOT_TYPE}\n\
                 size=16M, type={ESP_TYPE}\nsize=64M, type={LINUX_TYPE}\n"
            ),
        );
        let parts = partitions(&base);
        let esp = dir.join("debian-esp.img");
        fat_image(
            &esp,
            parts[1].1,
            DEB_ESP_SERIAL,
            &[
                "/EFI/BOOT/BOOTX64.EFI",
                "/EFI/debian/shimx64.efi",
                "/EFI/debian/grubx64.efi",
            ],
        );
        write_at(&base, parts[1].0, &esp);
        let disk = DebianDisk {
            base,
            root_part: parts[2],
        };
        disk.put_root(&disk.base, tree);
        disk
    }

    fn put_root(&self, disk: &Path, tree: &Tree) {
        let img = disk.with_extension("ext4");
        ext4_image(&tree.root, &img, self.root_part.1, DEB_ROOT_UUID);
        write_at(disk, self.root_part.0, &img);
        fs::remove_file(img).unwrap();
    }

    /// A copy of the disk at `dir/NAME.raw` whose root is made from `tree`.
    fn variant(&self, name: &str, tree: &Tree) -> PathBuf {
        let disk = self.base.with_file_name(format!("{name}.raw"));
        sparse_copy(&self.base, &disk);
        self.put_root(&disk, tree);
        disk
    }
}

/// Found by the volumes fuzz target: a FAT directory entry naming cluster 1 makes the
/// fatfs crate subtract past zero on its reader thread. The panic stays on that thread and
/// unprinted, and the ESP is reported unreadable (a warning), not missing its loader (a
/// blocking finding, which the stopped reader made it look like).
#[test]
fn an_esp_whose_reader_stops_is_unreadable_and_prints_no_panic() {
    if !have_tools(BASE_TOOLS) {
        return;
    }
    let dir = common::tempdir();
    let d = dir.path();
    let disk = d.join("esp-only.raw");
    sparse_file(&disk, 32 * MIB);
    sfdisk(
        &disk,
        &format!("label: gpt\nstart=2048, size=16M, type={ESP_TYPE}\n"),
    );
    let esp = d.join("esp.img");
    let part = partitions(&disk)[0];
    fat_image(&esp, part.1, "0badc1a5", &["/EFI/BOOT/BOOTX64.EFI"]);
    // The root directory's entry "EFI" (8.3 name, attribute 0x10) gets first cluster 1.
    let mut bytes = fs::read(&esp).unwrap();
    let at = bytes
        .windows(12)
        .position(|w| w == b"EFI        \x10")
        .expect("the EFI directory entry");
    bytes[at + 20..at + 22].copy_from_slice(&[0, 0]);
    bytes[at + 26..at + 28].copy_from_slice(&[1, 0]);
    fs::write(&esp, &bytes).unwrap();
    write_at(&disk, part.0, &esp);

    let (code, doc) = inspect(&disk, &["-f", "raw"]);
    assert_eq!(code, 1, "{doc:#}");
    let ids: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert!(ids.contains(&"firmware-esp-unreadable"), "{ids:?}");
    assert!(!ids.contains(&"firmware-uefi-fallback-missing"), "{ids:?}");
}

#[test]
fn debian_guest_on_real_disks() {
    if !(have_tools(BASE_TOOLS)
        & have_tools(&[("mkfs.ext4", "e2fsprogs"), ("debugfs", "e2fsprogs")]))
    {
        return;
    }
    let dir = common::tempdir();
    let d = dir.path();
    let good_tree = Tree::new(d.join("tree-good"));
    debian_tree(&good_tree);
    let disk = DebianDisk::build(d, &good_tree);

    let (good, stream, _) = inspect_as_vmdks(&disk.base, "good");
    inspect_inside_an_ova(d, &stream, &good);
    assert_eq!(
        ready_for(&good),
        ["hyperv-gen1", "hyperv-gen2", "azure"],
        "{good:#}"
    );
    assert!(
        good["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| severities(f).iter().all(|s| s == "info" || s == "-")),
        "a clean guest: {good:#}"
    );
    assert_eq!(good["os"][0]["name"], "Debian GNU/Linux");
    assert_eq!(good["os"][0]["version"], "12");
    assert_eq!(good["os"][0]["root_volume"], "partition 3");
    assert_eq!(good["default_kernel"], DEB_VER);
    assert_eq!(good["firmware"]["boots_with"], "both");
    assert_eq!(good["firmware"]["esp"], "partition 2");
    assert_eq!(good["scheme"], "gpt");
    let kernel = &good["kernels"][0];
    assert_eq!(kernel["default"], true);
    for drv in kernel["drivers"].as_array().unwrap() {
        assert_eq!(drv["state"], "in-initramfs", "{drv}");
    }
    assert!(
        good["os"][0]["mounts"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["/boot/efi", "partition 2"])),
        "{good:#}"
    );
    let read = good["bytes_read"].as_u64().unwrap();
    assert!(read > 0 && read < 16 * MIB, "{read} bytes read");
    assert_target_exits(&stream, &good);

    // Every other format vdconv reads gives the same report: raw (-f raw), VHDX and VHD
    // written by vdconv.
    let (code, raw_doc) = inspect(&disk.base, &["-f", "raw"]);
    assert_eq!(code, 0);
    assert_eq!(comparable(&raw_doc), comparable(&good));
    for (ext, extra) in [("vhdx", &[][..]), ("vhd", &["--type", "fixed"][..])] {
        let out = d.join(format!("good.{ext}"));
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"convert", &"-q", &stream, &out];
        for x in extra {
            a.push(x);
        }
        common::assert_ok(&vdconv(&a));
        let (code, doc) = inspect(&out, &[]);
        assert_eq!(code, 0, "{ext}");
        assert_eq!(comparable(&doc), comparable(&good), "{ext}");
    }
    // The text report: grouped by severity, the verdict last.
    let o = vdconv(&[&"inspect", &"--target", &"azure", &stream]);
    assert_eq!(o.status.code(), Some(0));
    let text = common::stdout(&o);
    assert!(
        text.contains("linux on partition 3: Debian GNU/Linux 12"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("ready for azure"), "{text}");

    type Defect = (&'static str, fn(&Tree), Vec<(&'static str, Sev)>);
    let defects: Vec<Defect> = vec![
        (
            "initramfs without hv_storvsc",
            |t| {
                let mods: Vec<String> = hv_modules(DEB_VER, "")
                    .into_iter()
                    .filter(|m| !m.contains("storvsc"))
                    .collect();
                debian_initrd(t, &mods);
            },
            vec![("linux-hv-storvsc-missing", ["block", "block", "block"])],
        ),
        (
            "fstab root on /dev/sda2",
            |t| {
                t.write("/etc/fstab", "/dev/sda2 / ext4 errors=remount-ro 0 1\nUUID=A1B2-C3D4 /boot/efi vfat umask=0077 0 1\n");
            },
            vec![("linux-fstab-root-device-name", ["block", "block", "block"])],
        ),
        (
            "netplan pinned to a VMware MAC",
            |t| {
                t.write("/etc/netplan/50-cloud-init.yaml", "network:\n  version: 2\n  ethernets:\n    nic0:\n      match:\n        macaddress: \"00:50:56:9a:bc:de\"\n      set-name: eth0\n      dhcp4: true\n");
            },
            vec![("linux-net-mac-pinned", ["warn", "warn", "block"])],
        ),
        (
            "no Azure agent",
            |t| {
                t.remove("/usr/bin/cloud-init");
            },
            vec![("linux-azure-agent-missing", ["-", "-", "block"])],
        ),
    ];
    let mut storvsc_missing = None;
    for (i, (what, edit, want)) in defects.iter().enumerate() {
        let tree = good_tree.copy(&d.join(format!("tree-{i}")));
        edit(&tree);
        let raw = disk.variant(&format!("defect{i}"), &tree);
        let (bad, stream, _) = inspect_as_vmdks(&raw, &format!("defect{i}"));
        eprintln!("checked: {what}");
        assert_exactly(what, &good, &bad, want);
        if i == 0 {
            assert_target_exits(&stream, &bad);
            storvsc_missing = Some(stream);
        }
        fs::remove_dir_all(&tree.root).unwrap();
    }
    let storvsc_missing = storvsc_missing.unwrap();
    gates(d, &stream, &storvsc_missing);

    // Hostile: the initrd is a cpio whose header claims a 4 GiB file (newc's sizes are
    // 32 bits: the most a header can claim), then one inside a zstd frame that claims
    // 1 TiB of content.
    let huge_cpio = |size: u32| -> Vec<u8> {
        let mut h = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1, 0o100644, 0, 0, 1, 0, size, 0, 0, 0, 0, 5, 0
        )
        .into_bytes();
        h.extend_from_slice(b"huge\0\0\0\0");
        h.extend_from_slice(&[0x55; 4096]);
        h
    };
    let tree = good_tree.copy(&d.join("tree-cpio"));
    tree.write(&format!("/boot/initrd.img-{DEB_VER}"), huge_cpio(u32::MAX));
    let raw = disk.variant("hostile-cpio", &tree);
    let doc = assert_hostile(
        "cpio header claiming 4 GiB",
        &raw_as_vmdk(&raw),
        "linux-initramfs-unreadable",
    );
    assert!(ids(&doc).contains("guest-unverified"));
    tree.write(
        &format!("/boot/initrd.img-{DEB_VER}"),
        zstd_claiming(&huge_cpio(1 << 30), 1 << 40),
    );
    let raw = disk.variant("hostile-zstd", &tree);
    assert_hostile(
        "zstd frame claiming 1 TiB",
        &raw_as_vmdk(&raw),
        "linux-initramfs-unreadable",
    );

    // Hostile: a directory loop. /boot is a hard link to the root directory, so
    // /boot/boot/boot... never ends and the kernel and initrd are gone from it.
    let raw = disk.variant("hostile-loop", &good_tree);
    let img = raw.with_extension("ext4");
    ext4_image(&good_tree.root, &img, disk.root_part.1, DEB_ROOT_UUID);
    let i = img.to_str().unwrap();
    sh("debugfs", &["-w", "-R", "unlink /boot", i]);
    sh("debugfs", &["-w", "-R", "link <2> /boot", i]);
    assert!(sh("debugfs", &["-R", "ls -l /boot/boot/boot/etc", i]).contains("fstab"));
    write_at(&raw, disk.root_part.0, &img);
    let doc = assert_hostile(
        "ext4 directory loop",
        &raw_as_vmdk(&raw),
        "linux-initramfs-missing",
    );
    assert_eq!(doc["os"][0]["kind"], "linux");
}

/// A monolithicSparse VMDK of `raw` beside it.
fn raw_as_vmdk(raw: &Path) -> PathBuf {
    let out = raw.with_extension("vmdk");
    common::qemu_vmdk(raw, &out, "");
    out
}

/// `data` compressed by zstd in a frame whose header claims `claim` bytes of content
/// (an 8-byte Frame_Content_Size field; zstd writes the true size, or none).
fn zstd_claiming(data: &[u8], claim: u64) -> Vec<u8> {
    let real = guest_initramfs::compress(data, Compressor::Zstd);
    assert_eq!(&real[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    let fhd = real[4];
    let single_segment = fhd & 0x20 != 0;
    let dict_bytes = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_bytes = match fhd >> 6 {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let header_len = 5 + usize::from(!single_segment) + dict_bytes + fcs_bytes;
    // Keep the checksum and dictionary flags; FCS 8 bytes, a window descriptor of 8 MiB.
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd, 0xc0 | (fhd & 0x07), 13 << 3];
    out.extend_from_slice(
        &real[5 + usize::from(!single_segment)..5 + usize::from(!single_segment) + dict_bytes],
    );
    out.extend_from_slice(&claim.to_le_bytes());
    out.extend_from_slice(&real[header_len..]);
    out
}

/// `convert --inspect` and `check --guest` as CI gates: `good` is a ready VMDK, `bad`
/// lacks hv_storvsc (blocks every target).
fn gates(d: &Path, good: &Path, bad: &Path) {
    let out_dir = d.join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let dst = out_dir.join("disk.vhd");

    // A blocking finding stops the conversion before anything is written.
    let o = vdconv(&[
        &"convert",
        &"--inspect",
        &"--target",
        &"azure",
        &"--json",
        &bad,
        &dst,
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(err["error"]["kind"], "guest-not-ready");
    assert_eq!(err["error"]["exit"], 3);
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("linux-hv-storvsc-missing") && msg.contains("--force-unready"),
        "{msg}"
    );
    let e = stderr(&o);
    assert!(
        e.lines().any(
            |l| l.starts_with("vdconv: warning: guest: [linux-hv-storvsc-missing]")
                && l.contains("(blocks azure)")
        ),
        "{e}"
    );
    assert!(
        listing(&out_dir).is_empty(),
        "nothing left behind: {:?}",
        listing(&out_dir)
    );

    // Without a target nothing blocks: the findings are warnings.
    let o = vdconv(&[
        &"convert",
        &"--inspect",
        &"-O",
        &"vhdx",
        &"--json",
        &bad,
        &out_dir.join("any.vhdx"),
    ]);
    common::assert_ok(&o);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        report["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .starts_with("guest: [linux-hv-storvsc-missing]")),
        "{report:#}"
    );

    // --force-unready converts, the findings kept as warnings; the result is the source.
    let o = vdconv(&[
        &"convert",
        &"--inspect",
        &"--force-unready",
        &"--target",
        &"azure",
        &"--json",
        &bad,
        &dst,
    ]);
    common::assert_ok(&o);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("[linux-hv-storvsc-missing]")),
        "{report:#}"
    );
    common::qemu_compare(bad, "vmdk", &dst, "vpc");
    // A ready guest converts with nothing to say about it.
    let o = vdconv(&[
        &"convert",
        &"--inspect",
        &"--target",
        &"azure",
        &"--force",
        &good,
        &dst,
    ]);
    common::assert_ok(&o);
    assert!(!stderr(&o).contains("guest:"), "{}", stderr(&o));

    // check --guest: the gate a CI job runs; the output VHD is inspected like any image.
    for (img, target, code) in [
        (bad, "hyperv-gen2", 1),
        (bad, "azure", 1),
        (good, "hyperv-gen1", 0),
        (&dst, "azure", 0),
    ] {
        let o = vdconv(&[&"check", &"--guest", &"--target", &target, &"--json", &img]);
        assert_eq!(o.status.code(), Some(code), "{target}: {}", stderr(&o));
        let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(doc["ready"], code == 0);
    }
    // Hyper-V has no upload rules: its targets need --guest.
    let o = vdconv(&[&"check", &"--target", &"hyperv-gen2", &"--json", &good]);
    assert_eq!(o.status.code(), Some(2));
    let o = vdconv(&[&"check", &"--guest", &good]);
    assert_eq!(o.status.code(), Some(2));
    let o = vdconv(&[
        &"convert",
        &"--force-unready",
        &good,
        &out_dir.join("x.vhd"),
    ]);
    assert_eq!(o.status.code(), Some(2), "--force-unready needs --inspect");
}

// ------------------------------------------------------------------------ RHEL-like

const EL_NEW: &str = "5.14.0-362.8.1.el9_3.x86_64";
const EL_OLD: &str = "5.14.0-70.13.1.el9_0.x86_64";
const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";
const EL_BOOT_UUID: &str = "7e1c7d6a-1111-4222-8333-944455556666";
const EL_ROOT_UUID: &str = "11111111-2222-4333-8444-555555555555";
/// fstab spells it 5A6B-7C8D.
const EL_ESP_SERIAL: &str = "5A6B7C8D";

/// dracut's initramfs for a kernel: host-only, so built on VMware it carries vmw_pvscsi,
/// and the Hyper-V drivers only when asked for.
fn dracut_initramfs(boot: &Tree, ver: &str, with_hv: bool) {
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("init".into(), b"systemd".to_vec()),
        (
            format!("usr/lib/modules/{ver}/kernel/drivers/scsi/vmw_pvscsi.ko.xz"),
            b"xz module".to_vec(),
        ),
    ];
    if with_hv {
        for m in hv_modules(ver, ".xz") {
            files.push((m, b"xz module".to_vec()));
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

/// RHEL 9: the root on LVM (rhel/root), /boot on its own XFS with BLS entries and
/// grubenv, ifcfg and a NetworkManager keyfile on DHCP, waagent enabled. Two kernels: the
/// default one's initramfs has the Hyper-V drivers, the older one's (host-only) has not.
fn rhel_trees(root: &Tree, boot: &Tree) {
    root.write("/etc/os-release", "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"9.3 (Plow)\"\nID=\"rhel\"\nVERSION_ID=\"9.3\"\n")
        .write("/etc/fstab", format!("/dev/mapper/rhel-root / xfs defaults 0 0\nUUID={EL_BOOT_UUID} /boot xfs defaults 0 0\nUUID=5A6B-7C8D /boot/efi vfat umask=0077,shortname=winnt 0 2\n/dev/mapper/rhel-swap none swap defaults 0 0\n"))
        .link("/lib", "usr/lib")
        .write("/etc/default/grub", "GRUB_TIMEOUT=5\nGRUB_DEFAULT=saved\nGRUB_CMDLINE_LINUX=\"rd.lvm.lv=rhel/root console=ttyS0,115200\"\nGRUB_ENABLE_BLSCFG=true\n")
        .write("/etc/dracut.conf.d/hyperv.conf", "add_drivers+=\" hv_vmbus hv_storvsc hv_netvsc \"\n")
        .write("/etc/sysconfig/network-scripts/ifcfg-eth0", "DEVICE=eth0\nBOOTPROTO=dhcp\nONBOOT=yes\nTYPE=Ethernet\n")
        .write("/etc/NetworkManager/system-connections/eth0.nmconnection", "[connection]\nid=eth0\ntype=ethernet\ninterface-name=eth0\n\n[ipv4]\nmethod=auto\n")
        .write("/usr/sbin/waagent", "#!/usr/bin/python3\n")
        .write("/etc/waagent.conf", "Provisioning.Agent=auto\nResourceDisk.EnableSwap=y\n")
        .write("/usr/lib/systemd/system/waagent.service", "[Unit]\nDescription=Azure Linux Agent\n")
        .link("/etc/systemd/system/multi-user.target.wants/waagent.service", "/usr/lib/systemd/system/waagent.service");
    for ver in [EL_NEW, EL_OLD] {
        for m in hv_modules(ver, ".xz") {
            root.write(&m, "xz module");
        }
        boot.write(&format!("/vmlinuz-{ver}"), "kernel image")
            .write(&format!("/config-{ver}"), "CONFIG_HYPERV=m\nCONFIG_HYPERV_STORAGE=m\nCONFIG_HYPERV_NET=m\nCONFIG_UDF_FS=m\nCONFIG_VFAT_FS=m\n")
            .write(
                &format!("/loader/entries/{MACHINE_ID}-{ver}.conf"),
                format!("title Red Hat Enterprise Linux ({ver}) 9.3 (Plow)\nversion {ver}\nlinux /vmlinuz-{ver}\ninitrd /initramfs-{ver}.img $tuned_initrd\noptions root=/dev/mapper/rhel-root ro $kernelopts console=ttyS0,115200\ngrub_users $grub_users\n"),
            );
    }
    dracut_initramfs(boot, EL_NEW, true);
    dracut_initramfs(boot, EL_OLD, false);
    boot.write("/grub2/grub.cfg", "set default=\"${saved_entry}\"\nload_env -f ${config_directory}/grubenv\nblscfg\n")
        .write("/grub2/grubenv", format!("# GRUB Environment Block\nsaved_entry={MACHINE_ID}-{EL_NEW}\nkernelopts=root=/dev/mapper/rhel-root ro rd.lvm.lv=rhel/root\n{}", "#".repeat(200)));
}

/// The RHEL disk: GPT with a BIOS boot partition, an ESP, /boot (XFS) and an LVM PV
/// holding VG rhel with `root` (XFS) and `swap`. Variants replace /boot or the root.
struct RhelDisk {
    base: PathBuf,
    boot_part: (u64, u64),
    pv_offset: u64,
    /// Where the root LV's data starts on the disk (one segment).
    root_at: u64,
    boot_img: PathBuf,
    root_img: PathBuf,
}

impl RhelDisk {
    fn build(dir: &Path, root: &Tree, boot: &Tree) -> RhelDisk {
        let base = dir.join("rhel.raw");
        sparse_file(&base, 160 * MIB);
        sfdisk(
            &base,
            &format!(
                "label: gpt\nstart=2048, size=1M, type={BIOS_BOOT_TYPE}\n\
                 size=16M, type={ESP_TYPE}\nsize=40M, type={LINUX_TYPE}\ntype={LVM_TYPE}\n"
            ),
        );
        let parts = partitions(&base);
        let esp = dir.join("rhel-esp.img");
        fat_image(
            &esp,
            parts[1].1,
            EL_ESP_SERIAL,
            &[
                "/EFI/BOOT/BOOTX64.EFI",
                "/EFI/redhat/shimx64.efi",
                "/EFI/redhat/grubx64.efi",
            ],
        );
        write_at(&base, parts[1].0, &esp);

        // The PV, VG and LVs, through a loop device over the partition.
        let pv = Loop::new(&base, parts[3].0, parts[3].1);
        let dev = pv.dev.as_str();
        lvm(dir, &[dev], &["pvcreate", "-q", dev]);
        lvm(dir, &[dev], &["vgcreate", "-q", "-s", "1M", "rhel", dev]);
        for (lv, size) in [("root", "64M"), ("swap", "8M")] {
            lvm(
                dir,
                &[dev],
                &["lvcreate", "-q", "-an", "-Zn", "-n", lv, "-L", size, "rhel"],
            );
        }
        let segs = lvm(
            dir,
            &[dev],
            &[
                "lvs",
                "--noheadings",
                "--segments",
                "-o",
                "lv_name,seg_pe_ranges",
                "rhel",
            ],
        );
        let pe_start: u64 = lvm(
            dir,
            &[dev],
            &[
                "pvs",
                "--noheadings",
                "--nosuffix",
                "--units",
                "b",
                "-o",
                "pe_start",
                dev,
            ],
        )
        .trim()
        .parse()
        .unwrap();
        drop(pv);
        // "lv dev:first-last" for each LV's one segment: where its data starts.
        let first_pe = |lv: &str| -> u64 {
            segs.lines()
                .find(|l| l.split_whitespace().next() == Some(lv))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|r| r.split_once(':'))
                .and_then(|(_, r)| r.split_once('-'))
                .map(|(first, _)| first.parse().unwrap())
                .unwrap_or_else(|| panic!("no {lv} segment in {segs}"))
        };
        let swap = dir.join("rhel-swap.img");
        sparse_file(&swap, 8 * MIB);
        sh("mkswap", &["-q", swap.to_str().unwrap()]);
        write_at(&base, parts[3].0 + pe_start + first_pe("swap") * MIB, &swap);

        let boot_img = dir.join("rhel-boot.xfs");
        xfs_image(&boot_img, parts[2].1, EL_BOOT_UUID);
        fill_by_mount(&boot_img, &boot.root);
        let root_img = dir.join("rhel-root.xfs");
        xfs_image(&root_img, 64 * MIB, EL_ROOT_UUID);
        fill_by_mount(&root_img, &root.root);
        let disk = RhelDisk {
            base,
            boot_part: parts[2],
            pv_offset: parts[3].0,
            root_at: parts[3].0 + pe_start + first_pe("root") * MIB,
            boot_img,
            root_img,
        };
        write_at(&disk.base, disk.boot_part.0, &disk.boot_img);
        write_at(&disk.base, disk.root_at, &disk.root_img);
        disk
    }

    /// A copy of the disk with `edit` applied to the root (`on_boot` false) or /boot file
    /// system, through a loop mount of a copy of its image.
    fn variant(&self, name: &str, on_boot: bool, edit: &dyn Fn(&Path)) -> PathBuf {
        let disk = self.base.with_file_name(format!("{name}.raw"));
        sparse_copy(&self.base, &disk);
        let (img, at) = if on_boot {
            (&self.boot_img, self.boot_part.0)
        } else {
            (&self.root_img, self.root_at)
        };
        let copy = disk.with_extension("xfs");
        sparse_copy(img, &copy);
        {
            let m = guest_images::mount_loop(&copy, &disk.with_extension("mnt"));
            edit(&m.dir);
        }
        write_at(&disk, at, &copy);
        fs::remove_file(copy).unwrap();
        disk
    }
}

#[test]
fn rhel_guest_xfs_on_lvm() {
    if !(have_tools(BASE_TOOLS)
        & have_tools(&[
            ("mkfs.xfs", "xfsprogs"),
            ("lvm", "lvm2"),
            ("losetup", "util-linux"),
            ("mount", "util-linux"),
            ("mkswap", "util-linux"),
        ])
        & have_root())
    {
        return;
    }
    let dir = common::tempdir();
    let d = dir.path();
    let (root, boot) = (Tree::new(d.join("root")), Tree::new(d.join("boot")));
    rhel_trees(&root, &boot);
    let disk = RhelDisk::build(d, &root, &boot);

    let (good, stream, _) = inspect_as_vmdks(&disk.base, "good");
    assert_eq!(
        ready_for(&good),
        ["hyperv-gen1", "hyperv-gen2", "azure"],
        "{good:#}"
    );
    // The older kernel's host-only initramfs lacks the drivers: a note, not a block; the
    // installer's swap LV is a warning for Azure (swap belongs on the resource disk).
    assert_eq!(
        ids(&good).into_iter().collect::<Vec<_>>(),
        [
            "linux-hv-drivers-missing-other-kernel",
            "linux-swap-on-os-disk"
        ],
        "{good:#}"
    );
    assert_eq!(good["os"][0]["id"], "rhel");
    assert_eq!(good["os"][0]["root_volume"], "LV rhel/root");
    assert_eq!(good["default_kernel"], EL_NEW);
    assert_eq!(good["kernels"].as_array().unwrap().len(), 2);
    assert_eq!(good["firmware"]["boots_with"], "both");
    let mounts = good["os"][0]["mounts"].as_array().unwrap();
    for m in [["/boot", "partition 3"], ["/boot/efi", "partition 2"]] {
        assert!(mounts.contains(&serde_json::json!(m)), "{mounts:?}");
    }
    let volumes = good["volumes"].as_array().unwrap();
    let root_v = volumes
        .iter()
        .find(|v| v["name"] == "LV rhel/root")
        .unwrap();
    assert_eq!(
        (root_v["fs"].as_str(), root_v["uuid"].as_str()),
        (Some("xfs"), Some(EL_ROOT_UUID))
    );
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == "LV rhel/swap" && v["content"] == "swap")
    );
    assert_target_exits(&stream, &good);

    type Defect = (&'static str, bool, fn(&Path), Vec<(&'static str, Sev)>);
    let defects: Vec<Defect> = vec![
        (
            "static ifcfg",
            false,
            |m| {
                fs::write(
                    m.join("etc/sysconfig/network-scripts/ifcfg-eth0"),
                    "DEVICE=eth0\nBOOTPROTO=none\nIPADDR=10.20.30.40\nPREFIX=24\nONBOOT=yes\n",
                )
                .unwrap();
            },
            vec![("linux-net-static-ipv4", ["warn", "warn", "block"])],
        ),
        (
            "keyfile pinned to a MAC",
            false,
            |m| {
                fs::write(
                    m.join("etc/NetworkManager/system-connections/eth0.nmconnection"),
                    "[connection]\nid=eth0\ntype=ethernet\n\n[ethernet]\nmac-address=00:50:56:AA:BB:CC\n\n[ipv4]\nmethod=auto\n",
                )
                .unwrap();
            },
            vec![("linux-net-mac-pinned", ["warn", "warn", "block"])],
        ),
        (
            "grubenv saves the older kernel, whose host-only initramfs lacks the drivers",
            true,
            |m| {
                fs::write(
                    m.join("grub2/grubenv"),
                    format!("# GRUB Environment Block\nsaved_entry={MACHINE_ID}-{EL_OLD}\nkernelopts=root=/dev/mapper/rhel-root ro\n"),
                )
                .unwrap();
            },
            vec![
                ("linux-hv-vmbus-missing", ["block", "block", "block"]),
                ("linux-hv-storvsc-missing", ["block", "block", "block"]),
            ],
        ),
    ];
    for (i, (what, on_boot, edit, want)) in defects.iter().enumerate() {
        let raw = disk.variant(&format!("defect{i}"), *on_boot, edit);
        let (bad, _, _) = inspect_as_vmdks(&raw, &format!("defect{i}"));
        eprintln!("checked: {what}");
        if *on_boot {
            // The older kernel is now the default; the newer one, not, has its drivers.
            assert_eq!(bad["default_kernel"], EL_OLD);
            let mut good_less = good.clone();
            good_less["findings"]
                .as_array_mut()
                .unwrap()
                .retain(|f| f["id"] != "linux-hv-drivers-missing-other-kernel");
            assert_exactly(what, &good_less, &bad, want);
        } else {
            assert_exactly(what, &good, &bad, want);
        }
    }

    // Hostile: the root's XFS truncated. The LV is shrunk in the (checksummed) metadata
    // to 20 of its 64 extents, so the file system runs past the end of its volume.
    let raw = d.join("hostile-truncated.raw");
    sparse_copy(&disk.base, &raw);
    rewrite_root_extents(&raw, disk.pv_offset, 20);
    let doc = assert_hostile(
        "truncated XFS root",
        &raw_as_vmdk(&raw),
        "guest-os-not-found",
    );
    let root_v = doc["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "LV rhel/root")
        .unwrap()
        .clone();
    assert!(
        root_v["problem"]
            .as_str()
            .is_some_and(|p| p.starts_with("cannot inspect")),
        "{root_v}"
    );
    eprintln!("truncated root: {}", root_v["problem"]);
    assert!(ids(&doc).contains("volume-cannot-inspect"));
}

/// Sets the extent count of rhel/root's one segment in the PV's committed metadata. Only
/// the PV's first MiB (label and metadata area) is read and written back: the test process
/// stays small (see `measured`).
fn rewrite_root_extents(disk: &Path, pv_offset: u64, extents: u64) {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .unwrap();
    let mut head = vec![0u8; MIB as usize];
    file.read_exact_at(&mut head, pv_offset).unwrap();
    guest_images::rewrite_lvm_metadata_in(
        &mut head,
        0,
        |text| {
            let at = text.find("root {").expect("an LV named root");
            let count = at + text[at..].find("extent_count = ").unwrap() + "extent_count = ".len();
            let end = count + text[count..].find(|c: char| !c.is_ascii_digit()).unwrap();
            format!("{}{extents}{}", &text[..count], &text[end..])
        },
        None,
    );
    file.write_all_at(&head, pv_offset).unwrap();
}

// ------------------------------------------------------------------------ Windows-like

fn software_hive(path: &Path) {
    build_hive(
        path,
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
}

fn set_value(keys: &mut HiveKeys, key_suffix: &str, name: &'static str, v: HVal) {
    let k = keys
        .iter_mut()
        .find(|(k, _)| k.ends_with(key_suffix))
        .unwrap();
    k.1.retain(|(n, _)| *n != name);
    k.1.push((name, v));
}

/// The Windows disks: C: (NTFS with the hives) on GPT with an ESP and an MSR (generation
/// 2), and on MBR behind a System Reserved partition (generation 1).
struct WindowsDisks {
    gpt: PathBuf,
    mbr: PathBuf,
    gpt_c: (u64, u64),
    mbr_c: (u64, u64),
    c_img: PathBuf,
}

impl WindowsDisks {
    fn build(dir: &Path) -> WindowsDisks {
        let gpt = dir.join("windows-gpt.raw");
        sparse_file(&gpt, 96 * MIB);
        sfdisk(
            &gpt,
            &format!(
                "label: gpt\nstart=2048, size=16M, type={ESP_TYPE}\n\
                 size=1M, type={MSR_TYPE}\ntype={BASIC_DATA_TYPE}\n"
            ),
        );
        let gpt_parts = partitions(&gpt);
        let esp = dir.join("windows-esp.img");
        fat_image(
            &esp,
            gpt_parts[0].1,
            "1A2B3C4D",
            &["/EFI/Microsoft/Boot/bootmgfw.efi", "/EFI/Boot/bootx64.efi"],
        );
        write_at(&gpt, gpt_parts[0].0, &esp);

        let mbr = dir.join("windows-mbr.raw");
        sparse_file(&mbr, 96 * MIB);
        sfdisk(
            &mbr,
            "label: dos\nlabel-id: 0x5eed1234\nstart=2048, size=8M, type=7, bootable\ntype=7\n",
        );
        let mbr_parts = partitions(&mbr);
        let reserved = dir.join("windows-reserved.ntfs");
        sparse_file(&reserved, mbr_parts[0].1);
        sh(
            "mkntfs",
            &[
                "-q",
                "-F",
                "-f",
                "-L",
                "System Reserved",
                reserved.to_str().unwrap(),
            ],
        );
        write_at(&mbr, mbr_parts[0].0, &reserved);

        // C: sized for the smaller of the two partitions, so one image fits both disks.
        let c_size = gpt_parts[2].1.min(mbr_parts[1].1);
        let c_img = dir.join("windows-c.ntfs");
        sparse_file(&c_img, c_size);
        sh(
            "mkntfs",
            &["-q", "-F", "-f", "-L", "Windows", c_img.to_str().unwrap()],
        );
        {
            let m = NtfsMount::new(&c_img, &dir.join("c-mnt"));
            let config = m.dir.join("Windows/System32/config");
            fs::create_dir_all(&config).unwrap();
            fs::write(m.dir.join("Windows/System32/cmd.exe"), b"MZ\x90\0").unwrap();
            fs::create_dir_all(m.dir.join("Windows/System32/drivers")).unwrap();
            for drv in ["storvsc.sys", "vmbus.sys", "intelide.sys", "atapi.sys"] {
                fs::write(
                    m.dir.join("Windows/System32/drivers").join(drv),
                    b"MZ\x90\0",
                )
                .unwrap();
            }
            let hives = dir.join("hives");
            fs::create_dir_all(&hives).unwrap();
            system_hive(&hives.join("SYSTEM"), &|_| {});
            software_hive(&hives.join("SOFTWARE"));
            for h in ["SYSTEM", "SOFTWARE"] {
                fs::copy(hives.join(h), config.join(h)).unwrap();
            }
        }
        let disks = WindowsDisks {
            gpt,
            mbr,
            gpt_c: gpt_parts[2],
            mbr_c: mbr_parts[1],
            c_img,
        };
        write_at(&disks.gpt, disks.gpt_c.0, &disks.c_img);
        write_at(&disks.mbr, disks.mbr_c.0, &disks.c_img);
        disks
    }

    /// A copy of the GPT (or MBR) disk whose C: has `edit` applied through ntfs-3g.
    fn variant(&self, name: &str, gpt: bool, edit: &dyn Fn(&Path)) -> PathBuf {
        let (base, part) = if gpt {
            (&self.gpt, self.gpt_c)
        } else {
            (&self.mbr, self.mbr_c)
        };
        let disk = base.with_file_name(format!("{name}.raw"));
        sparse_copy(base, &disk);
        let c = disk.with_extension("ntfs");
        sparse_copy(&self.c_img, &c);
        {
            let m = NtfsMount::new(&c, &disk.with_extension("mnt"));
            edit(&m.dir);
        }
        assert!(fs::metadata(&c).unwrap().len() <= part.1);
        write_at(&disk, part.0, &c);
        fs::remove_file(c).unwrap();
        disk
    }
}

/// Writes a SYSTEM hive edited by `edit` over C:'s (mounted at `c`).
fn replace_system(c: &Path, edit: &dyn Fn(&mut HiveKeys)) {
    let path = c.join("Windows/System32/config/SYSTEM");
    let scratch = c.parent().unwrap().join(format!(
        "SYSTEM-{}",
        c.file_name().unwrap().to_string_lossy()
    ));
    system_hive(&scratch, edit);
    sparse_copy(&scratch, &path);
}

#[test]
fn windows_guest_on_ntfs() {
    if !(have_tools(BASE_TOOLS)
        & have_tools(&[
            ("mkntfs", "ntfs-3g"),
            ("ntfs-3g", "ntfs-3g"),
            ("hivexsh", "libhivex-bin"),
            ("mount", "util-linux"),
        ])
        & have_root())
    {
        return;
    }
    let dir = common::tempdir();
    let d = dir.path();
    let disks = WindowsDisks::build(d);

    // Generation 2 layout: ready for generation 2 and Azure; the UEFI-only disk blocks
    // generation 1, and that is the only finding.
    let (gpt_good, gpt_stream, _) = inspect_as_vmdks(&disks.gpt, "gpt-good");
    assert_eq!(
        ids(&gpt_good).into_iter().collect::<Vec<_>>(),
        ["firmware-uefi-only"],
        "{gpt_good:#}"
    );
    assert_eq!(ready_for(&gpt_good), ["hyperv-gen2", "azure"]);
    let os = &gpt_good["os"][0];
    assert_eq!(os["kind"], "windows");
    assert_eq!(os["name"], "Windows Server 2022 Datacenter");
    assert_eq!(os["build"], "20348");
    assert_eq!(os["edition"], "ServerDatacenter");
    assert_eq!(os["root_volume"], "partition 3");
    assert_eq!(gpt_good["firmware"]["boots_with"], "uefi");
    assert_target_exits(&gpt_stream, &gpt_good);

    // Generation 1 layout: the mirror image.
    let (mbr_good, mbr_stream, _) = inspect_as_vmdks(&disks.mbr, "mbr-good");
    assert_eq!(
        ids(&mbr_good).into_iter().collect::<Vec<_>>(),
        ["firmware-bios-only"],
        "{mbr_good:#}"
    );
    assert_eq!(ready_for(&mbr_good), ["hyperv-gen1", "azure"]);
    assert_eq!(mbr_good["scheme"], "mbr");
    assert_target_exits(&mbr_stream, &mbr_good);

    type Defect = (&'static str, bool, fn(&Path), Vec<(&'static str, Sev)>);
    let defects: Vec<Defect> = vec![
        (
            "storvsc Start=3",
            true,
            |c| replace_system(c, &|k| set_value(k, "\\storvsc", "Start", HVal::Dword(3))),
            vec![("windows-storvsc-not-boot-start", ["warn", "block", "block"])],
        ),
        (
            "intelide Start=3",
            false,
            |c| replace_system(c, &|k| set_value(k, "\\intelide", "Start", HVal::Dword(3))),
            vec![("windows-intelide-not-boot-start", ["block", "-", "block"])],
        ),
        (
            "hibernated: hiberfil.sys holds an image",
            true,
            |c| {
                let mut hiberfil = b"HIBR".to_vec();
                hiberfil.resize(256 * 1024, 0x11);
                fs::write(c.join("hiberfil.sys"), hiberfil).unwrap();
            },
            vec![("windows-hibernated", ["block", "block", "block"])],
        ),
        (
            "static IP on the old adapter",
            true,
            |c| {
                replace_system(c, &|k| {
                    set_value(k, IFACE, "EnableDHCP", HVal::Dword(0));
                    set_value(k, IFACE, "IPAddress", HVal::Multi(vec!["10.0.0.7".into()]));
                })
            },
            vec![("windows-static-ip", ["warn", "warn", "block"])],
        ),
    ];
    for (i, (what, gpt, edit, want)) in defects.iter().enumerate() {
        let raw = disks.variant(&format!("defect{i}"), *gpt, edit);
        let (bad, stream, _) = inspect_as_vmdks(&raw, &format!("defect{i}"));
        eprintln!("checked: {what}");
        let good = if *gpt { &gpt_good } else { &mbr_good };
        assert_exactly(what, good, &bad, want);
        if i < 2 {
            assert_target_exits(&stream, &bad);
        }
    }

    // A hibernation file of zeros is no hibernation.
    let raw = disks.variant("zero-hiberfil", true, &|c| {
        fs::write(c.join("hiberfil.sys"), vec![0u8; 64 * 1024]).unwrap()
    });
    let (doc, _, _) = inspect_as_vmdks(&raw, "zero-hiberfil");
    assert_exactly("a zeroed hiberfil.sys", &gpt_good, &doc, &[]);

    // Hostile: a SYSTEM hive whose root's subkey list is an ri index that contains
    // itself.
    let raw = disks.variant("hostile-hive", true, &|c| {
        let path = c.join("Windows/System32/config/SYSTEM");
        let mut bytes = fs::read(&path).unwrap();
        let hive = vdconv::guest::registry::Hive::from_bytes(bytes.clone()).unwrap();
        let root = hive.root().unwrap().offset();
        let next = (bytes.len() - 4096 + 32) as u32;
        let ri = guest_hive::append_cells(&mut bytes, &[guest_hive::list_cell(b"ri", &[next])]);
        guest_hive::patch_u32(&mut bytes, root, 20, 1);
        guest_hive::patch_u32(&mut bytes, root, 28, ri[0]);
        fs::write(&path, bytes).unwrap();
    });
    let doc = assert_hostile(
        "hive with a cycle",
        &raw_as_vmdk(&raw),
        "windows-hive-unreadable",
    );
    assert!(ids(&doc).contains("guest-unverified"));
    assert_eq!(doc["os"][0]["kind"], "windows");
}

// ------------------------------------------------------------------------ the disk itself

/// X2: a 3 TiB disk with an MBR (sparse: only the table is written). MBR addresses 2 TiB,
/// and a BIOS-only OS disk over 2 TiB needs an Azure generation 1 VM, which takes at most
/// 2 TiB. No OS is on it, so the gate fails closed as well.
#[test]
fn size_facts_of_a_3_tib_mbr_disk() {
    if !have_tools(&[("sfdisk", "fdisk")]) {
        return;
    }
    let dir = common::tempdir();
    let raw = dir.path().join("big.raw");
    sparse_file(&raw, 3 << 40);
    sfdisk(&raw, "label: dos\nstart=2048, size=1T, type=83, bootable\n");
    let (code, doc) = inspect(&raw, &["-f", "raw"]);
    assert_eq!(code, 1, "{doc:#}");
    let f = |id: &str| {
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no {id}: {doc:#}"))
            .clone()
    };
    assert_eq!(
        severities(&f("disk-mbr-over-2tib")),
        ["warn", "warn", "warn"]
    );
    assert_eq!(
        severities(&f("disk-azure-bios-os-over-2tib")),
        ["-", "-", "block"]
    );
    assert_eq!(f("disk-azure-bios-os-over-2tib")["check"], "X2");
    assert_eq!(
        severities(&f("guest-unverified")),
        ["block", "block", "block"]
    );
    assert_eq!(doc["virtual_size"], 3u64 << 40);
    assert!(
        doc["bytes_read"].as_u64().unwrap() < MIB,
        "{}",
        doc["bytes_read"]
    );
    // The image that cannot be read at all is an error, not a report.
    let o = vdconv(&[&"inspect", &"--json", &dir.path().join("none.vmdk")]);
    assert_eq!(o.status.code(), Some(3));
    let e: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["error"]["kind"], "missing-file");
}

/// docs/json.md lists every finding id with its catalogue entry, severities and meaning,
/// exactly as the code has them, and no other; the schema's id enum is the same set.
#[test]
fn docs_and_schema_list_every_finding() {
    use vdconv::target::Target;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = fs::read_to_string(root.join("docs/json.md")).unwrap();
    let all: Vec<&vdconv::guest::checks::catalogue::Entry> = vdconv::guest::checks::catalogue::ALL
        .iter()
        .chain(vdconv::inspect::DISK_FINDINGS)
        .collect();
    for e in &all {
        let row = format!(
            "| `{}` | {} | {} | {} | {} | {} |",
            e.id,
            e.check,
            e.column(Target::HypervGen1),
            e.column(Target::HypervGen2),
            e.column(Target::Azure),
            e.summary
        );
        assert!(doc.contains(&row), "docs/json.md lacks the row: {row}");
    }
    let row = regex::Regex::new(r"^\| `[a-z0-9-]+` \| [LWX][0-9] \|").unwrap();
    assert_eq!(
        doc.lines().filter(|l| row.is_match(l)).count(),
        all.len(),
        "docs/json.md has rows for findings that no longer exist"
    );
    let schema: Value =
        serde_json::from_str(&fs::read_to_string(root.join("docs/json-schema.json")).unwrap())
            .unwrap();
    let listed: BTreeSet<&str> = schema["$defs"]["guest_finding"]["properties"]["id"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let code: BTreeSet<&str> = all.iter().map(|e| e.id).collect();
    assert_eq!(listed, code, "the schema's finding ids");
}

/// `inspect -h` gives every argument a sentence, as the other commands do.
#[test]
fn inspect_help_explains_every_argument() {
    let o = vdconv(&[&"inspect", &"-h"]);
    common::assert_ok(&o);
    let help = common::stdout(&o);
    let img = help
        .lines()
        .find(|l| l.trim_start().starts_with("<IMG>"))
        .unwrap_or_else(|| panic!("no <IMG> in {help}"));
    assert!(img.trim().len() > 20, "{img:?}");
    for l in help.lines().filter(|l| l.trim_start().starts_with('-')) {
        assert!(
            l.split_whitespace().count() >= 3,
            "option without a sentence: {l:?}"
        );
    }
    for (command, flag) in [
        ("convert", "--inspect"),
        ("convert", "--force-unready"),
        ("check", "--guest"),
    ] {
        let o = vdconv(&[&command, &"-h"]);
        assert!(
            common::stdout(&o).contains(flag),
            "{command} -h lacks {flag}"
        );
    }
}

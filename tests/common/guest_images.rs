//! Real guest disks for the guest readers' tests, made with the real tools (sfdisk,
//! mkfs.*, mtools, ntfs-3g, LVM, loop mounts) in temporary directories. Images are sparse
//! files of tens of MiB at most.
//!
//! A missing tool fails the test when CI=true, naming the Debian package; elsewhere the
//! test is skipped with a message. Loop devices and mounts are released by guards, also
//! when a test fails.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use vdconv::guest::fs::{FileKind, GuestFs};
use vdconv::guest::{ByteSource, GuestResult};

pub const MIB: u64 = 1 << 20;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// True when `tool` runs. In CI a missing tool fails the test with what to install;
/// elsewhere the caller skips.
pub fn need(tool: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if in_ci() {
            panic!("{tool} is required in CI: install the Debian package {package}");
        }
        eprintln!("skipping: {tool} not found (install the Debian package {package})");
    }
    found
}

/// Loop devices and mounts need root. In CI (which runs as root) its absence fails.
pub fn need_root() -> bool {
    // SAFETY-free check: the effective uid is what `id -u` prints.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if !root {
        if in_ci() {
            panic!("these tests need root (loop devices, mounts)");
        }
        eprintln!("skipping: not root (loop devices and mounts need it)");
    }
    root
}

/// Runs a command, asserts it succeeded, returns its stdout.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    sh_env(cmd, args, &[])
}

pub fn sh_env(cmd: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sparse file of `size` bytes.
pub fn sparse_file(path: &Path, size: u64) {
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
}

/// Copies `src` into `disk` at `offset` a MiB at a time, leaving all-zero 64 KiB pieces
/// as holes. Streamed, not read whole: the test process stays small, which the memory
/// measurement of vdconv in tests/inspect.rs depends on.
pub fn write_at(disk: &Path, offset: u64, src: &Path) {
    let out = OpenOptions::new().write(true).open(disk).unwrap();
    let mut input = File::open(src).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = offset;
    loop {
        let n = input.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        write_nonzero_at(&out, at, &buf[..n]);
        at += n as u64;
    }
}

/// Copies `src` to `dst` with the same holes as write_at leaves. `fs::copy` writes every
/// byte of a sparse image (copy_file_range on a file system without reflinks), and the
/// tests that make many variants of a guest disk would fill a small CI disk.
pub fn sparse_copy(src: &Path, dst: &Path) {
    sparse_file(dst, fs::metadata(src).unwrap().len());
    write_at(dst, 0, src);
}

pub fn write_bytes_at(disk: &Path, offset: u64, data: &[u8]) {
    let f = OpenOptions::new().write(true).open(disk).unwrap();
    write_nonzero_at(&f, offset, data);
}

fn write_nonzero_at(f: &File, offset: u64, data: &[u8]) {
    for (i, chunk) in data.chunks(64 * 1024).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            f.write_all_at(chunk, offset + (i as u64) * 64 * 1024)
                .unwrap();
        }
    }
}

/// Overwrites `len` bytes of `disk` at `offset` with zeros.
pub fn zero_at(disk: &Path, offset: u64, len: usize) {
    let f = OpenOptions::new().write(true).open(disk).unwrap();
    f.write_all_at(&vec![0u8; len], offset).unwrap();
}

/// Writes a partition table with sfdisk's script format.
pub fn sfdisk(disk: &Path, script: &str) {
    let mut child = Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(disk)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sfdisk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (start, size) in bytes of each partition, in sfdisk's order, as sfdisk reads them back.
pub fn partitions(disk: &Path) -> Vec<(u64, u64)> {
    let dump = sh("sfdisk", &["--dump", disk.to_str().unwrap()]);
    dump.lines()
        .filter(|l| l.contains("start="))
        .map(|l| {
            let field = |name: &str| -> u64 {
                let at = l.find(&format!("{name}=")).unwrap() + name.len() + 1;
                l[at..].split(',').next().unwrap().trim().parse().unwrap()
            };
            (field("start") * 512, field("size") * 512)
        })
        .collect()
}

/// A mount that is unmounted when dropped.
pub struct Mounted {
    pub dir: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Mounts an image file through a loop device (`mount -o loop`).
pub fn mount_loop(image: &Path, dir: &Path) -> Mounted {
    fs::create_dir_all(dir).unwrap();
    sh(
        "mount",
        &["-o", "loop", image.to_str().unwrap(), dir.to_str().unwrap()],
    );
    Mounted {
        dir: dir.to_path_buf(),
    }
}

/// Mounts an NTFS image file with ntfs-3g.
pub fn mount_ntfs(image: &Path, dir: &Path) -> Mounted {
    fs::create_dir_all(dir).unwrap();
    sh("ntfs-3g", &[image.to_str().unwrap(), dir.to_str().unwrap()]);
    Mounted {
        dir: dir.to_path_buf(),
    }
}

/// A loop device over part of a file, detached when dropped.
pub struct Loop {
    pub dev: String,
}

impl Loop {
    pub fn new(file: &Path, offset: u64, size: u64) -> Loop {
        let dev = sh(
            "losetup",
            &[
                "-f",
                "--show",
                "-o",
                &offset.to_string(),
                "--sizelimit",
                &size.to_string(),
                file.to_str().unwrap(),
            ],
        );
        Loop {
            dev: dev.trim().to_string(),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// A file read as a guest byte source.
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    pub fn open(path: &Path) -> Arc<dyn ByteSource> {
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        Arc::new(FileSource { file, len })
    }
}

impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> GuestResult<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(vdconv::guest::source::out_of_range(
                offset,
                buf.len(),
                self.len,
            ));
        }
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| vdconv::guest::GuestError::Io {
                what: "test image".into(),
                offset,
                detail: e.to_string(),
            })
    }
}

/// Deterministic bytes that do not compress (xorshift).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What a host directory holds: relative path -> (kind, bytes or link target).
pub fn host_tree(root: &Path) -> BTreeMap<String, (FileKind, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if name == "lost+found" {
                continue;
            }
            let path = rel.join(&name);
            let md = fs::symlink_metadata(root.join(&path)).unwrap();
            let key = format!("/{}", path.display());
            if md.file_type().is_symlink() {
                let t = fs::read_link(root.join(&path)).unwrap();
                out.insert(
                    key,
                    (FileKind::Symlink, t.into_os_string().into_encoded_bytes()),
                );
            } else if md.is_dir() {
                out.insert(key, (FileKind::Dir, Vec::new()));
                stack.push(path);
            } else {
                out.insert(key, (FileKind::File, fs::read(root.join(&path)).unwrap()));
            }
        }
    }
    out
}

/// Asserts that `fs` holds exactly what `expected` (from [`host_tree`]) says: every
/// listing, every file's bytes, every link's target.
pub fn assert_same_tree(fs: &dyn GuestFs, expected: &BTreeMap<String, (FileKind, Vec<u8>)>) {
    let mut dirs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    dirs.insert("/".into(), Vec::new());
    for (path, (kind, content)) in expected {
        let (parent, name) = path.rsplit_once('/').unwrap();
        let parent = if parent.is_empty() { "/" } else { parent };
        dirs.entry(parent.to_string())
            .or_default()
            .push(name.to_string());
        let md = fs
            .metadata(path.as_bytes())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(md.kind, *kind, "{path}");
        match kind {
            FileKind::File => {
                assert_eq!(md.size, content.len() as u64, "{path}");
                let got = fs
                    .read_file(path.as_bytes(), 1 << 30)
                    .unwrap_or_else(|e| panic!("{path}: {e}"));
                assert!(got == *content, "{path}: contents differ");
            }
            FileKind::Symlink => {
                let got = fs.read_link(path.as_bytes()).unwrap();
                assert_eq!(got, *content, "{path}");
            }
            _ => {}
        }
    }
    for (dir, mut names) in dirs {
        let mut got: Vec<String> = fs
            .read_dir(dir.as_bytes())
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .filter(|n| n != "lost+found")
            .collect();
        got.sort();
        names.sort();
        assert_eq!(got, names, "listing of {dir}");
    }
}

/// A Linux root tree: fstab, os-release behind a relative symlink, /lib -> usr/lib, an
/// absolute symlink, a symlink loop, a big file, a directory of 500 entries.
pub fn linux_tree(root: &Path, big: usize) {
    let w = |p: &str, data: &[u8]| {
        let path = root.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    };
    let link = |target: &str, p: &str| std::os::unix::fs::symlink(target, root.join(p)).unwrap();
    w(
        "etc/fstab",
        b"UUID=0b1d0c7e-5e1a-4d0e-9c57-2f8a2b4f9a11 / ext4 defaults 0 1\n",
    );
    w("usr/lib/os-release", b"NAME=\"Test Linux\"\nID=test\n");
    w(
        "usr/lib/modules/6.1.0/kernel/hv_vmbus.ko",
        &pattern(5000, 7),
    );
    link("../usr/lib/os-release", "etc/os-release");
    link("usr/lib", "lib");
    link("/usr/lib/modules", "etc/abs-modules");
    link("loop2", "loop1");
    link("/loop1", "loop2");
    w("big.bin", &pattern(big, 42));
    for i in 0..500 {
        w(&format!("many/entry_{i:03}"), format!("{i}\n").as_bytes());
    }
}

/// LVM's `calc_crc` (seed 0xf597a6cf, reflected polynomial, no inversion), written
/// independently of the reader under test.
pub fn lvm_crc(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xf597_a6cf;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Rewrites the committed metadata text of the PV that starts at `pv_offset` in `disk`:
/// `edit` gets the text and returns the new one, written in place with the raw_locn size
/// and checksums updated. `size_override` puts another size in raw_locn (hostile tests).
pub fn rewrite_lvm_metadata(
    disk: &Path,
    pv_offset: u64,
    edit: impl Fn(&str) -> String,
    size_override: Option<u64>,
) {
    let mut bytes = fs::read(disk).unwrap();
    rewrite_lvm_metadata_in(&mut bytes, pv_offset, edit, size_override);
    fs::write(disk, bytes).unwrap();
}

/// [`rewrite_lvm_metadata`] on a disk in memory.
pub fn rewrite_lvm_metadata_in(
    disk: &mut [u8],
    pv_offset: u64,
    edit: impl Fn(&str) -> String,
    size_override: Option<u64>,
) {
    let pv = pv_offset as usize;
    let label = &disk[pv + 512..pv + 1024];
    assert_eq!(&label[..8], b"LABELONE");
    // pv_header at 32: uuid[32], device_size u64, data areas (16 bytes each) until a zero
    // entry, then metadata areas.
    let mut at = 32 + 40;
    while le64(label, at) != 0 {
        at += 16;
    }
    at += 16;
    let mda = pv + le64(label, at) as usize;
    assert_eq!(&disk[mda + 4..mda + 20], b" LVM2 x[5A%r0N*>");
    let (text_off, text_size) = (le64(disk, mda + 40) as usize, le64(disk, mda + 48) as usize);
    let text = &disk[mda + text_off..mda + text_off + text_size];
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    let mut new = edit(&String::from_utf8_lossy(&text[..end])).into_bytes();
    new.push(0);
    disk[mda + text_off..mda + text_off + new.len()].copy_from_slice(&new);
    let size = size_override.unwrap_or(new.len() as u64);
    disk[mda + 48..mda + 56].copy_from_slice(&size.to_le_bytes());
    disk[mda + 56..mda + 60].copy_from_slice(&lvm_crc(&new).to_le_bytes());
    let crc = lvm_crc(&disk[mda + 4..mda + 512]);
    disk[mda..mda + 4].copy_from_slice(&crc.to_le_bytes());
}

/// `lvm` on the given devices with a private configuration (no devices file, no udev,
/// no archives) and activation off: this kernel may have no device-mapper.
pub fn lvm(conf_dir: &Path, devices: &[&str], args: &[&str]) -> String {
    let conf = conf_dir.join("lvm");
    if !conf.exists() {
        fs::create_dir_all(&conf).unwrap();
        fs::write(
            conf.join("lvm.conf"),
            "activation { udev_sync = 0 udev_rules = 0 }\n\
             backup { backup = 0 archive = 0 }\n\
             devices { obtain_device_list_from_udev = 0 use_devicesfile = 0 }\n",
        )
        .unwrap();
    }
    let devs = devices.join(",");
    let mut all = vec![args[0], "--driverloaded", "n", "--devices", &devs];
    all.extend_from_slice(&args[1..]);
    sh_env(
        "lvm",
        &all,
        &[
            ("LVM_SYSTEM_DIR", conf.to_str().unwrap()),
            ("LVM_SUPPRESS_FD_WARNINGS", "1"),
        ],
    )
}

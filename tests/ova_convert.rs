//! Converting whole-VM exports through the binary: OVAs built the way ovftool lays them
//! out (descriptor, manifest, disks) with real tools, read from a file, a folder and a
//! pipe. Every output is checked against `qemu-img convert` of the unpacked disk, with
//! `qemu-img compare` and with libvhdi's SHA-256 of the contents; damaged and hostile
//! packages fail with one error line, the right exit code and kind, and leave nothing
//! behind.

mod common;
#[path = "common/ova_build.rs"]
mod ova_build;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{MIB, have_readers, libvhdi_sha256, listing, qemu_compare, run_ok, stderr, stdout};
use ova_build::{DiskSpec, VmSpec};

/// How a disk is stored in the package.
#[derive(Clone, Copy)]
enum Store {
    Plain,
    Gzip,
    Chunked(u64),
}

struct Plan {
    href: &'static str,
    mib: u64,
    seed: u64,
    store: Store,
    /// InstanceID of the controller in the template: "3" SCSI, "5" IDE, "6" SATA.
    parent: &'static str,
    unit: u32,
}

fn plan(href: &'static str, mib: u64, seed: u64, store: Store) -> Plan {
    Plan {
        href,
        mib,
        seed,
        store,
        parent: "3",
        unit: 0,
    }
}

/// A VM's package files in `dir`, in ovftool's order, and each disk's VMDK unpacked.
struct Vm {
    dir: PathBuf,
    name: String,
    order: Vec<String>,
    /// (href, the unpacked VMDK, the pieces stored).
    disks: Vec<(String, PathBuf, Vec<String>)>,
}

impl Vm {
    fn ova(&self, format: &str) -> PathBuf {
        let out = self
            .dir
            .parent()
            .unwrap()
            .join(format!("{}-{format}.ova", self.name));
        let names: Vec<&str> = self.order.iter().map(String::as_str).collect();
        ova_build::tar(&self.dir, &out, format, &names);
        out
    }

    fn ovf(&self) -> PathBuf {
        self.dir.join(format!("{}.ovf", self.name))
    }

    fn unpacked(&self, href: &str) -> &Path {
        &self.disks.iter().find(|d| d.0 == href).unwrap().1
    }
}

/// Stages a VM: streamOptimized disks from qemu-img (kept unpacked beside the package
/// for the reference conversions), stored as planned; the VMware descriptor template;
/// the manifest from sha*sum.
fn stage(
    root: &Path,
    name: &str,
    plans: &[Plan],
    firmware: Option<&'static str>,
    secure_boot: Option<bool>,
    algorithm: &'static str,
) -> Vm {
    let dir = root.join(name);
    let unpacked = root.join(format!("{name}-unpacked"));
    fs::create_dir_all(&dir).unwrap();
    fs::create_dir_all(&unpacked).unwrap();
    let mut specs = Vec::new();
    let mut disks = Vec::new();
    let mut files = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let vmdk = ova_build::stream_vmdk(&unpacked, p.href, p.mib, p.seed);
        disks.push(store(&dir, &vmdk, p, i, &mut specs, &mut files));
    }
    finish_stage(
        dir,
        name,
        specs,
        disks,
        files,
        firmware,
        secure_boot,
        algorithm,
    )
}

/// Stores the unpacked `vmdk` in `dir` as `p` says; records its spec and pieces.
fn store(
    dir: &Path,
    vmdk: &Path,
    p: &Plan,
    i: usize,
    specs: &mut Vec<DiskSpec>,
    files: &mut Vec<String>,
) -> (String, PathBuf, Vec<String>) {
    match p.store {
        Store::Gzip => ova_build::gzip(vmdk, &dir.join(p.href)),
        _ => fs::copy(vmdk, dir.join(p.href)).map(drop).unwrap(),
    }
    let stored = fs::metadata(dir.join(p.href)).unwrap().len();
    let pieces = match p.store {
        Store::Chunked(c) => ova_build::split_chunks(dir, p.href, c),
        _ => vec![p.href.to_string()],
    };
    files.extend(pieces.iter().cloned());
    specs.push(DiskSpec {
        file_id: format!("file{}", i + 1),
        disk_id: format!("vmdisk{}", i + 1),
        href: p.href.to_string(),
        size: stored,
        capacity_mib: p.mib,
        populated: fs::metadata(vmdk).unwrap().len(),
        compression: matches!(p.store, Store::Gzip).then_some("gzip"),
        chunk_size: match p.store {
            Store::Chunked(c) => Some(c),
            _ => None,
        },
        parent: p.parent,
        unit: p.unit,
    });
    (p.href.to_string(), vmdk.to_path_buf(), pieces)
}

#[allow(clippy::too_many_arguments)]
fn finish_stage(
    dir: PathBuf,
    name: &str,
    specs: Vec<DiskSpec>,
    disks: Vec<(String, PathBuf, Vec<String>)>,
    files: Vec<String>,
    firmware: Option<&'static str>,
    secure_boot: Option<bool>,
    algorithm: &'static str,
) -> Vm {
    let vm = VmSpec {
        name: name.to_string(),
        firmware,
        secure_boot,
        disks: specs,
    };
    let order = ova_build::descriptor_and_manifest(&dir, &vm, files, algorithm);
    Vm {
        dir,
        name: name.to_string(),
        order,
        disks,
    }
}

fn tools() -> bool {
    ova_build::tools() & have_readers()
}

fn vdconv(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    common::vdconv(args)
}

/// Runs vdconv with `input` piped to its standard input by `cat` (no seeking possible).
fn vdconv_piped(input: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cat = ova_build::cat_pipe(input);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vdconv"));
    for a in args {
        cmd.arg(a);
    }
    let out = cmd
        .stdin(cat.stdout.take().unwrap())
        .output()
        .expect("run vdconv");
    let _ = cat.kill();
    let _ = cat.wait();
    common::check_documents(args, &out);
    out
}

fn ok(o: &Output) {
    common::assert_ok(o);
}

/// The output checked against qemu-img's conversion of the unpacked disk: qemu-img
/// compare says identical, and libvhdi reads the same size and SHA-256 from both.
/// Returns libvhdi's digest.
fn check_against_qemu(out: &Path, format: &str, unpacked: &Path, scratch: &Path) -> String {
    // force_size: qemu otherwise rounds a VHD up to a whole CHS geometry.
    let (qemu_format, options) = if format == "vhd" {
        ("vpc", "force_size=on")
    } else {
        ("vhdx", "")
    };
    let reference = scratch.join(format!("reference.{format}"));
    let _ = fs::remove_file(&reference);
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"convert", &"-f", &"vmdk", &"-O", &qemu_format];
    if !options.is_empty() {
        args.extend([&"-o" as &dyn AsRef<std::ffi::OsStr>, &options]);
    }
    args.extend([&unpacked as &dyn AsRef<std::ffi::OsStr>, &reference]);
    run_ok("qemu-img", &args);
    qemu_compare(out, qemu_format, &reference, qemu_format);
    let ours = libvhdi_sha256(out);
    let theirs = libvhdi_sha256(&reference);
    assert_eq!(ours, theirs, "libvhdi reads {} differently", out.display());
    fs::remove_file(&reference).unwrap();
    ours.1
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// One error line, last; everything before it a note or a warning.
fn one_error_line(o: &Output) -> String {
    let err = stderr(o);
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("vdconv: error: "))
            .count(),
        1,
        "one error line: {err}"
    );
    assert!(
        lines.last().unwrap().starts_with("vdconv: error: "),
        "{err}"
    );
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("vdconv: warning: ") || l.starts_with("vdconv: note: ")),
        "{err}"
    );
    lines.last().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------
// Conversions checked against qemu-img.

#[test]
fn one_disk_bios_sha256_from_a_file_and_a_pipe() {
    if !tools() {
        return;
    }
    let tmp = common::tempdir();
    let vm = stage(
        tmp.path(),
        "web01",
        &[plan("web01-disk1.vmdk", 5, 1, Store::Plain)],
        Some("bios"),
        None,
        "SHA256",
    );
    // A certificate: reported, not verified.
    let mut vm = vm;
    fs::write(
        vm.dir.join("web01.cert"),
        "SHA256(web01.mf)= 00\n-----BEGIN CERTIFICATE-----\n",
    )
    .unwrap();
    vm.order.insert(2, "web01.cert".into());
    let ova = vm.ova("ustar");
    let unpacked = vm.unpacked("web01-disk1.vmdk").to_path_buf();
    let unpacked = unpacked.as_path();
    let out = tmp.path().join("web01.vhdx");
    let o = vdconv(&[&"convert", &"--json", &ova, &out]);
    ok(&o);
    let from_file = check_against_qemu(&out, "vhdx", unpacked, tmp.path());
    let r = json(&o);
    assert_eq!(r["package"], "ova");
    assert_eq!(r["read"], "file");
    assert_eq!(r["vm"]["name"], "web01");
    assert_eq!(r["vm"]["firmware"], "bios");
    assert_eq!(r["suggested_target"], "hyperv-gen1");
    assert_eq!(r["files"], serde_json::json!([out.display().to_string()]));
    assert_eq!(r["disks"][0]["disk_id"], "vmdisk1");
    assert_eq!(r["disks"][0]["report"]["virtual_size"], 5 * MIB);
    assert_eq!(r["disks"][0]["controller"]["controller"], "scsi");
    assert_eq!(
        r["manifest"]["verified"],
        serde_json::json!(["web01.ovf", "web01-disk1.vmdk"])
    );
    assert!(stderr(&o).contains("vdconv: note: the VM boots with BIOS"));
    assert_eq!(r["certificate"], "web01.cert");
    assert!(
        stderr(&o).contains("certificate web01.cert is present; its signature is not verified"),
        "{}",
        stderr(&o)
    );

    // Read back and checked: the disk is then read in place (random access), its
    // member hashed by a second thread.
    let verified = tmp.path().join("verified.vhdx");
    let o = vdconv(&[&"convert", &"--verify", &"--json", &ova, &verified]);
    ok(&o);
    assert_eq!(json(&o)["disks"][0]["report"]["verified"], true);
    assert_eq!(
        check_against_qemu(&verified, "vhdx", unpacked, tmp.path()),
        from_file
    );

    // The same OVA through a pipe: the same contents.
    let piped = tmp.path().join("piped.vhdx");
    let o = vdconv_piped(&ova, &[&"convert", &"--json", &"-", &piped]);
    ok(&o);
    assert_eq!(json(&o)["read"], "pipe");
    assert_eq!(
        check_against_qemu(&piped, "vhdx", unpacked, tmp.path()),
        from_file
    );

    // A fixed VHD for Azure from the pipe, rounded to whole MiB is a no-op here.
    let azure = tmp.path().join("azure.vhd");
    let o = vdconv_piped(&ova, &[&"convert", &"--target", &"azure", &"-", &azure]);
    assert!(!o.status.success(), "5 MiB is under Azure's 20 MiB");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(!azure.exists());
    let fixed = tmp.path().join("fixed.vhd");
    let o = vdconv_piped(&ova, &[&"convert", &"--type", &"fixed", &"-", &fixed]);
    ok(&o);
    check_against_qemu(&fixed, "vhd", unpacked, tmp.path());
}

#[test]
fn three_disks_efi_sha1_into_a_folder_from_a_file_and_a_pipe() {
    if !tools() {
        return;
    }
    let tmp = common::tempdir();
    let mut plans = vec![
        plan("db01-disk1.vmdk", 4, 2, Store::Plain),
        plan("db01-disk2.vmdk", 2, 3, Store::Plain),
        plan("db01-disk3.vmdk", 3, 4, Store::Plain),
    ];
    plans[1].unit = 1;
    plans[2].parent = "6";
    let vm = stage(tmp.path(), "db01", &plans, Some("efi"), Some(true), "SHA1");
    let ova = vm.ova("gnu");
    let dir = tmp.path().join("out");
    let o = vdconv(&[&"convert", &"--json", &ova, &dir]);
    ok(&o);
    let r = json(&o);
    assert_eq!(r["vm"]["secure_boot"], true);
    assert_eq!(r["suggested_target"], "hyperv-gen2");
    assert_eq!(r["files"].as_array().unwrap().len(), 3);
    assert_eq!(r["manifest"]["algorithms"], serde_json::json!(["sha1"]));
    assert_eq!(r["manifest"]["verified"].as_array().unwrap().len(), 4);
    assert_eq!(r["disks"][2]["controller"]["controller"], "sata");
    assert_eq!(
        listing(&dir),
        ["db01-disk1.vhdx", "db01-disk2.vhdx", "db01-disk3.vhdx"]
    );
    let piped = tmp.path().join("piped");
    let o = vdconv_piped(&ova, &[&"convert", &"-", &piped]);
    ok(&o);
    assert!(
        stderr(&o).contains("vdconv: manifest db01.mf: 4 files verified (SHA1)"),
        "{}",
        stderr(&o)
    );
    for (href, unpacked, _) in &vm.disks {
        let name = href.replace(".vmdk", ".vhdx");
        let a = check_against_qemu(&dir.join(&name), "vhdx", unpacked, tmp.path());
        let b = check_against_qemu(&piped.join(&name), "vhdx", unpacked, tmp.path());
        assert_eq!(a, b, "{href}: file and pipe give the same contents");
    }
    // -O vhd makes every disk a VHD; --disk picks one, DST is then the file.
    let vhds = tmp.path().join("vhds");
    ok(&vdconv(&[&"convert", &"-O", &"vhd", &ova, &vhds]));
    check_against_qemu(
        &vhds.join("db01-disk2.vhd"),
        "vhd",
        vm.unpacked("db01-disk2.vmdk"),
        tmp.path(),
    );
    let one = tmp.path().join("one.vhdx");
    ok(&vdconv(&[&"convert", &"--disk", &"3", &ova, &one]));
    check_against_qemu(&one, "vhdx", vm.unpacked("db01-disk3.vmdk"), tmp.path());
    let o = vdconv(&[&"convert", &"--disk", &"9", &ova, &one]);
    assert_eq!(o.status.code(), Some(2));
    assert!(one_error_line(&o).contains("1 vmdisk1 (db01-disk1.vmdk)"));
    // An existing output is never replaced without --force, and nothing is written.
    let o = vdconv(&[&"convert", &ova, &dir]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    // A target that does not fit the firmware is a warning.
    let o = vdconv(&[
        &"convert",
        &"--force",
        &"--target",
        &"hyperv-gen1",
        &ova,
        &dir,
    ]);
    ok(&o);
    assert!(
        stderr(&o).contains("vdconv: warning: the VM boots with EFI"),
        "{}",
        stderr(&o)
    );
}

const LONG: &str = "a-virtual-machine-with-a-rather-long-name-exported-by-a-tool-that-keeps-it-whole-in-every-file-disk3.vmdk";

#[test]
fn gzip_and_chunked_disks_from_a_file_a_folder_and_a_pipe() {
    if !tools() {
        return;
    }
    let tmp = common::tempdir();
    let mut plans = vec![
        plan("mix-disk1.vmdk", 4, 5, Store::Gzip),
        plan("mix-disk2.vmdk", 3, 6, Store::Chunked(256 << 10)),
        // Past ustar's 100-byte name field: pax writes it in an extended header.
        plan(LONG, 2, 7, Store::Plain),
    ];
    plans[1].unit = 1;
    plans[2].unit = 2;
    let vm = stage(tmp.path(), "mix", &plans, Some("efi"), None, "SHA256");
    assert!(
        vm.disks[1].2.len() > 2,
        "the disk is split in several chunks"
    );
    let ova = vm.ova("pax");
    let mut digests = Vec::new();
    for (label, src, piped) in [
        ("file", ova.clone(), false),
        ("folder", vm.ovf(), false),
        ("pipe", ova.clone(), true),
    ] {
        let dir = tmp.path().join(label);
        let o = if piped {
            vdconv_piped(&src, &[&"convert", &"--json", &"-", &dir])
        } else {
            vdconv(&[&"convert", &"--json", &src, &dir])
        };
        ok(&o);
        let r = json(&o);
        // Every chunk is listed and verified on its own.
        assert_eq!(
            r["manifest"]["verified"].as_array().unwrap().len(),
            vm.order.len() - 1,
            "{label}"
        );
        let mut these = Vec::new();
        for (href, unpacked, _) in &vm.disks {
            let out = dir.join(href.replace(".vmdk", ".vhdx"));
            these.push(check_against_qemu(&out, "vhdx", unpacked, tmp.path()));
        }
        digests.push(these);
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
    // One disk picked from each kind of storage.
    for (which, href) in [
        ("1", "mix-disk1.vmdk"),
        ("mix-disk2.vmdk", "mix-disk2.vmdk"),
    ] {
        let out = tmp.path().join(format!("picked-{which}.vhd"));
        let o = vdconv_piped(&ova, &[&"convert", &"--disk", &which, &"-", &out]);
        ok(&o);
        check_against_qemu(&out, "vhd", vm.unpacked(href), tmp.path());
    }
}

#[test]
fn info_describes_the_vm_and_each_disk() {
    if !tools() {
        return;
    }
    let tmp = common::tempdir();
    let mut plans = vec![
        plan("info-disk1.vmdk", 3, 8, Store::Plain),
        plan("info-disk2.vmdk", 2, 9, Store::Gzip),
    ];
    plans[1].parent = "5";
    let vm = stage(
        tmp.path(),
        "info",
        &plans,
        Some("efi"),
        Some(true),
        "SHA256",
    );
    let ova = vm.ova("ustar");
    for src in [&ova, &vm.ovf()] {
        let o = vdconv(&[&"info", &"--json", src]);
        ok(&o);
        let r = json(&o);
        assert_eq!(r["vm"]["name"], "info");
        assert_eq!(r["vm"]["os_type"], "windows7Server64Guest");
        assert_eq!(r["vm"]["os_id"], 103);
        assert_eq!(r["vm"]["firmware"], "efi");
        assert_eq!(r["vm"]["secure_boot"], true);
        assert_eq!(r["vm"]["cpus"], 2);
        assert_eq!(r["vm"]["memory_bytes"], 4096 * MIB);
        assert_eq!(r["nics"][0]["subtype"], "E1000");
        assert_eq!(r["suggested_target"], "hyperv-gen2");
        let d = &r["disks"];
        assert_eq!(d[0]["capacity"], 3 * MIB);
        assert_eq!(d[0]["href"], "info-disk1.vmdk");
        assert_eq!(d[0]["read"], "in place");
        assert_eq!(d[0]["controller"]["controller"], "scsi");
        assert_eq!(d[0]["controller"]["subtype"], "lsilogicsas");
        assert_eq!(d[0]["controller"]["unit"], 0);
        assert_eq!(d[0]["image"]["format"], "vmdk");
        assert_eq!(d[0]["image"]["layout"], "streamOptimized");
        assert_eq!(d[0]["image"]["virtual_size"], 3 * MIB);
        assert!(d[0]["image"]["allocated_bytes"].as_u64().unwrap() > 0);
        assert_eq!(d[1]["read"], "front to back");
        assert_eq!(d[1]["compression"], "gzip");
        assert_eq!(d[1]["controller"]["controller"], "ide");
        assert_eq!(d[1]["stream"]["virtual_size"], 2 * MIB);
        assert_eq!(r["warnings"], serde_json::json!([]));
    }
    let o = vdconv(&[&"info", &ova]);
    ok(&o);
    let text = stdout(&o);
    for needle in [
        "vm: info",
        "firmware: EFI, secure boot on",
        "disk 2: vmdisk2 (info-disk2.vmdk)",
        "controller: scsi (lsilogicsas) bus 0 unit 0",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
}

// ---------------------------------------------------------------------------------------
// Memory: a large disk through a pipe.

/// Peak resident memory of a command, from `/usr/bin/time -v`, and its output.
fn peak_rss(input: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> (u64, Output) {
    let mut cat = ova_build::cat_pipe(input);
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v").arg(env!("CARGO_BIN_EXE_vdconv"));
    for a in args {
        cmd.arg(a);
    }
    let out = cmd
        .stdin(cat.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run /usr/bin/time");
    // vdconv is done; so is what it did not read (the read end is still open here).
    drop(cmd);
    let _ = cat.kill();
    let _ = cat.wait();
    let err = stderr(&out);
    let kib: u64 = err
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .unwrap_or_else(|| panic!("no RSS in {err}"))
        .parse()
        .unwrap();
    (kib * 1024, out)
}

#[test]
fn a_4_gib_disk_through_a_pipe_stays_under_64_mib() {
    if !tools() || !common::have("/usr/bin/time", "the Debian package time") {
        return;
    }
    let tmp = common::tempdir();
    let work = tmp.path().join("big-unpacked");
    fs::create_dir_all(&work).unwrap();
    // 4 GiB, mostly never written: a few MiB of data spread over it.
    let raw = work.join("big.raw");
    let f = File::create(&raw).unwrap();
    f.set_len(4 << 30).unwrap();
    let mut rng = common::Rng::new(11);
    let mut buf = vec![0u8; MIB as usize];
    for i in 0..8u64 {
        rng.fill(&mut buf);
        f.write_all_at(&buf, i * (512 * MIB) + i * 12345 * 512)
            .unwrap();
    }
    f.write_all_at(&buf[..512], (4 << 30) - 512).unwrap();
    drop(f);
    let vmdk = work.join("big-disk1.vmdk");
    common::qemu_vmdk(&raw, &vmdk, "subformat=streamOptimized");
    fs::remove_file(&raw).unwrap();
    let dir = tmp.path().join("big");
    fs::create_dir_all(&dir).unwrap();
    let mut specs = Vec::new();
    let mut files = Vec::new();
    let p = plan("big-disk1.vmdk", 4096, 0, Store::Plain);
    let disks = vec![store(&dir, &vmdk, &p, 0, &mut specs, &mut files)];
    let vm = finish_stage(dir, "big", specs, disks, files, Some("efi"), None, "SHA256");
    let ova = vm.ova("ustar");
    let out = tmp.path().join("big.vhdx");
    let (rss, o) = peak_rss(&ova, &[&"convert", &"-q", &"-", &out]);
    ok(&o);
    eprintln!(
        "peak RSS converting a 4 GiB disk from a pipe: {} KiB",
        rss >> 10
    );
    assert!(rss < 64 * MIB, "peak RSS {} MiB", rss >> 20);
    check_against_qemu(&out, "vhdx", &vmdk, tmp.path());
}

// ---------------------------------------------------------------------------------------
// Damage and hostility: one error line, the exit code, the kind, nothing left behind.

/// A one-disk package to damage.
fn victim(tmp: &Path) -> Vm {
    stage(
        tmp,
        "victim",
        &[plan("victim-disk1.vmdk", 2, 12, Store::Plain)],
        Some("bios"),
        None,
        "SHA256",
    )
}

/// Converts `src` (from the file, or piped) into a fresh folder's `out` and expects
/// failure with `code`, kind `kind` in the JSON document, the needles in the error line,
/// nothing left in the folder, and a quick end.
fn expect_refusal(
    src: &Path,
    piped: bool,
    code: i32,
    kind: &str,
    needles: &[&str],
    scratch: &Path,
) {
    let outdir = scratch.join(format!("refused-{}", if piped { "pipe" } else { "file" }));
    let _ = fs::remove_dir_all(&outdir);
    fs::create_dir_all(&outdir).unwrap();
    let dst = outdir.join("vm.vhdx");
    for as_json in [false, true] {
        let started = Instant::now();
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"convert"];
        if as_json {
            args.push(&"--json");
        }
        let dash = Path::new("-");
        args.push(if piped { &dash } else { &src });
        args.push(&dst);
        let o = if piped {
            vdconv_piped(src, &args)
        } else {
            vdconv(&args)
        };
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        let line = one_error_line(&o);
        for n in needles {
            assert!(line.contains(n), "{line:?} should mention {n:?}");
        }
        if as_json {
            let r = json(&o);
            assert_eq!(r["error"]["kind"], kind, "{r}");
            assert_eq!(r["error"]["exit"], code);
        } else {
            assert!(stdout(&o).is_empty());
        }
        assert_eq!(
            listing(&outdir),
            Vec::<String>::new(),
            "nothing left behind"
        );
    }
}

/// Flips one byte of `member`'s data, `into` bytes in.
fn flip(ova: &Path, member: &str, into: u64) {
    let index = vdconv::ova::tar::index_file(&File::open(ova).unwrap(), ova).unwrap();
    let m = index.members.iter().find(|m| m.name == member).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(ova).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, m.offset + into).unwrap();
    f.write_all_at(&[b[0] ^ 0x55], m.offset + into).unwrap();
}

#[test]
fn a_flipped_byte_in_a_disk_fails_on_the_manifest_and_leaves_nothing() {
    if !tools() {
        return;
    }
    let tmp = common::tempdir();
    let vm = victim(tmp.path());
    let ova = vm.ova("ustar");
    // Inside the grains (the deflate check fails too: the manifest is named first), and
    // in a sector no table points at (only the manifest notices).
    let size = fs::metadata(vm.dir.join("victim-disk1.vmdk"))
        .unwrap()
        .len();
    for into in [200_000, size - 3] {
        let bad = tmp.path().join(format!("bad-{into}.ova"));
        fs::copy(&ova, &bad).unwrap();
        flip(&bad, "victim-disk1.vmdk", into);
        // The error gives both digests: the manifest's, and what was found.
        let listed = fs::read_to_string(vm.dir.join("victim.mf")).unwrap();
        let expected = listed
            .lines()
            .find(|l| l.contains("victim-disk1.vmdk"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .to_string();
        for piped in [false, true] {
            expect_refusal(
                &bad,
                piped,
                3,
                "manifest-mismatch",
                &[
                    "manifest victim.mf",
                    "victim-disk1.vmdk",
                    "SHA256 digest is ",
                    &format!("the manifest says {expected}"),
                ],
                tmp.path(),
            );
        }
        // Read in place (--verify): the hashing thread finds it.
        let out = tmp.path().join("verified.vhdx");
        let o = vdconv(&[&"convert", &"--verify", &bad, &out]);
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        assert!(one_error_line(&o).contains("manifest victim.mf"));
        assert!(!out.exists());
        // Not checked when asked not to: only a damaged grain then fails.
        let out = tmp.path().join("unchecked.vhdx");
        let _ = fs::remove_file(&out);
        let o = vdconv(&[&"convert", &"--no-verify-manifest", &bad, &out]);
        assert_eq!(o.status.success(), into != 200_000, "{}", stderr(&o));
    }
}

#[test]
fn a_missing_manifest_is_a_warning() {
    if !tools() {
        return;
    }
    let tmp = common::tempdir();
    let mut vm = victim(tmp.path());
    vm.order.retain(|n| !n.ends_with(".mf"));
    let ova = vm.ova("ustar");
    let out = tmp.path().join("out.vhdx");
    let o = vdconv_piped(&ova, &[&"convert", &"-", &out]);
    ok(&o);
    assert!(
        stderr(&o).contains("vdconv: warning: the package has no manifest"),
        "{}",
        stderr(&o)
    );
    check_against_qemu(&out, "vhdx", vm.unpacked("victim-disk1.vmdk"), tmp.path());
}

#[test]
fn hostile_members_and_descriptors_are_refused_cleanly() {
    if !tools() {
        return;
    }
    let tmp = common::tempdir();
    let vm = victim(tmp.path());
    let original = fs::read_to_string(vm.ovf()).unwrap();
    // The descriptor rewritten, and the manifest with it (so that what fails is the
    // descriptor's content, not its digest).
    let rebuild = |ovf: &str| {
        fs::write(vm.ovf(), ovf).unwrap();
        let mf = ova_build::manifest(&vm.dir, &["victim.ovf", "victim-disk1.vmdk"], "SHA256");
        fs::write(vm.dir.join("victim.mf"), mf).unwrap();
        vm.ova("ustar")
    };

    // A member named to leave the archive ('..', absolute): GNU tar -P keeps them.
    fs::write(tmp.path().join("evil.vmdk"), b"evil").unwrap();
    let abs = tmp.path().join("evil.vmdk");
    for (label, evil) in [
        ("dotdot", "../evil.vmdk".to_string()),
        ("absolute", abs.display().to_string()),
    ] {
        let ova = tmp.path().join(format!("{label}.ova"));
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"--format=gnu", &"-P", &"-cf", &ova, &"-C", &vm.dir];
        for n in &vm.order {
            args.push(n);
        }
        args.push(&evil);
        run_ok("tar", &args);
        for piped in [false, true] {
            expect_refusal(&ova, piped, 3, "path-refused", &[&evil], tmp.path());
        }
    }

    // An href leaving the folder, in an OVA and in a folder.
    fs::write(tmp.path().join("outside.vmdk"), b"secret").unwrap();
    let leaving = original.replace("victim-disk1.vmdk\"", "../outside.vmdk\"");
    let ova = rebuild(&leaving);
    for piped in [false, true] {
        expect_refusal(
            &ova,
            piped,
            3,
            "path-refused",
            &["../outside.vmdk"],
            tmp.path(),
        );
    }
    expect_refusal(
        &vm.ovf(),
        false,
        3,
        "path-refused",
        &["../outside.vmdk"],
        tmp.path(),
    );

    // A member larger than the archive.
    let ova = rebuild(&original);
    let index = vdconv::ova::tar::index_file(&File::open(&ova).unwrap(), &ova).unwrap();
    let at = index
        .members
        .iter()
        .find(|m| m.name == "victim-disk1.vmdk")
        .unwrap()
        .header_offset;
    patch_header(&ova, at, |h| h[124..136].copy_from_slice(b"77777777777\0"));
    for piped in [false, true] {
        expect_refusal(
            &ova,
            piped,
            3,
            "corrupt",
            &["victim-disk1.vmdk"],
            tmp.path(),
        );
    }

    // Entity tricks in the descriptor.
    let mut bomb =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE Envelope [\n <!ENTITY a \"lol\">\n");
    let mut prev = 'a';
    for name in 'b'..='k' {
        bomb.push_str(&format!(
            " <!ENTITY {name} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
        prev = name;
    }
    bomb.push_str("]>\n");
    let body = &original[original.find("<Envelope").unwrap()..];
    let ova = rebuild(&format!(
        "{bomb}{}",
        body.replace("<Name>victim</Name>", "<Name>&k;</Name>")
    ));
    for piped in [false, true] {
        expect_refusal(&ova, piped, 3, "path-refused", &["DOCTYPE"], tmp.path());
    }

    // A descriptor of tens of MB: refused unread.
    let padding = format!("<!--{}-->\n", "x".repeat(40 << 20));
    let ova = rebuild(&original.replacen('\n', &format!("\n{padding}"), 1));
    for piped in [false, true] {
        expect_refusal(
            &ova,
            piped,
            3,
            "unsupported",
            &["victim.ovf", "at most"],
            tmp.path(),
        );
    }
    let (rss, o) = peak_rss(&ova, &[&"convert", &"-", &tmp.path().join("x.vhdx")]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        rss < 32 * MIB,
        "refusing a 40 MB descriptor took {} MiB",
        rss >> 20
    );

    // A capacity that disagrees with the disk.
    let ova = rebuild(&original.replace("ovf:capacity=\"2\"", "ovf:capacity=\"3\""));
    for piped in [false, true] {
        expect_refusal(
            &ova,
            piped,
            3,
            "corrupt",
            &["capacity of 3145728 bytes", "holds 2097152 bytes"],
            tmp.path(),
        );
    }
    // info says it, as a warning.
    let o = vdconv(&[&"info", &ova]);
    ok(&o);
    assert!(
        stderr(&o).contains("capacity of 3145728 bytes"),
        "{}",
        stderr(&o)
    );
}

/// Rewrites a ustar header in place with `edit`, fixing its checksum.
fn patch_header(ova: &Path, at: u64, edit: impl FnOnce(&mut [u8; 512])) {
    let f = OpenOptions::new().read(true).write(true).open(ova).unwrap();
    let mut h = [0u8; 512];
    f.read_exact_at(&mut h, at).unwrap();
    edit(&mut h);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    f.write_all_at(&h, at).unwrap();
}

#[test]
fn what_a_pipe_cannot_read_in_order_is_named() {
    if !tools() {
        return;
    }
    let tmp = common::tempdir();
    let vm = victim(tmp.path());
    // The disk before the descriptor: fine from the file, refused from a pipe.
    let mut late = Vm {
        dir: vm.dir.clone(),
        name: "late".into(),
        order: vm.order.clone(),
        disks: Vec::new(),
    };
    late.order.rotate_left(2);
    let ova = late.ova("ustar");
    let out = tmp.path().join("late.vhdx");
    ok(&vdconv(&[&"convert", &ova, &out]));
    check_against_qemu(&out, "vhdx", vm.unpacked("victim-disk1.vmdk"), tmp.path());
    expect_refusal(
        &ova,
        true,
        3,
        "unsupported",
        &["victim-disk1.vmdk", "before the .ovf"],
        tmp.path(),
    );

    // A disk that is not streamOptimized: read in place from a file, refused from a pipe.
    let sparse_dir = tmp.path().join("sparse");
    fs::create_dir_all(&sparse_dir).unwrap();
    let raw = sparse_dir.join("d.raw");
    ova_build::raw_disk(&raw, 2, 13);
    let vmdk = vm.dir.join("victim-disk1.vmdk");
    fs::remove_file(&vmdk).unwrap();
    common::qemu_vmdk(&raw, &vmdk, "");
    let size = fs::metadata(&vmdk).unwrap().len();
    let ovf = fs::read_to_string(vm.ovf()).unwrap();
    let at = ovf.find("ovf:size=\"").unwrap() + 10;
    let end = at + ovf[at..].find('"').unwrap();
    fs::write(vm.ovf(), format!("{}{size}{}", &ovf[..at], &ovf[end..])).unwrap();
    let mf = ova_build::manifest(&vm.dir, &["victim.ovf", "victim-disk1.vmdk"], "SHA256");
    fs::write(vm.dir.join("victim.mf"), mf).unwrap();
    let ova = vm.ova("ustar");
    let out = tmp.path().join("sparse.vhdx");
    ok(&vdconv(&[&"convert", &ova, &out]));
    check_against_qemu(&out, "vhdx", &vmdk, tmp.path());
    expect_refusal(
        &ova,
        true,
        3,
        "unsupported",
        &["victim-disk1.vmdk", "not streamOptimized"],
        tmp.path(),
    );
}

#[test]
fn a_fifo_is_read_as_a_pipe_and_a_blank_disk_becomes_an_empty_image() {
    if !tools() {
        return;
    }
    let tmp = common::tempdir();
    let vm = victim(tmp.path());
    // A Disk without a file: an empty disk of 1 MiB the VM expects.
    let ovf = fs::read_to_string(vm.ovf()).unwrap();
    let blank = "    <Disk ovf:capacity=\"1\" ovf:capacityAllocationUnits=\"byte * 2^20\" ovf:diskId=\"scratch\"/>\n  </DiskSection>";
    fs::write(vm.ovf(), ovf.replace("  </DiskSection>", blank)).unwrap();
    let mf = ova_build::manifest(&vm.dir, &["victim.ovf", "victim-disk1.vmdk"], "SHA256");
    fs::write(vm.dir.join("victim.mf"), mf).unwrap();
    let ova = vm.ova("ustar");
    let fifo = tmp.path().join("incoming");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let writer = {
        let (ova, fifo) = (ova.clone(), fifo.clone());
        std::thread::spawn(move || {
            let mut f = OpenOptions::new().write(true).open(&fifo).unwrap();
            let _ = std::io::copy(&mut File::open(&ova).unwrap(), &mut f);
        })
    };
    let dir = tmp.path().join("out");
    let o = vdconv(&[&"convert", &"--json", &fifo, &dir]);
    writer.join().unwrap();
    ok(&o);
    let r = json(&o);
    assert_eq!(r["read"], "pipe");
    assert_eq!(listing(&dir), ["scratch.vhdx", "victim-disk1.vhdx"]);
    check_against_qemu(
        &dir.join("victim-disk1.vhdx"),
        "vhdx",
        vm.unpacked("victim-disk1.vmdk"),
        tmp.path(),
    );
    let empty = tmp.path().join("empty.vhdx");
    run_ok("qemu-img", &[&"create", &"-f", &"vhdx", &empty, &"1M"]);
    qemu_compare(&dir.join("scratch.vhdx"), "vhdx", &empty, "vhdx");
    assert_eq!(
        libvhdi_sha256(&dir.join("scratch.vhdx")),
        libvhdi_sha256(&empty)
    );
    // From the file, the same two images.
    let again = tmp.path().join("again");
    ok(&vdconv(&[&"convert", &ova, &again]));
    assert_eq!(listing(&again), ["scratch.vhdx", "victim-disk1.vhdx"]);
    // The package itself is never a destination, even with --force.
    let o = vdconv(&[
        &"convert", &"--force", &"--disk", &"1", &"-O", &"vhdx", &ova, &ova,
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(one_error_line(&o).contains("one of the input files"));
}

#[test]
fn a_bare_stream_vmdk_through_a_pipe_and_what_a_pipe_may_not_carry() {
    if !tools() {
        return;
    }
    let tmp = common::tempdir();
    let vm = victim(tmp.path());
    let vmdk = vm.unpacked("victim-disk1.vmdk").to_path_buf();
    let vmdk = vmdk.as_path();
    let out = tmp.path().join("bare.vhdx");
    let o = vdconv_piped(vmdk, &[&"convert", &"--json", &"-", &out]);
    ok(&o);
    assert_eq!(json(&o)["virtual_size"], 2 * MIB);
    check_against_qemu(&out, "vhdx", vmdk, tmp.path());
    // A VHD is no stream: save it to a file first.
    let vhd = tmp.path().join("x.vhd");
    ok(&vdconv(&[&"convert", &vmdk, &vhd]));
    let o = vdconv_piped(&vhd, &[&"convert", &"-", &tmp.path().join("y.vhdx")]);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_error_line(&o).contains("OVA (a tar archive) or a streamOptimized VMDK"));
    // Options for single images are refused for an export, not ignored; and the other
    // way round.
    let ova = vm.ova("ustar");
    for option in ["--keep-chain", "--inspect", "--ignore-cid"] {
        let o = vdconv(&[&"convert", &option, &ova, &tmp.path().join("k.vhdx")]);
        assert_eq!(o.status.code(), Some(2), "{option}: {}", stderr(&o));
        assert!(one_error_line(&o).contains(option));
    }
    let o = vdconv(&[&"convert", &ova, &"-"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = vdconv(&[
        &"convert",
        &"--disk",
        &"1",
        &vmdk,
        &tmp.path().join("z.vhdx"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(one_error_line(&o).contains("--disk: applies to OVA and OVF exports only"));
}

#[test]
fn an_interrupted_pipe_leaves_nothing_behind() {
    use std::os::unix::process::ExitStatusExt;
    if !tools() {
        return;
    }
    let tmp = common::tempdir();
    let vm = stage(
        tmp.path(),
        "slow",
        &[
            plan("slow-disk1.vmdk", 2, 14, Store::Plain),
            plan("slow-disk2.vmdk", 2, 15, Store::Plain),
        ],
        Some("bios"),
        None,
        "SHA256",
    );
    let ova = fs::read(vm.ova("ustar")).unwrap();
    let fifo = tmp.path().join("incoming");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let dir = tmp.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_vdconv"))
        .arg("convert")
        .arg(&fifo)
        .arg(&dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Everything but the last disk's second half: the first disk is staged by then.
    let mut f = OpenOptions::new().write(true).open(&fifo).unwrap();
    f.write_all(&ova[..ova.len() - (1 << 20)]).unwrap();
    let started = Instant::now();
    while !dir.exists() || listing(&dir).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no temporary file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run_ok("kill", &[&"-INT", &child.id().to_string()]);
    std::thread::sleep(Duration::from_millis(200));
    drop(f); // The writer goes away too, as curl does on Ctrl-C.
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.signal(), Some(2), "{}", stderr(&o));
    assert!(
        !dir.exists(),
        "the folder made for the run is gone: {:?}",
        listing(&dir)
    );
}

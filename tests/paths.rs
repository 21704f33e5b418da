//! Each data path of the pipeline, checked with independent readers: parallel inflate,
//! kernel copy (same file system) and its fallback (across file systems), and in place.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn flat_descriptor(dir: &Path, name: &str, flat: &str, sectors: u64) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, format!("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW {sectors} FLAT \"{flat}\" 0\n")).unwrap();
    p
}

#[test]
fn parallel_inflate_of_many_grains() {
    if !have_readers() {
        return;
    }
    let dir = tempdir();
    let raw = dir.path().join("r.raw");
    // 24 MiB: many whole 1 MiB chunks of 16 grains each, inflated on all cores.
    patterned_raw(&raw, 24 * MIB + 3 * 512, 12);
    let sha = file_sha256(&raw);
    let vmdk = dir.path().join("s.vmdk");
    qemu_vmdk(&raw, &vmdk, "subformat=streamOptimized");
    for (name, kind) in [("p.vhdx", "dynamic"), ("p.vhd", "fixed")] {
        let out = dir.path().join(name);
        assert_ok(&vdconv(&[&"convert", &"-q", &"--type", &kind, &vmdk, &out]));
        assert_eq!(
            libvhdi_sha256(&out),
            (24 * MIB + 3 * 512, sha.clone()),
            "{name}"
        );
    }
}

#[test]
fn kernel_copy_and_its_fallback_across_file_systems() {
    if !have_readers() {
        return;
    }
    let dir = tempdir();
    let raw = dir.path().join("r-flat.vmdk");
    // 12 MiB: past the 8 MiB the reader asks the kernel to read ahead, so those hints run.
    patterned_raw(&raw, 12 * MIB, 13);
    let sha = file_sha256(&raw);
    let src = flat_descriptor(dir.path(), "r.vmdk", "r-flat.vmdk", 12 * MIB / 512);
    // Same file system: the kernel copies (or shares) the data; -v says which path ran.
    let out = dir.path().join("same.vhd");
    let o = vdconv(&[&"convert", &"-v", &"--type", &"fixed", &src, &out]);
    assert_ok(&o);
    let log = stderr(&o);
    let line = log
        .lines()
        .find(|l| l.starts_with("data: "))
        .unwrap_or_else(|| panic!("-v names the copy path: {log}"));
    assert!(
        line.ends_with(", 0 bytes read and written"),
        "nothing went through the process: {line}"
    );
    assert_eq!(libvhdi_sha256(&out), (12 * MIB, sha.clone()));
    qemu_compare(&src, "vmdk", &out, "vpc");
    // Another file system (a tmpfs): the kernel refuses, the writer reads instead.
    let mnt = dir.path().join("other");
    let Some(other) = Tmpfs::mount(&mnt, "64m") else {
        return;
    };
    let out = mnt.join("other.vhdx");
    let o = vdconv(&[&"convert", &"-v", &"--type", &"fixed", &src, &out]);
    let result = (o.status.code(), libvhdi_sha256(&out));
    drop(other);
    assert_eq!(result, (Some(0), (12 * MIB, sha)), "{}", stderr(&o));
    // Across file systems the data went through this process (tmpfs shares no blocks
    // with ext4; copy_file_range may or may not cross them, depending on the kernel).
    let log = stderr(&o);
    let line = log
        .lines()
        .find(|l| l.starts_with("data: "))
        .unwrap_or_else(|| panic!("-v names the copy path: {log}"));
    assert!(line.starts_with("data: 0 bytes shared"), "{line}");
}

#[test]
fn in_place_appends_a_footer_and_renames() {
    if !have_readers() {
        return;
    }
    let dir = tempdir();
    let raw = dir.path().join("d-flat.vmdk");
    patterned_raw(&raw, 25 * MIB + 512, 14);
    let sha = file_sha256(&raw);
    let desc = flat_descriptor(dir.path(), "d.vmdk", "d-flat.vmdk", (25 * MIB + 512) / 512);
    let before = fs::read(&desc).unwrap();
    let out = dir.path().join("d.vhd");
    let o = vdconv(&[&"convert", &"--in-place", &"--json", &desc, &out]);
    assert_ok(&o);
    assert!(!raw.exists(), "the flat file became the VHD");
    assert_eq!(fs::read(&desc).unwrap(), before, "descriptor untouched");
    assert_eq!(fs::metadata(&out).unwrap().len(), 25 * MIB + 1024);
    assert_eq!(libvhdi_sha256(&out), (25 * MIB + 512, sha));
    assert_eq!(qemu_virtual_size(&out, "vpc"), 25 * MIB + 512);
    assert_eq!(vdconv(&[&"check", &out]).status.code(), Some(0));

    // With --target azure the file first grows to a whole MiB.
    let raw = dir.path().join("a-flat.vmdk");
    patterned_raw(&raw, 25 * MIB + 512, 15);
    let mut padded = fs::read(&raw).unwrap();
    padded.resize(26 * MIB as usize, 0);
    let desc = flat_descriptor(dir.path(), "a.vmdk", "a-flat.vmdk", (25 * MIB + 512) / 512);
    let out = dir.path().join("a.vhd");
    assert_ok(&vdconv(&[
        &"convert",
        &"-q",
        &"--in-place",
        &"--target",
        &"azure",
        &desc,
        &out,
    ]));
    assert_eq!(libvhdi_sha256(&out), (26 * MIB, bytes_sha256(&padded)));
    assert_eq!(
        vdconv(&[&"check", &"--target", &"azure", &out])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn in_place_on_a_terabyte_takes_milliseconds() {
    let dir = tempdir();
    let raw = dir.path().join("big-flat.vmdk");
    let f = fs::File::create(&raw).unwrap();
    f.set_len(1 << 40).unwrap();
    f.write_all_at(b"boot", 0).unwrap();
    let desc = flat_descriptor(dir.path(), "big.vmdk", "big-flat.vmdk", (1u64 << 40) / 512);
    let out = dir.path().join("big.vhd");
    let t = Instant::now();
    assert_ok(&vdconv(&[&"convert", &"-q", &"--in-place", &desc, &out]));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(fs::metadata(&out).unwrap().len(), (1 << 40) + 512);
    let o = vdconv(&[&"info", &"--json", &out]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format"], "vhd");
    assert_eq!(v["layout"], "fixed");
    assert_eq!(v["virtual_size"], 1u64 << 40);
}

#[test]
fn in_place_refuses_and_says_why() {
    let dir = tempdir();
    let raw = dir.path().join("x-flat.vmdk");
    fs::write(&raw, vec![1u8; 8192]).unwrap();
    let desc = flat_descriptor(dir.path(), "x.vmdk", "x-flat.vmdk", 8);
    let cases: [(&[&str], &str); 4] = [
        (&["x.vhdx"], "makes a fixed VHD only"),
        (
            &["x.vhd", "--type", "dynamic"],
            "does not go with --in-place",
        ),
        (&["x.vhd", "--verify"], "nothing to verify"),
        (&["x.vhd"], "8192 bytes but its extent is 4096"),
    ];
    for (args, needle) in cases {
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"convert", &"--in-place", &desc];
        let dst = dir.path().join(args[0]);
        a.push(&dst);
        for x in &args[1..] {
            a.push(x);
        }
        let o = vdconv(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    // A sparse VMDK has no flat file to reuse.
    let o = vdconv(&[
        &"convert",
        &"--in-place",
        &fixture("handmade/split-sparse/disk.vmdk"),
        &dir.path().join("s.vhd"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not FLAT") || stderr(&o).contains("extents"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        fs::metadata(&raw).unwrap().len(),
        8192,
        "flat file untouched"
    );
    assert_eq!(listing(dir.path()), ["x-flat.vmdk", "x.vmdk"]);
}

//! `vdconv compare` and `convert --verify`.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;

use common::*;
use serde_json::Value;

fn flat_vmdk(dir: &std::path::Path, name: &str, raw: &std::path::Path) -> std::path::PathBuf {
    let size = fs::metadata(raw).unwrap().len();
    let desc = dir.join(format!("{name}.vmdk"));
    fs::write(
        &desc,
        format!("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW {} FLAT \"{}\" 0\n", size / 512, raw.file_name().unwrap().to_string_lossy()),
    )
    .unwrap();
    desc
}

#[test]
fn identical_different_and_sizes() {
    let dir = tempdir();
    let a_raw = dir.path().join("a.raw");
    patterned_raw(&a_raw, 3 * MIB, 4);
    let b_raw = dir.path().join("b.raw");
    fs::copy(&a_raw, &b_raw).unwrap();
    let a = flat_vmdk(dir.path(), "a", &a_raw);
    let b = flat_vmdk(dir.path(), "b", &b_raw);
    let vhdx = dir.path().join("a.vhdx");
    assert_ok(&vdconv(&[&"convert", &a, &vhdx, &"-q"]));

    let o = vdconv(&[&"compare", &a, &vhdx]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("identical"));

    // One byte changed in the middle of a hole.
    fs::File::options()
        .write(true)
        .open(&b_raw)
        .unwrap()
        .write_all_at(&[1], 2 * MIB + 4097)
        .unwrap();
    let o = vdconv(&[&"compare", &"--json", &vhdx, &b]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["identical"], false);
    assert_eq!(v["first_difference"], 2 * MIB + 4097);
    assert_eq!(v["size_a"], 3 * MIB);

    // Same contents, one disk longer by zeros: identical, as qemu-img compare judges,
    // unless --strict asks for equal sizes too.
    let c_raw = dir.path().join("c.raw");
    fs::copy(&a_raw, &c_raw).unwrap();
    let f = fs::File::options().write(true).open(&c_raw).unwrap();
    f.set_len(4 * MIB).unwrap();
    let c = flat_vmdk(dir.path(), "c", &c_raw);
    let o = vdconv(&[&"compare", &"--json", &a, &c]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["identical"], true);
    assert_eq!(v["zero_tail"], true);
    assert_eq!(v["first_difference"], Value::Null);
    assert_eq!(v["size_b"], 4 * MIB);
    assert_eq!(v["a"], a.display().to_string());
    assert_eq!(v["b"], c.display().to_string());
    let o = vdconv(&[&"compare", &"--strict", &a, &c]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("tail of zeros"), "{}", stdout(&o));
    // A non-zero byte in the tail is a difference, found where it is.
    f.write_all_at(&[9], 3 * MIB + 100).unwrap();
    let o = vdconv(&[&"compare", &"--json", &c, &a]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["first_difference"], 3 * MIB + 100);
    assert_eq!(v["zero_tail"], false);
}

#[test]
fn verify_reports_the_sha256_of_the_contents() {
    let dir = tempdir();
    let raw = dir.path().join("r.raw");
    patterned_raw(&raw, 5 * MIB + 512, 8);
    let sha = file_sha256(&raw);
    let src = flat_vmdk(dir.path(), "r", &raw);
    for (name, kind) in [
        ("o.vhd", "fixed"),
        ("o2.vhd", "dynamic"),
        ("o.vhdx", "dynamic"),
        ("o2.vhdx", "fixed"),
    ] {
        let out = dir.path().join(name);
        let o = vdconv(&[
            &"convert",
            &src,
            &out,
            &"--type",
            &kind,
            &"--verify",
            &"--json",
        ]);
        assert_ok(&o);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["verified"], true);
        assert_eq!(v["sha256"], sha.as_str(), "{name}");
        assert_eq!(v["virtual_size"], 5 * MIB + 512);
    }
}

#[test]
fn hash_of_an_empty_range_is_zeros_without_reading() {
    // The library hashes unallocated ranges as zeros: an all-hole disk gives the SHA-256
    // of that many zero bytes.
    let dir = tempdir();
    let raw = dir.path().join("z.raw");
    fs::File::create(&raw).unwrap().set_len(2 * MIB).unwrap();
    let src = flat_vmdk(dir.path(), "z", &raw);
    let out = dir.path().join("z.vhdx");
    assert_ok(&vdconv(&[&"convert", &src, &out, &"-q"]));
    let mut disk = vdconv::open(&out, &vdconv::OpenOptions::default()).unwrap();
    let hash = vdconv::compare::content_sha256(disk.as_mut(), &vdconv::Cancel::new(), &mut |_| {})
        .unwrap();
    assert_eq!(
        vdconv::compare::hex(&hash),
        bytes_sha256(&vec![0u8; 2 * MIB as usize])
    );
}

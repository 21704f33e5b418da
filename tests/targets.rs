//! Azure and Hyper-V targets, partition inspection, `check --target azure`, --sparse.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("JSON: {}{}", stdout(o), stderr(o)))
}

fn to_vmdk(raw: &Path, adapter: &str) -> PathBuf {
    let vmdk = raw.with_extension("vmdk");
    qemu_vmdk(raw, &vmdk, &format!("adapter_type={adapter}"));
    vmdk
}

#[test]
fn azure_rounds_to_whole_mib_and_pads_with_zeros() {
    if !have_readers() {
        return;
    }
    let dir = tempdir();
    let raw = dir.path().join("a.raw");
    // 100 MiB + 12345 bytes; VMDK holds whole sectors, so the disk is 100 MiB + 12800.
    patterned_raw(&raw, 100 * MIB + 12345, 3);
    let vmdk = to_vmdk(&raw, "ide");
    let out = dir.path().join("azure.vhd");
    let o = vdconv(&[&"convert", &"--target", &"azure", &"--json", &vmdk, &out]);
    assert_ok(&o);
    let v = json(&o);
    assert_eq!(v["type"], "fixed");
    assert_eq!(v["format"], "vhd");
    assert_eq!(v["source_size"], 100 * MIB + 12800);
    assert_eq!(v["virtual_size"], 101 * MIB);
    assert_eq!(v["rounded"], true);
    assert!(
        stderr(&o).contains("rounded up from 104870400 to 105906176"),
        "{}",
        stderr(&o)
    );
    assert_eq!(qemu_virtual_size(&out, "vpc"), 101 * MIB);
    assert_eq!(fs::metadata(&out).unwrap().len(), 101 * MIB + 512);
    // Identical up to the original size, zeros after (qemu-img compare checks both).
    qemu_compare(&vmdk, "vmdk", &out, "vpc");
    let mut padded = fs::read(&raw).unwrap();
    padded.resize((101 * MIB) as usize, 0);
    assert_eq!(libvhdi_sha256(&out), (101 * MIB, bytes_sha256(&padded)));
    let o = vdconv(&[&"check", &"--target", &"azure", &out]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn azure_refuses_what_it_cannot_take() {
    let dir = tempdir();
    let small = fixture("handmade/split-flat/disk.vmdk"); // about 1 MiB
    let o = vdconv(&[
        &"convert",
        &"--target",
        &"azure",
        &small,
        &dir.path().join("s.vhd"),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("at least 20 MiB"));
    let o = vdconv(&[
        &"convert",
        &"--target",
        &"azure",
        &small,
        &dir.path().join("s.vhdx"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("only fixed VHD"));
    let o = vdconv(&[
        &"convert",
        &"--target",
        &"azure",
        &"--type",
        &"dynamic",
        &small,
        &dir.path().join("s.vhd"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = vdconv(&[
        &"convert",
        &"--target",
        &"hyperv-gen2",
        &small,
        &dir.path().join("s.vhd"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("only from VHDX"));
    assert!(listing(dir.path()).is_empty());
}

/// sfdisk lives in /usr/sbin, which a non-login PATH may lack.
fn sfdisk() -> String {
    ["/usr/sbin/sfdisk", "/sbin/sfdisk"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("sfdisk")
        .to_string()
}

/// A 30 MiB raw disk partitioned by sfdisk with `script`.
fn partitioned(dir: &Path, name: &str, script: &str) -> PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    fs::File::create(&raw).unwrap().set_len(30 * MIB).unwrap();
    let mut child = std::process::Command::new(sfdisk())
        .args(["-q", raw.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    raw
}

#[test]
fn partition_tables_and_target_warnings() {
    if !have("qemu-img", "qemu-utils") || !have(&sfdisk(), "the Debian package fdisk") {
        return;
    }
    let dir = tempdir();
    let mbr_raw = partitioned(dir.path(), "mbr", "label: dos\n,10M,83,*\n,,7\n");
    // Boot code in the MBR, as an installed system has.
    fs::File::options()
        .write(true)
        .open(&mbr_raw)
        .unwrap()
        .write_all_at(&[0xEB, 0x63, 0x90], 0)
        .unwrap();
    let gpt_raw = partitioned(dir.path(), "gpt", "label: gpt\n,10M,U\n,,L\n");
    let none_raw = dir.path().join("none.raw");
    patterned_raw(&none_raw, 30 * MIB, 2);
    let mbr = to_vmdk(&mbr_raw, "ide");
    let gpt = to_vmdk(&gpt_raw, "lsilogic");
    let none = to_vmdk(&none_raw, "ide");

    let v = json(&vdconv(&[&"info", &"--json", &mbr]));
    let t = &v["partitions"];
    assert_eq!(t["scheme"], "mbr");
    assert_eq!(t["bootable"], true);
    assert_eq!(t["partitions"].as_array().unwrap().len(), 2);
    assert_eq!(t["partitions"][0]["type_id"], "0x83");
    assert_eq!(t["partitions"][0]["start"], MIB);
    assert_eq!(t["partitions"][0]["size"], 10 * MIB);
    assert_eq!(t["partitions"][0]["bootable"], true);
    assert_eq!(
        t["partitions"][1]["type_name"],
        "Windows basic data (NTFS/exFAT)"
    );

    let v = json(&vdconv(&[&"info", &"--json", &gpt]));
    let t = &v["partitions"];
    assert_eq!(t["scheme"], "gpt");
    assert_eq!(t["bootable"], true, "has an EFI system partition");
    assert_eq!(t["gpt"]["primary_header_valid"], true);
    assert_eq!(t["gpt"]["backup_header_valid"], true);
    assert_eq!(t["gpt"]["entries_valid"], true);
    assert_eq!(t["partitions"][0]["type_name"], "EFI system");
    assert_eq!(t["partitions"][1]["type_name"], "Linux filesystem");
    assert_eq!(t["problems"].as_array().unwrap().len(), 0);
    assert!(
        v["vmdk"]["adapter_hyperv"]
            .as_str()
            .unwrap()
            .contains("generation 1 boots only from IDE")
    );

    let v = json(&vdconv(&[&"info", &"--json", &none]));
    assert_eq!(v["partitions"]["scheme"], "none");

    let warns = |src: &Path, target: &str, dst: &str| -> String {
        let out = dir.path().join(dst);
        let _ = fs::remove_file(&out);
        let o = vdconv(&[&"convert", &"--target", &target, &src, &out]);
        assert_ok(&o);
        stderr(&o)
    };
    let w = warns(&gpt, "hyperv-gen1", "g1.vhdx");
    assert!(w.contains("boots only MBR disks"), "{w}");
    assert!(w.contains("SCSI"), "lsilogic on generation 1: {w}");
    let w = warns(&mbr, "hyperv-gen2", "g2.vhdx");
    assert!(w.contains("generation 2 boots with UEFI from GPT"), "{w}");
    let w = warns(&gpt, "hyperv-gen2", "g3.vhdx");
    assert!(!w.contains("warning"), "GPT on generation 2 fits: {w}");
    let w = warns(&mbr, "hyperv-gen1", "g4.vhd");
    assert!(
        !w.contains("warning"),
        "MBR with IDE on generation 1 fits: {w}"
    );
    let w = warns(&none, "azure", "a.vhd");
    assert!(w.contains("no partition table"), "{w}");
    let w = warns(&gpt, "azure", "b.vhd");
    assert!(w.contains("generation 2 VM"), "{w}");
    // Damage the backup GPT header: reported as a problem.
    let mut data = fs::read(&gpt_raw).unwrap();
    let last = data.len() - 512;
    data[last + 40] ^= 0xFF; // first usable LBA, inside the CRC-covered 92 bytes
    fs::write(&gpt_raw, data).unwrap();
    let gpt2 = to_vmdk(&gpt_raw, "ide");
    let v = json(&vdconv(&[&"info", &"--json", &gpt2]));
    assert_eq!(v["partitions"]["gpt"]["backup_header_valid"], false);
    assert_eq!(v["partitions"]["problems"].as_array().unwrap().len(), 1);
}

fn rules(path: &Path) -> Vec<String> {
    let o = vdconv(&[&"check", &"--target", &"azure", &"--json", &path]);
    let v = json(&o);
    assert_eq!(v["rules"], "azure");
    let found: Vec<String> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(o.status.code(), Some(if found.is_empty() { 0 } else { 1 }));
    found
}

#[test]
fn check_target_azure_gives_exactly_each_finding() {
    let dir = tempdir();
    let raw = dir.path().join("r.raw");
    patterned_raw(&raw, 25 * MIB + 512, 6);
    let src = dir.path().join("r.vmdk");
    fs::write(
        &src,
        format!(
            "createType=\"monolithicFlat\"\nRW {} FLAT \"r.raw\" 0\n",
            (25 * MIB + 512) / 512
        ),
    )
    .unwrap();
    let make = |name: &str, extra: &[&str]| -> PathBuf {
        let out = dir.path().join(name);
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"convert", &"-q", &src, &out];
        for e in extra {
            a.push(e);
        }
        assert_ok(&vdconv(&a));
        out
    };
    let good = make("good.vhd", &["--target", "azure"]);
    assert!(rules(&good).is_empty());
    let whole = dir.path().join("w.vmdk");
    fs::write(
        &whole,
        format!(
            "createType=\"monolithicFlat\"\nRW {} FLAT \"r.raw\" 0\n",
            25 * MIB / 512
        ),
    )
    .unwrap();
    let dynamic = dir.path().join("dyn.vhd");
    assert_ok(&vdconv(&[&"convert", &"-q", &whole, &dynamic]));
    assert_eq!(rules(&dynamic), ["azure-fixed"]);
    let odd = make("odd.vhd", &["--type", "fixed"]);
    assert_eq!(rules(&odd), ["azure-whole-mib"]);
    let bad = make("bad.vhd", &["--target", "azure"]);
    let f = fs::File::options().write(true).open(&bad).unwrap();
    let len = f.metadata().unwrap().len();
    f.write_all_at(&[0x11], len - 512 + 100).unwrap();
    assert_eq!(rules(&bad), ["azure-footer-checksum"]);
    let vhdx = make("x.vhdx", &[]);
    assert_eq!(rules(&vhdx), ["azure-format"]);
}

#[test]
fn sparse_never_writes_every_byte() {
    let dir = tempdir();
    let raw = dir.path().join("h.raw");
    // 8 MiB of holes with one sector of data.
    let f = fs::File::create(&raw).unwrap();
    f.set_len(8 * MIB).unwrap();
    f.write_all_at(b"x", 3 * MIB).unwrap();
    let src = dir.path().join("h.vmdk");
    fs::write(
        &src,
        "createType=\"monolithicFlat\"\nRW 16384 FLAT \"h.raw\" 0\n",
    )
    .unwrap();
    for (name, format, mode) in [
        ("a.vhd", "vhd", "auto"),
        ("n.vhd", "vhd", "never"),
        ("n.vhdx", "vhdx", "never"),
    ] {
        let out = dir.path().join(name);
        assert_ok(&vdconv(&[
            &"convert",
            &"-q",
            &"--type",
            &"fixed",
            &"--sparse",
            &mode,
            &"-O",
            &format,
            &src,
            &out,
        ]));
        let m = fs::metadata(&out).unwrap();
        let allocated = m.blocks() * 512;
        if mode == "never" {
            assert!(
                allocated >= m.len(),
                "{name}: {allocated} bytes allocated of {}",
                m.len()
            );
        } else {
            assert!(
                allocated < 2 * MIB,
                "{name}: holes kept, {allocated} bytes allocated"
            );
        }
        let o = vdconv(&[&"compare", &src, &out]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    }
}

#[test]
fn verify_reports_both_digests_when_a_target_rounds_the_size() {
    let dir = tempdir();
    let raw = dir.path().join("r.raw");
    patterned_raw(&raw, 21 * MIB + 4096, 33);
    let source_sha = file_sha256(&raw);
    let out = dir.path().join("a.vhd");
    let o = vdconv(&[
        &"convert",
        &"--json",
        &"--verify",
        &"--target",
        &"azure",
        &"-f",
        &"raw",
        &raw,
        &out,
    ]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["rounded"], true);
    assert_eq!(v["verified"], true);
    assert_eq!(v["source_sha256"], source_sha.as_str());
    let mut padded = fs::read(&raw).unwrap();
    padded.resize(22 * MIB as usize, 0);
    assert_eq!(v["sha256"], bytes_sha256(&padded).as_str());
    assert_eq!(libvhdi_sha256(&out), (22 * MIB, bytes_sha256(&padded)));
}

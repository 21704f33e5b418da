//! `vdconv check`: valid files are clean; each broken rule gives exactly its finding.

mod common;
#[path = "common/vhdx_log.rs"]
mod vhdx_log;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// The rules `check --json` reports, in order.
fn rules(path: &Path) -> (i32, Vec<String>) {
    let o = vdconv(&[&"check", &"--json", &path]);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("JSON: {}{}", stdout(&o), stderr(&o)));
    let rules = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect();
    (o.status.code().unwrap(), rules)
}

/// Exactly `rule` is reported, and the exit says whether it breaks a must rule (1) or
/// only a should or habit (0).
fn assert_only(path: &Path, rule: &str) {
    let (code, found) = rules(path);
    assert_eq!(found, [rule], "findings for {}", path.display());
    let severity = vdconv::rules::by_id(rule)
        .expect("a rule of the table")
        .severity;
    let must = severity == vdconv::rules::Severity::Must;
    assert_eq!(code, if must { 1 } else { 0 }, "{rule} is {severity:?}");
}

/// A valid dynamic VHDX (2 MiB blocks) of the split-sparse fixture, copied for breaking.
fn fresh(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"convert", &"-q"];
    let src = fixture("handmade/split-sparse/disk.vmdk");
    a.push(&src);
    a.push(&out);
    for x in args {
        a.push(x);
    }
    assert_ok(&vdconv(&a));
    assert_eq!(rules(&out), (0, vec![]), "fresh output is clean");
    out
}

fn patch(path: &Path, at: usize, bytes: &[u8]) {
    let mut data = fs::read(path).unwrap();
    data[at..at + bytes.len()].copy_from_slice(bytes);
    fs::write(path, data).unwrap();
}

/// Recomputes the CRC-32C of a VHDX structure of `len` bytes at `at`.
fn reseal(path: &Path, at: usize, len: usize) {
    let mut data = fs::read(path).unwrap();
    data[at + 4..at + 8].fill(0);
    let crc = crc32c::crc32c(&data[at..at + len]);
    data[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    fs::write(path, data).unwrap();
}

const H1: usize = 64 << 10;
const META: usize = 2 << 20;
const BAT: usize = 3 << 20;

fn le64(path: &Path, at: usize) -> u64 {
    u64::from_le_bytes(fs::read(path).unwrap()[at..at + 8].try_into().unwrap())
}

#[test]
fn vhdx_header_checksum_byte() {
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhdx", &["--block-size", "1M"]);
    patch(&p, H1 + 100, &[1]);
    assert_only(&p, "vhdx-header-checksum");
}

#[test]
fn vhdx_header_reserved_field() {
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhdx", &["--block-size", "1M"]);
    patch(&p, H1 + 200, &[1]);
    reseal(&p, H1, 4096);
    assert_only(&p, "vhdx-header-reserved");
}

#[test]
fn vhdx_block_beyond_end_of_file() {
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhdx", &["--block-size", "1M"]);
    let len = fs::metadata(&p).unwrap().len();
    let entry = ((len >> 20) << 20) | 6; // starts at the end of the file
    patch(&p, BAT, &entry.to_le_bytes());
    assert_only(&p, "vhdx-block-beyond-eof");
}

#[test]
fn vhdx_overlapping_blocks() {
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhdx", &["--block-size", "1M"]);
    let first = le64(&p, BAT);
    assert_eq!(first & 7, 6);
    patch(&p, BAT + 8, &first.to_le_bytes());
    assert_only(&p, "vhdx-block-overlap");
}

#[test]
fn vhdx_wrong_metadata_flags() {
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhdx", &[]);
    // Entry 1 is Virtual Disk Size: clear IsVirtualDisk, keep IsRequired.
    patch(&p, META + 32 + 32 + 24, &4u32.to_le_bytes());
    assert_only(&p, "vhdx-metadata-flags");
}

#[test]
fn vhdx_unaligned_size() {
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhdx", &[]);
    let size_item = META + 64 * 1024 + 8; // after File Parameters
    let size = le64(&p, size_item);
    patch(&p, size_item, &(size + 1).to_le_bytes());
    assert_only(&p, "vhdx-virtual-size");
}

#[test]
fn vhdx_bat_entry_count() {
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhdx", &["--block-size", "1M"]);
    // 1 TiB in 1 MiB blocks needs 2^20 entries: far more than the 1 MiB region holds.
    patch(&p, META + 64 * 1024 + 8, &(1u64 << 40).to_le_bytes());
    assert_only(&p, "vhdx-bat-region-too-small");
}

#[test]
fn vhdx_region_table_checksum_and_copies() {
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhdx", &[]);
    patch(&p, (192 << 10) + 40, &[0xFF]);
    assert_only(&p, "vhdx-region-checksum");
    let q = fresh(dir.path(), "b.vhdx", &[]);
    patch(&q, (256 << 10) + 1000, &[0xFF]);
    reseal(&q, 256 << 10, 64 << 10);
    assert_only(&q, "vhdx-region-copies-differ");
}

#[test]
fn vhdx_corrupt_log() {
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhdx", &[]);
    for at in [H1, 2 * H1] {
        patch(&p, at + 48, &[7; 16]);
        reseal(&p, at, 4096);
    }
    // A LogGuid over an all-zero log: no valid sequence to replay, so the metadata cannot
    // be trusted. One finding, not one per header.
    let (code, found) = rules(&p);
    assert_eq!(code, 1);
    assert_eq!(found, ["vhdx-log-corrupt"]);
    let o = vdconv(&[&"convert", &p, &dir.path().join("x.vhd")]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("VHDX log"), "{}", stderr(&o));
    assert!(!dir.path().join("x.vhd").exists());
}

#[test]
fn vhdx_pending_log() {
    use vhdx_log::*;
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhdx", &[]);
    let mut image = fs::read(&p).unwrap();
    let len = image.len() as u64;
    // One entry rewriting the first BAT page: block 0 becomes ZERO (state 2, offset 0).
    let bat = 3 << 20;
    let mut bat_page = image[bat..bat + PAGE].to_vec();
    assert_eq!(bat_page[0] & 7, 6, "block 0 holds data before the log");
    bat_page[..8].copy_from_slice(&2u64.to_le_bytes());
    let e = entry(&EntrySpec {
        guid: GUID,
        sequence: 1,
        tail: 0,
        flushed: len,
        last: len,
        descriptors: &[Desc::Data {
            offset: bat as u64,
            page: bat_page,
        }],
    });
    place(&mut image, 1 << 20, 1 << 20, 0, &e);
    set_log_guid(&mut image, GUID);
    fs::write(&p, &image).unwrap();
    // Valid VHDX that readers must replay: a should, exit 0.
    assert_eq!(rules(&p), (0, vec!["vhdx-log-pending".to_string()]));
    // Converted as replayed, and the source is not written.
    let out = dir.path().join("replayed.vhdx");
    assert_ok(&vdconv(&[&"convert", &"-q", &p, &out]));
    assert_eq!(fs::read(&p).unwrap(), image, "the source is left as it was");
    let info = vdconv(&[&"info", &p]);
    assert!(
        stderr(&info).contains("replayed in memory"),
        "{}",
        stderr(&info)
    );
    let mut first = vec![0u8; 4096];
    let raw = dir.path().join("replayed.raw");
    if have("qemu-img", "the Debian package qemu-utils") {
        // qemu's own replay (on a copy) reads what vdconv converted.
        let q = dir.path().join("qemu.vhdx");
        fs::copy(&p, &q).unwrap();
        run_ok("qemu-img", &[&"check", &"-q", &"-r", &"all", &q]);
        qemu_compare(&out, "vhdx", &q, "vhdx");
        run_ok("qemu-img", &[&"convert", &"-O", &"raw", &out, &raw]);
        use std::io::Read;
        fs::File::open(&raw)
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        assert!(
            first.iter().all(|&b| b == 0),
            "block 0 reads as zeros after replay"
        );
    }
}

#[test]
fn vhd_footer_checksum_and_bat_entry_count() {
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhd", &[]);
    let len = fs::metadata(&p).unwrap().len() as usize;
    patch(&p, len - 512 + 70, &[0x42]);
    assert_only(&p, "vhd-footer-checksum");

    let q = fresh(dir.path(), "b.vhd", &[]);
    // max_table_entries + 1, with the header checksum recomputed.
    let mut data = fs::read(&q).unwrap();
    let entries = u32::from_be_bytes(data[512 + 28..512 + 32].try_into().unwrap());
    data[512 + 28..512 + 32].copy_from_slice(&(entries + 1).to_be_bytes());
    data[512 + 36..512 + 40].fill(0);
    let sum: u32 = data[512..1536].iter().map(|&b| u32::from(b)).sum();
    data[512 + 36..512 + 40].copy_from_slice(&(!sum).to_be_bytes());
    fs::write(&q, data).unwrap();
    assert_only(&q, "vhd-bat-entry-count");
}

#[test]
fn vhd_overlapping_and_out_of_file_blocks() {
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhd", &["--block-size", "512K"]);
    let data = fs::read(&p).unwrap();
    let first = data[1536..1540].to_vec();
    patch(&p, 1540, &first);
    assert_only(&p, "vhd-block-overlap");
    let q = fresh(dir.path(), "b.vhd", &["--block-size", "512K"]);
    patch(&q, 1536, &0x00FF_FFFFu32.to_be_bytes());
    assert_only(&q, "vhd-block-beyond-eof");
}

#[test]
fn vmdk_table_damage() {
    assert_only(
        &fixture("handmade/corrupt/gte-past-eof.vmdk"),
        "vmdk-truncated",
    );
    assert_only(
        &fixture("handmade/corrupt/gte-in-metadata.vmdk"),
        "vmdk-gte-in-metadata",
    );
    // The split-sparse fixture's extents carry redundant tables: damage one copy.
    let dir = tempdir();
    for name in ["disk.vmdk", "disk-s001.vmdk", "disk-s002.vmdk"] {
        fs::copy(
            fixture(&format!("handmade/split-sparse/{name}")),
            dir.path().join(name),
        )
        .unwrap();
    }
    let desc = dir.path().join("disk.vmdk");
    assert_eq!(rules(&desc), (0, vec![]));
    let s1 = dir.path().join("disk-s001.vmdk");
    let data = fs::read(&s1).unwrap();
    let rgd = u64::from_le_bytes(data[48..56].try_into().unwrap()) as usize * 512;
    let rgt = u32::from_le_bytes(data[rgd..rgd + 4].try_into().unwrap()) as usize * 512;
    patch(&s1, rgt, &0u32.to_le_bytes());
    assert_only(&desc, "vmdk-redundant-differs");
    // Two grains sharing one place.
    let t = dir.path().join("disk-s002.vmdk");
    let data = fs::read(&t).unwrap();
    let gd = u64::from_le_bytes(data[56..64].try_into().unwrap()) as usize * 512;
    let gt = u32::from_le_bytes(data[gd..gd + 4].try_into().unwrap()) as usize * 512;
    fs::copy(fixture("handmade/split-sparse/disk-s001.vmdk"), &s1).unwrap();
    let e0 = data[gt..gt + 4].to_vec();
    patch(&t, gt + 4, &e0);
    let (_, found) = rules(&desc);
    assert!(
        found.contains(&"vmdk-grain-overlap".to_string()),
        "{found:?}"
    );
}

#[test]
fn qemu_made_images_are_clean_or_flagged_for_what_windows_rejects() {
    if !have("qemu-img", "qemu-utils") {
        return;
    }
    let dir = tempdir();
    for (name, args) in [
        ("d.vhd", vec!["-f", "vpc"]),
        ("f.vhd", vec!["-f", "vpc", "-o", "subformat=fixed"]),
        ("s.vmdk", vec!["-f", "vmdk"]),
        (
            "t.vmdk",
            vec!["-f", "vmdk", "-o", "subformat=streamOptimized"],
        ),
        ("q.vhdx", vec!["-f", "vhdx"]),
    ] {
        let p = dir.path().join(name);
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"create"];
        for x in &args {
            a.push(x);
        }
        a.push(&p);
        a.push(&"10M");
        run_ok("qemu-img", &a);
        let (code, found) = rules(&p);
        if name == "q.vhdx" {
            // qemu leaves the Required bit of its two regions unset: MS-VHDX asks it only
            // of regions a reader does not know, so it is a Windows habit, not a failure.
            assert_eq!(
                found,
                ["vhdx-region-not-required", "vhdx-region-not-required"]
            );
            assert_eq!(code, 0, "a habit does not fail check");
        } else {
            assert_eq!((code, found), (0, vec![]), "{name}");
        }
    }
}

#[test]
fn vdconv_azure_output_past_2040_gib_checks_clean() {
    // Azure takes fixed VHDs up to 32767 GiB; the VHD specification's 2040 GiB is a
    // should, so vdconv's own --target azure output never fails plain check.
    let dir = tempdir();
    let src = dir.path().join("big.vmdk");
    fs::write(
        &src,
        format!(
            "createType=\"monolithicFlat\"\nRW {} ZERO\n",
            (2100u64 << 30) / 512
        ),
    )
    .unwrap();
    let out = dir.path().join("big.vhd");
    assert_ok(&vdconv(&[
        &"convert",
        &"-q",
        &"--target",
        &"azure",
        &src,
        &out,
    ]));
    let (code, found) = rules(&out);
    assert_eq!((code, found), (0, vec!["vhd-size-limit".to_string()]));
    assert_ok(&vdconv(&[&"check", &"--target", &"azure", &out]));
}

#[test]
fn a_partial_last_vhdx_block_is_judged_alike_by_reader_and_check() {
    // A fixed VHDX that ends where the disk ends, mid-block (as qemu's fixed images do):
    // readable, since the reader needs only the used bytes, and check says Windows would
    // refuse it (a should), nothing more.
    let dir = tempdir();
    let raw = dir.path().join("r.raw");
    patterned_raw(&raw, 3584 << 10, 21);
    let p = dir.path().join("f.vhdx");
    assert_ok(&vdconv(&[
        &"convert",
        &"-q",
        &"-f",
        &"raw",
        &raw,
        &p,
        &"--type",
        &"fixed",
        &"--block-size",
        &"1M",
    ]));
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - (512 << 10)).unwrap();
    drop(f);
    let (code, found) = rules(&p);
    assert_eq!(
        (code, found),
        (0, vec!["vhdx-block-tail-beyond-eof".to_string()])
    );
    qemu_compare(&raw, "raw", &p, "vhdx");
    let out = dir.path().join("back.raw.vhd");
    assert_ok(&vdconv(&[&"convert", &"-q", &p, &out]));
    qemu_compare(&raw, "raw", &out, "vpc");
    // One byte more cut into the used part: the reader refuses, check says must.
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len - (512 << 10) - 512).unwrap();
    drop(f);
    assert_only(&p, "vhdx-block-beyond-eof");
    assert_eq!(vdconv(&[&"info", &p]).status.code(), Some(3));
}

#[test]
fn trimmed_vhdx_blocks_that_keep_their_offset_are_valid() {
    // Hyper-V leaves unmapped and undefined blocks with their file offset (openvmm calls
    // them soft anchors): valid, and read as zeros.
    let dir = tempdir();
    let p = fresh(dir.path(), "a.vhdx", &["--block-size", "1M"]);
    let first = le64(&p, BAT);
    assert_eq!(first & 7, 6, "block 0 is present");
    for state in [3u64, 1] {
        patch(&p, BAT, &((first & !7) | state).to_le_bytes());
        let (code, found) = rules(&p);
        assert_eq!((code, found), (0, vec![]), "state {state}");
        let o = vdconv(&[
            &"compare",
            &"--json",
            &p,
            &fixture("handmade/split-sparse/disk.vmdk"),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["identical"], false, "block 0 now reads as zeros");
    }
    // A not-present block must carry offset 0 (Hyper-V fails otherwise): a should.
    patch(&p, BAT, &(first & !7).to_le_bytes());
    assert_only(&p, "vhdx-bat-offset-not-zero");
}

#[test]
fn a_vmdk_with_several_broken_extents_reports_every_rule() {
    // The checker once stopped at the reader's first error; now every extent is checked.
    let dir = tempdir();
    let split = fixture("handmade/split-sparse");
    for f in ["disk.vmdk", "disk-s001.vmdk", "disk-s002.vmdk"] {
        fs::copy(split.join(f), dir.path().join(f)).unwrap();
    }
    // Extent 1: its magic broken. Extent 2: a grain table entry into the metadata.
    patch(&dir.path().join("disk-s001.vmdk"), 0, b"KDMX");
    let s2 = dir.path().join("disk-s002.vmdk");
    let data = fs::read(&s2).unwrap();
    let gd = u64::from_le_bytes(data[56..64].try_into().unwrap()) as usize * 512;
    let gt = u32::from_le_bytes(data[gd..gd + 4].try_into().unwrap()) as usize * 512;
    let first = (0..512)
        .map(|i| gt + i * 4)
        .find(|&at| u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) > 1)
        .expect("an allocated grain");
    patch(&s2, first, &2u32.to_le_bytes());
    let (code, found) = rules(&dir.path().join("disk.vmdk"));
    assert_eq!(code, 1);
    // The second extent keeps a redundant copy of its tables, which now differs too.
    assert_eq!(
        found,
        [
            "vmdk-header",
            "vmdk-redundant-differs",
            "vmdk-gte-in-metadata"
        ],
        "every extent, every rule"
    );
}

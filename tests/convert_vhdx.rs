//! VMDK -> VHDX conversions, VHD <-> VHDX round trips, checked against qemu-img (compare and
//! check) and libvhdi.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// Not a multiple of the grain nor a whole MiB.
const ODD_SIZE: u64 = 6 * MIB + 37 * 512;
/// The same, but a whole number of 4 KiB sectors.
const ODD_4K_SIZE: u64 = 6 * MIB + 36 * 1024;

fn qemu_check_vhdx(path: &Path) {
    let o = run("qemu-img", &[&"check", &"-f", &"vhdx", &path]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "qemu-img check: {}{}",
        stdout(&o),
        stderr(&o)
    );
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Converts to VHDX and checks it with every reader. Returns the output path.
fn to_vhdx(
    src: &Path,
    dir: &Path,
    kind: &str,
    block: &str,
    logical: &str,
    size: u64,
    sha: &str,
) -> PathBuf {
    let out = dir.join(format!("out-{kind}-{block}-{logical}.vhdx"));
    let _ = fs::remove_file(&out);
    assert_ok(&vdconv(&[
        &"convert",
        &src,
        &out,
        &"--type",
        &kind,
        &"--block-size",
        &block,
        &"--logical-sector",
        &logical,
        &"-q",
    ]));
    // qemu reads only 512-byte logical sectors (block/vhdx.c answers ENOTSUP for 4096);
    // 4 KiB-sector images are read by libvhdi and by vdconv compare instead.
    if logical == "512" {
        qemu_check_vhdx(&out);
        assert_eq!(qemu_virtual_size(&out, "vhdx"), size);
    } else {
        let o = vdconv(&[&"compare", &src, &out]);
        assert_eq!(o.status.code(), Some(0), "vdconv compare: {}", stdout(&o));
    }
    let (media, hash) = libvhdi_sha256(&out);
    assert_eq!(media, size, "libvhdi size {kind} {block} {logical}");
    assert_eq!(hash, sha, "libvhdi content {kind} {block} {logical}");
    let o = vdconv(&[&"check", &out]);
    assert_eq!(o.status.code(), Some(0), "vdconv check: {}", stdout(&o));
    let bytes = fs::read(&out).unwrap();
    assert_eq!(&bytes[..8], b"vhdxfile");
    assert_eq!(bytes.len() % (1 << 20), 0, "file length is whole MiB");
    // Both headers valid with different sequence numbers; both region tables identical.
    for at in [64 << 10, 128 << 10] {
        let mut h = bytes[at..at + 4096].to_vec();
        let stored = u32_le(&h, 4);
        h[4..8].fill(0);
        assert_eq!(crc32c::crc32c(&h), stored, "header at {at}");
    }
    assert_ne!(
        bytes[(64 << 10) + 8],
        bytes[(128 << 10) + 8],
        "sequence numbers differ"
    );
    assert_eq!(bytes[192 << 10..256 << 10], bytes[256 << 10..320 << 10]);
    if kind == "fixed" {
        let block_size = vdconv::size::parse_size(block).unwrap();
        let blocks = size.div_ceil(block_size);
        assert!(
            bytes.len() as u64 >= 4 * MIB + blocks * block_size,
            "every block inside the file"
        );
    }
    out
}

fn check_subformat(subformat: &str) {
    if !have_readers() {
        return;
    }
    let dir = tempdir();
    for (logical, size) in [("512", ODD_SIZE), ("4096", ODD_4K_SIZE)] {
        let raw = dir.path().join("src.raw");
        patterned_raw(&raw, size, 9);
        let sha = file_sha256(&raw);
        let vmdk = dir.path().join(format!("{subformat}-{logical}.vmdk"));
        qemu_vmdk(&raw, &vmdk, &format!("subformat={subformat}"));
        for kind in ["fixed", "dynamic"] {
            for block in ["1M", "2M", "32M"] {
                let out = to_vhdx(&vmdk, dir.path(), kind, block, logical, size, &sha);
                if logical == "512" {
                    qemu_compare(&vmdk, "vmdk", &out, "vhdx");
                }
                fs::remove_file(out).unwrap();
            }
        }
    }
}

#[test]
fn monolithic_sparse_to_vhdx() {
    check_subformat("monolithicSparse");
}

#[test]
fn stream_optimized_to_vhdx() {
    check_subformat("streamOptimized");
}

#[test]
fn monolithic_flat_to_vhdx() {
    check_subformat("monolithicFlat");
}

#[test]
fn two_gb_max_extent_sparse_to_vhdx() {
    check_subformat("twoGbMaxExtentSparse");
}

#[test]
fn two_gb_max_extent_flat_to_vhdx() {
    check_subformat("twoGbMaxExtentFlat");
}

#[test]
fn hand_made_stream_to_vhdx() {
    if !have_readers() {
        return;
    }
    let src = fixture("handmade/stream-footer-padded.vmdk");
    let sha = read_to_string(&fixture("handmade/stream-footer-padded.vmdk.sha256"))
        .trim()
        .to_string();
    let dir = tempdir();
    let out = to_vhdx(
        &src,
        dir.path(),
        "dynamic",
        "2M",
        "512",
        40 * MIB + 7 * 512,
        &sha,
    );
    // Only blocks holding data are present: the first MiB and the last 256 KiB + 7 sectors.
    let bytes = fs::read(&out).unwrap();
    let present = (0..21)
        .filter(|i| bytes[3 * MIB as usize + i * 8] & 7 == 6)
        .count();
    assert_eq!(present, 3, "blocks 0, 19 and 20 present");
    assert_eq!(bytes.len() as u64, 4 * MIB + 3 * 2 * MIB);
}

#[test]
fn round_trip_vmdk_vhdx_vhd_vhdx() {
    if !have_readers() {
        return;
    }
    let dir = tempdir();
    let raw = dir.path().join("src.raw");
    patterned_raw(&raw, ODD_SIZE, 21);
    let sha = file_sha256(&raw);
    let vmdk = dir.path().join("s.vmdk");
    qemu_vmdk(&raw, &vmdk, "subformat=streamOptimized");
    let a = dir.path().join("a.vhdx");
    let b = dir.path().join("b.vhd");
    let c = dir.path().join("c.vhdx");
    let d = dir.path().join("d.vhd");
    assert_ok(&vdconv(&[&"convert", &vmdk, &a, &"-q", &"--verify"]));
    assert_ok(&vdconv(&[
        &"convert",
        &a,
        &b,
        &"--type",
        &"fixed",
        &"-q",
        &"--verify",
    ]));
    assert_ok(&vdconv(&[
        &"convert",
        &b,
        &c,
        &"--type",
        &"fixed",
        &"-q",
        &"--verify",
    ]));
    assert_ok(&vdconv(&[&"convert", &c, &d, &"-q", &"--verify"]));
    qemu_compare(&vmdk, "vmdk", &a, "vhdx");
    qemu_compare(&a, "vhdx", &b, "vpc");
    qemu_compare(&b, "vpc", &c, "vhdx");
    qemu_compare(&c, "vhdx", &d, "vpc");
    for img in [&a, &b, &c, &d] {
        assert_eq!(
            libvhdi_sha256(img),
            (ODD_SIZE, sha.clone()),
            "{}",
            img.display()
        );
    }
    qemu_check_vhdx(&a);
    qemu_check_vhdx(&c);
}

#[test]
fn logical_4096_needs_a_4096_multiple() {
    let dir = tempdir();
    let src = fixture("handmade/split-flat/disk.vmdk"); // 2101 sectors
    let o = vdconv(&[
        &"convert",
        &src,
        &dir.path().join("o.vhdx"),
        &"--logical-sector",
        &"4096",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("4096-byte logical sector"));
    let o = vdconv(&[
        &"convert",
        &src,
        &dir.path().join("o.vhdx"),
        &"--block-size",
        &"512K",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn metadata_items_and_flags() {
    let dir = tempdir();
    let out = dir.path().join("m.vhdx");
    assert_ok(&vdconv(&[
        &"convert",
        &fixture("handmade/split-sparse/disk.vmdk"),
        &out,
        &"--type",
        &"fixed",
        &"--physical-sector",
        &"512",
        &"-q",
    ]));
    let bytes = fs::read(&out).unwrap();
    let meta = 2 * MIB as usize;
    assert_eq!(&bytes[meta..meta + 8], b"metadata");
    let count = u16::from_le_bytes(bytes[meta + 10..meta + 12].try_into().unwrap());
    assert_eq!(count, 5);
    let mut flags = std::collections::BTreeMap::new();
    for i in 0..count as usize {
        let e = meta + 32 + i * 32;
        let id = uuid::Uuid::from_bytes_le(bytes[e..e + 16].try_into().unwrap()).to_string();
        let offset = u32_le(&bytes, e + 16) as usize;
        let length = u32_le(&bytes, e + 20) as usize;
        assert!(offset >= 64 * 1024);
        flags.insert(
            id,
            (
                u32_le(&bytes, e + 24),
                bytes[meta + offset..meta + offset + length].to_vec(),
            ),
        );
    }
    let fp = &flags["caa16737-fa36-4d43-b3b6-33f0aa44e76b"];
    assert_eq!(fp.0, 4, "file parameters: required, not virtual-disk");
    assert_eq!(u32_le(&fp.1, 0), 32 << 20);
    assert_eq!(u32_le(&fp.1, 4) & 1, 1, "fixed: LeaveBlockAllocated");
    for id in [
        "2fa54224-cd1b-4876-b211-5dbed83bf4b8",
        "beca12ab-b2e6-4523-93ef-c309e000c746",
        "8141bf1d-a96f-4709-ba47-f233a8faab5f",
        "cda348c7-445d-4471-9cc9-e9885251c556",
    ] {
        assert_eq!(flags[id].0, 6, "{id}: IsVirtualDisk + IsRequired");
    }
    assert_eq!(
        u32_le(&flags["cda348c7-445d-4471-9cc9-e9885251c556"].1, 0),
        512
    );
}

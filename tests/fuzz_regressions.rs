//! Inputs the fuzzers found that made vdconv panic, rebuilt here as small files. Tests run
//! with overflow checks on, as the fuzz builds do.

mod common;

use std::fs;

use common::*;

/// fuzz/artifacts/vhdx/crash-1b1983f7…: a BAT entry whose file offset field is all ones
/// made `check` overflow computing the block's end.
#[test]
fn vhdx_bat_offset_at_the_top_of_the_address_space() {
    let dir = tempdir();
    let p = dir.path().join("a.vhdx");
    assert_ok(&vdconv(&[
        &"convert",
        &"-q",
        &fixture("handmade/split-flat/disk.vmdk"),
        &p,
        &"--block-size",
        &"1M",
    ]));
    let mut data = fs::read(&p).unwrap();
    let bat = 3 << 20;
    data[bat..bat + 8].copy_from_slice(&(!7u64 | 6).to_le_bytes());
    fs::write(&p, data).unwrap();
    let o = vdconv(&[&"check", &"--json", &p]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("vhdx-block-beyond-eof"),
        "{}",
        stdout(&o)
    );
    let o = vdconv(&[&"convert", &p, &dir.path().join("o.vhd")]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("VHDX BAT entry at offset 3145728"),
        "{}",
        stderr(&o)
    );
}

/// The same class in the GPT reader: LBAs near 2^64 in the header and entries.
#[test]
fn gpt_with_lbas_at_the_top_of_the_address_space() {
    let dir = tempdir();
    let raw = dir.path().join("g.raw");
    let mut disk = vec![0u8; 64 * 1024];
    disk[446 + 4] = 0xEE; // protective MBR
    disk[510] = 0x55;
    disk[511] = 0xAA;
    let h = 512;
    disk[h..h + 8].copy_from_slice(b"EFI PART");
    disk[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    disk[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
    disk[h + 24..h + 32].copy_from_slice(&1u64.to_le_bytes()); // this LBA
    disk[h + 32..h + 40].copy_from_slice(&u64::MAX.to_le_bytes()); // backup LBA
    disk[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes()); // entries at LBA 2
    disk[h + 80..h + 84].copy_from_slice(&4u32.to_le_bytes());
    disk[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
    let e = 1024;
    disk[e..e + 16].copy_from_slice(&[1; 16]);
    disk[e + 32..e + 40].copy_from_slice(&(u64::MAX - 1).to_le_bytes()); // first LBA
    disk[e + 40..e + 48].copy_from_slice(&u64::MAX.to_le_bytes()); // last LBA
    let entries_crc = crc32fast::hash(&disk[e..e + 4 * 128]);
    disk[h + 88..h + 92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32fast::hash(&disk[h..h + 92]);
    disk[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
    fs::write(&raw, &disk).unwrap();
    let desc = dir.path().join("g.vmdk");
    fs::write(
        &desc,
        "createType=\"monolithicFlat\"\nRW 128 FLAT \"g.raw\" 0\n",
    )
    .unwrap();
    let o = vdconv(&[&"info", &"--json", &desc]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["partitions"]["scheme"], "gpt");
    assert_eq!(v["partitions"]["gpt"]["backup_header_valid"], false);
    assert!(
        v["partitions"]["problems"].as_array().unwrap().len() >= 2,
        "{v}"
    );
}

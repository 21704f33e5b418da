//! Hardening: memory bounded by what is real, no arithmetic wrap-around, inputs opened
//! once and safely, outputs that never half-exist, stdout errors that never panic. Each
//! case reproduces a defect the release binary had (issue 15) and pins the fix.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// A VHD footer (big-endian fields, checksum sealed) of `size` bytes and `disk_type`.
fn vhd_footer(size: u64, disk_type: u32, data_offset: u64) -> Vec<u8> {
    let mut f = vec![0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes());
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[16..24].copy_from_slice(&data_offset.to_be_bytes());
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    f[56..60].copy_from_slice(&[0xFF, 0xFF, 16, 255]);
    f[60..64].copy_from_slice(&disk_type.to_be_bytes());
    seal_vhd(&mut f, 64);
    f
}

/// One's-complement byte sum into the 4-byte checksum at `at`.
fn seal_vhd(bytes: &mut [u8], at: usize) {
    bytes[at..at + 4].fill(0);
    let sum: u32 = bytes
        .iter()
        .fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
    bytes[at..at + 4].copy_from_slice(&(!sum).to_be_bytes());
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_dynamic_vhd_whose_bat_is_a_hole_stays_small_and_fast() {
    // 1 GiB of 512-byte blocks: 2M BAT entries claimed (and the header says 2^31), the
    // BAT region a file-system hole. Once: 2.1 GB resident for 17 s.
    let dir = tempdir();
    let p = dir.path().join("hole.vhd");
    let size = 1u64 << 30;
    let entries = 1u64 << 31;
    let bat_at = 1536u64;
    let file_len = bat_at + entries * 4 + 512;
    let f = fs::File::create(&p).unwrap();
    f.set_len(file_len).unwrap();
    let mut header = vec![0u8; 1024];
    header[0..8].copy_from_slice(b"cxsparse");
    header[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    header[16..24].copy_from_slice(&bat_at.to_be_bytes());
    header[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    header[28..32].copy_from_slice(&(entries as u32 - 1).to_be_bytes());
    header[32..36].copy_from_slice(&512u32.to_be_bytes());
    seal_vhd(&mut header, 36);
    let footer = vhd_footer(size, 3, 512);
    f.write_all_at(&footer, 0).unwrap();
    f.write_all_at(&header, 512).unwrap();
    f.write_all_at(&footer, file_len - 512).unwrap();
    drop(f);
    for command in ["info", "check"] {
        let m = vdconv_measured(&[&command, &p]);
        assert!(
            m.max_rss_kib < 64 * 1024,
            "{command}: peak RSS {} KiB",
            m.max_rss_kib
        );
        assert!(
            m.elapsed < Duration::from_secs(3),
            "{command}: took {:?}",
            m.elapsed
        );
        let err = stderr(&m.output);
        assert!(!err.contains("panicked"), "{err}");
        match command {
            // The hole reads as zero entries: block 0 at byte 0, on the header.
            "info" => {
                assert_eq!(m.output.status.code(), Some(3), "{err}");
                assert!(err.contains("VHD BAT entry at offset 1536"), "{err}");
            }
            _ => {
                assert_eq!(m.output.status.code(), Some(1), "{err}");
                assert!(stdout(&m.output).contains("vhd-block-beyond-eof"));
            }
        }
    }
}

#[test]
fn a_footer_claiming_nearly_2_pow_64_bytes_does_not_wrap() {
    // Debug builds panicked on size + 512; release printed "needs a file of 0 bytes"
    // and Azure's check "(next: 0)".
    let dir = tempdir();
    let size = u64::MAX - 511;
    let p = write(dir.path(), "huge.vhd", &vhd_footer(size, 2, u64::MAX));
    let o = vdconv(&[&"info", &p]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(!stderr(&o).contains("0 bytes"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&size.to_string()), "{}", stderr(&o));
    let o = vdconv(&[&"check", &"--json", &p]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("vhd-fixed-file-size"));
    let o = vdconv(&[&"check", &"--target", &"azure", &p]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!stdout(&o).contains("next: 0"), "{}", stdout(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn reads_outside_the_disk_are_errors_for_every_reader() {
    let dir = tempdir();
    let raw = dir.path().join("r.raw");
    patterned_raw(&raw, 4 * MIB, 1);
    let vmdk = dir.path().join("r.vmdk");
    qemu_vmdk(&raw, &vmdk, "");
    let mut images = vec![vmdk.clone()];
    for (name, args) in [
        ("f.vhd", vec!["--type", "fixed"]),
        ("d.vhd", vec![]),
        ("d.vhdx", vec![]),
    ] {
        let out = dir.path().join(name);
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"convert", &"-q", &vmdk, &out];
        for x in &args {
            a.push(x);
        }
        assert_ok(&vdconv(&a));
        images.push(out);
    }
    for img in images {
        let mut disk = vdconv::open(&img, &vdconv::OpenOptions::default()).unwrap();
        let size = disk.virtual_size();
        assert_eq!(size, 4 * MIB);
        let mut buf = vec![0u8; 1024];
        // The last 512 bytes of the disk plus 512 past it: a fixed VHD would have
        // returned its footer as guest data.
        let e = disk.read_at(size - 512, &mut buf).unwrap_err();
        assert!(
            e.to_string().contains("past the end"),
            "{}: {e}",
            img.display()
        );
        assert!(disk.read_at(u64::MAX - 10, &mut buf).is_err());
        let mut runs = Vec::new();
        assert!(disk.map(size, 1, &mut runs).is_err());
        assert!(disk.read_at(size - 512, &mut buf[..512]).is_ok());
    }
}

#[test]
fn a_fifo_as_input_is_refused_without_hanging() {
    let dir = tempdir();
    let fifo = dir.path().join("pipe.vmdk");
    run_ok("mkfifo", &[&fifo]);
    let m = vdconv_measured(&[&"info", &"--json", &fifo]);
    assert_eq!(m.output.status.code(), Some(3), "{}", stderr(&m.output));
    assert!(m.elapsed < Duration::from_secs(2));
    let v: serde_json::Value = serde_json::from_slice(&m.output.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "not-a-file");
    assert!(stderr(&m.output).contains("FIFO"));
}

#[test]
fn writing_to_a_full_stdout_is_an_output_error() {
    // Once: exit 101 and a panic backtrace.
    let out = fs::File::options().write(true).open("/dev/full").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vdconv"))
        .args(["info"])
        .arg(fixture("handmade/stream-footer-padded.vmdk"))
        .stdout(out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("vdconv: error: stdout: "), "{err}");
}

#[test]
fn zero_grain_tables_over_512_gib_map_at_once() {
    // 1 MiB of grain directory, every entry naming one table of 4096 zeroed-grain
    // entries, over 512 GiB of 512-byte grains: walked grain by grain this took 10 s.
    let dir = tempdir();
    let p = dir.path().join("zeros.vmdk");
    let capacity: u64 = 1 << 30; // sectors
    let gtes = 4096u32;
    let gd_entries = capacity / u64::from(gtes);
    let gd_at = 1u64; // sector
    let gd_sectors = (gd_entries * 4).div_ceil(512);
    let gt_at = gd_at + gd_sectors;
    let overhead = gt_at + u64::from(gtes) * 4 / 512;
    let mut h = vec![0u8; 512];
    h[0..4].copy_from_slice(b"KDMV");
    h[4..8].copy_from_slice(&2u32.to_le_bytes());
    h[8..12].copy_from_slice(&(0x1u32 | 0x4).to_le_bytes());
    h[12..20].copy_from_slice(&capacity.to_le_bytes());
    h[20..28].copy_from_slice(&1u64.to_le_bytes());
    h[44..48].copy_from_slice(&gtes.to_le_bytes());
    h[56..64].copy_from_slice(&gd_at.to_le_bytes());
    h[64..72].copy_from_slice(&overhead.to_le_bytes());
    h[73..77].copy_from_slice(b"\n \r\n");
    let gd: Vec<u8> = (0..gd_entries)
        .flat_map(|_| (gt_at as u32).to_le_bytes())
        .collect();
    let gt: Vec<u8> = (0..gtes).flat_map(|_| 1u32.to_le_bytes()).collect();
    let f = fs::File::create(&p).unwrap();
    f.write_all_at(&h, 0).unwrap();
    f.write_all_at(&gd, gd_at * 512).unwrap();
    f.write_all_at(&gt, gt_at * 512).unwrap();
    drop(f);
    let m = vdconv_measured(&[&"info", &"--json", &p]);
    assert_eq!(m.output.status.code(), Some(0), "{}", stderr(&m.output));
    assert!(m.elapsed < Duration::from_secs(2), "took {:?}", m.elapsed);
    let v: serde_json::Value = serde_json::from_slice(&m.output.stdout).unwrap();
    assert_eq!(v["virtual_size"], 512u64 << 30);
    assert_eq!(v["allocated_bytes"], 0);
}

#[test]
fn writing_huge_vhdx_in_1_mib_blocks_stays_under_64_mib() {
    // A BAT of 64M entries (512 MiB) was held twice in memory; now it is written a
    // window at a time. Dynamic at the 64 TiB limit (the BAT region stays a hole), and
    // fixed at 8 TiB (every entry written; ext4 files stop at 16 TiB).
    let dir = tempdir();
    for (tib, kind) in [(64u64, "dynamic"), (8, "fixed")] {
        let src = write(
            dir.path(),
            "empty.vmdk",
            format!(
                "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW {} ZERO\n",
                (tib << 40) / 512
            )
            .as_bytes(),
        );
        let out = dir.path().join(format!("{kind}.vhdx"));
        let m = vdconv_measured(&[
            &"convert",
            &"-q",
            &src,
            &out,
            &"--block-size",
            &"1M",
            &"--type",
            &kind,
        ]);
        assert_eq!(m.output.status.code(), Some(0), "{}", stderr(&m.output));
        assert!(
            m.max_rss_kib < 64 * 1024,
            "{kind}: peak RSS {} KiB",
            m.max_rss_kib
        );
        assert!(
            m.elapsed < Duration::from_secs(30),
            "{kind}: took {:?}",
            m.elapsed
        );
        let v = vdconv(&[&"info", &"--json", &out]);
        let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
        assert_eq!(v["virtual_size"], tib << 40);
        assert_eq!(v["vhdx"]["block_size"], 1 << 20);
        assert_eq!(v["layout"], kind);
        assert_ok(&vdconv(&[&"check", &out]));
        fs::remove_file(&out).unwrap();
    }
}

#[test]
fn a_source_that_shrinks_under_a_copy_is_an_input_error() {
    use vdconv::sink::Sink;
    let dir = tempdir();
    let src = dir.path().join("short");
    fs::write(&src, vec![7u8; 4096]).unwrap();
    let out = vdconv::output::Output::create(
        &dir.path().join("out"),
        false,
        vdconv::output::HolePolicy {
            piece: 64 << 10,
            fill: false,
        },
    )
    .unwrap();
    let file = fs::File::open(&src).unwrap();
    // Asked for more than the source holds, as when it shrank after being mapped.
    let e = out.copy_from(&file, 0, 0, 1 << 20).unwrap_err();
    assert_eq!(e.class().code(), 3, "{e}");
    assert_eq!(e.kind(), vdconv::ErrorKind::Truncated, "{e}");
}

#[test]
fn sigint_stops_info_and_check_of_a_large_image() {
    // Once swallowed: the walk finished and exited 0. A 64 TiB dynamic VHDX in 1 MiB
    // blocks has 64M BAT entries, a walk of seconds in a test build.
    let dir = tempdir();
    let src = write(
        dir.path(),
        "empty.vmdk",
        format!(
            "createType=\"monolithicFlat\"\nRW {} ZERO\n",
            (64u64 << 40) / 512
        )
        .as_bytes(),
    );
    let img = dir.path().join("big.vhdx");
    assert_ok(&vdconv(&[
        &"convert",
        &"-q",
        &src,
        &img,
        &"--block-size",
        &"1M",
    ]));
    for command in ["info", "check"] {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_vdconv"))
            .args([command])
            .arg(&img)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        run_ok("kill", &[&"-INT", &child.id().to_string()]);
        let t = std::time::Instant::now();
        let o = child.wait_with_output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            o.status.signal(),
            Some(2),
            "{command}: {:?} {}",
            o.status,
            stderr(&o)
        );
        assert!(
            stderr(&o).contains("interrupted"),
            "{command}: {}",
            stderr(&o)
        );
        assert!(
            o.stdout.is_empty(),
            "{command}: no report after an interruption"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{command}: stopped promptly"
        );
    }
}

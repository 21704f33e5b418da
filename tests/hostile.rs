//! Hostile and damaged input, interrupted runs, a full file system: each refused with
//! exit 3 (or 4, 130) and its message, quickly, and with nothing left behind.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// The fields of a crafted KDMV header (all else as qemu writes it).
struct Kdmv {
    capacity: u64,
    grain: u64,
    desc_off: u64,
    desc_size: u64,
    gtes: u32,
    gd: u64,
    overhead: u64,
    flags: u32,
}

impl Default for Kdmv {
    fn default() -> Self {
        Kdmv {
            capacity: 1 << 20,
            grain: 128,
            desc_off: 0,
            desc_size: 0,
            gtes: 512,
            gd: 1,
            overhead: 2,
            flags: 0,
        }
    }
}

impl Kdmv {
    fn bytes(&self) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[0..4].copy_from_slice(b"KDMV");
        h[4..8].copy_from_slice(&1u32.to_le_bytes());
        h[8..12].copy_from_slice(&self.flags.to_le_bytes());
        h[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        h[20..28].copy_from_slice(&self.grain.to_le_bytes());
        h[28..36].copy_from_slice(&self.desc_off.to_le_bytes());
        h[36..44].copy_from_slice(&self.desc_size.to_le_bytes());
        h[44..48].copy_from_slice(&self.gtes.to_le_bytes());
        h[56..64].copy_from_slice(&self.gd.to_le_bytes());
        h[64..72].copy_from_slice(&self.overhead.to_le_bytes());
        h[73..77].copy_from_slice(b"\n \r\n");
        if self.flags & 0x10000 != 0 {
            h[77..79].copy_from_slice(&1u16.to_le_bytes());
        }
        h
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// Fails within a second: no huge allocation, no long walk.
fn fails_fast(src: &Path, out: &Path, needles: &[&str]) {
    let t = Instant::now();
    expect_failure(src, out, 3, needles);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn crafted_oversize_fields() {
    let dir = tempdir();
    let out = tempdir();
    let d = dir.path();
    // Capacity of 2^50 sectors: a grain directory of 2^28 entries that the file cannot hold.
    let p = write_file(
        d,
        "capacity.vmdk",
        &[
            Kdmv {
                capacity: 1 << 50,
                ..Default::default()
            }
            .bytes(),
            vec![0; 512],
        ]
        .concat(),
    );
    fails_fast(
        &p,
        out.path(),
        &["capacity.vmdk", "grain directory", "capacity in the header"],
    );
    let p = write_file(
        d,
        "grain.vmdk",
        &Kdmv {
            grain: 1 << 30,
            ..Default::default()
        }
        .bytes(),
    );
    fails_fast(
        &p,
        out.path(),
        &["grain.vmdk", "sparse header at offset 0", "grain size"],
    );
    let p = write_file(
        d,
        "gtes.vmdk",
        &Kdmv {
            gtes: u32::MAX,
            ..Default::default()
        }
        .bytes(),
    );
    fails_fast(
        &p,
        out.path(),
        &["gtes.vmdk", "grain table entries per table"],
    );
    let p = write_file(
        d,
        "desc.vmdk",
        &Kdmv {
            desc_off: 1,
            desc_size: 1 << 40,
            ..Default::default()
        }
        .bytes(),
    );
    fails_fast(&p, out.path(), &["desc.vmdk", "embedded descriptor size"]);
    // A compressed grain claiming 1 GiB of deflate data.
    let mut stream = Kdmv {
        capacity: 128,
        flags: 0x30000,
        ..Default::default()
    }
    .bytes();
    stream.extend_from_slice(&{
        let mut gd = vec![0u8; 512];
        gd[0..4].copy_from_slice(&2u32.to_le_bytes()); // GT at sector 2
        gd
    });
    let mut gt = vec![0u8; 2048];
    gt[0..4].copy_from_slice(&6u32.to_le_bytes()); // grain 0 at sector 6
    stream.extend_from_slice(&gt);
    let mut grain = vec![0u8; 512];
    grain[8..12].copy_from_slice(&(1u32 << 30).to_le_bytes());
    stream.extend_from_slice(&grain);
    let p = write_file(d, "zsize.vmdk", &stream);
    fails_fast(
        &p,
        out.path(),
        &["zsize.vmdk", "compressed grain at offset 3072", "exceeds"],
    );
    // A grain whose deflate stream inflates to twice the grain size.
    let mut stream = stream.clone();
    stream.truncate(3072);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, &vec![7u8; 128 * 1024]).unwrap();
    let z = z.finish().unwrap();
    stream.extend_from_slice(&0u64.to_le_bytes());
    stream.extend_from_slice(&(z.len() as u32).to_le_bytes());
    stream.extend_from_slice(&z);
    stream.resize(stream.len().next_multiple_of(512), 0);
    let p = write_file(d, "bomb.vmdk", &stream);
    fails_fast(
        &p,
        out.path(),
        &[
            "bomb.vmdk",
            "compressed grain at offset 3072",
            "more than the grain size",
        ],
    );
    // A descriptor declaring exabytes of zeros.
    let p = write_file(
        d,
        "huge.vmdk",
        b"createType=\"monolithicFlat\"\nRW 1000000000000000 ZERO\nRW 1000000000000000 ZERO\n",
    );
    fails_fast(&p, out.path(), &["huge.vmdk", "256 TiB"]);
    // An extent line whose sector count overflows bytes.
    let p = write_file(
        d,
        "overflow.vmdk",
        b"createType=\"monolithicFlat\"\nRW 18446744073709551615 ZERO\n",
    );
    fails_fast(&p, out.path(), &["overflow.vmdk", "line 2", "overflows"]);
}

#[test]
fn crafted_vhd_and_vhdx_fields() {
    let dir = tempdir();
    let out = tempdir();
    let src = fixture("handmade/split-flat/disk.vmdk");
    let vhd = dir.path().join("d.vhd");
    let vhdx = dir.path().join("d.vhdx");
    assert_ok(&vdconv(&[
        &"convert",
        &"-q",
        &src,
        &vhd,
        &"--block-size",
        &"512K",
    ]));
    assert_ok(&vdconv(&[
        &"convert",
        &"-q",
        &src,
        &vhdx,
        &"--block-size",
        &"1M",
    ]));

    // VHD: a block size of 2 GiB (header re-checksummed so only the value is wrong).
    let mut data = fs::read(&vhd).unwrap();
    data[512 + 32..512 + 36].copy_from_slice(&(1u32 << 31).to_be_bytes());
    data[512 + 36..512 + 40].fill(0);
    let sum: u32 = data[512..1536].iter().map(|&b| u32::from(b)).sum();
    data[512 + 36..512 + 40].copy_from_slice(&(!sum).to_be_bytes());
    let p = write_file(dir.path(), "block.vhd", &data);
    fails_fast(
        &p,
        out.path(),
        &[
            "block.vhd",
            "VHD dynamic header at offset 544",
            "block size",
        ],
    );

    // VHD: a BAT entry pointing into the header.
    let mut data = fs::read(&vhd).unwrap();
    data[1536..1540].copy_from_slice(&1u32.to_be_bytes());
    let p = write_file(dir.path(), "into-header.vhd", &data);
    fails_fast(
        &p,
        out.path(),
        &["into-header.vhd", "VHD BAT entry at offset 1536"],
    );

    // VHDX: 4000 region entries (the region table is re-checksummed, both copies).
    let mut data = fs::read(&vhdx).unwrap();
    for at in [192usize << 10, 256 << 10] {
        data[at + 8..at + 12].copy_from_slice(&4000u32.to_le_bytes());
        data[at + 4..at + 8].fill(0);
        let crc = crc32c::crc32c(&data[at..at + (64 << 10)]);
        data[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    }
    let p = write_file(dir.path(), "regions.vhdx", &data);
    fails_fast(
        &p,
        out.path(),
        &[
            "regions.vhdx",
            "VHDX region table at offset",
            "4000 entries",
        ],
    );

    // VHDX: 65535 metadata entries.
    let mut data = fs::read(&vhdx).unwrap();
    let meta = 2 << 20;
    data[meta + 10..meta + 12].copy_from_slice(&u16::MAX.to_le_bytes());
    let p = write_file(dir.path(), "entries.vhdx", &data);
    fails_fast(
        &p,
        out.path(),
        &[
            "entries.vhdx",
            "VHDX metadata at offset 2097152",
            "65535 entries",
        ],
    );

    // VHDX: a block placed on the metadata region.
    let mut data = fs::read(&vhdx).unwrap();
    let bat = 3 << 20;
    data[bat..bat + 8].copy_from_slice(&((2u64 << 20) | 6).to_le_bytes());
    let p = write_file(dir.path(), "onmeta.vhdx", &data);
    fails_fast(
        &p,
        out.path(),
        &[
            "onmeta.vhdx",
            "VHDX BAT entry at offset 3145728",
            "metadata",
        ],
    );

    // VHDX: block state 5 (reserved).
    let mut data = fs::read(&vhdx).unwrap();
    data[bat] = (data[bat] & !7) | 5;
    let p = write_file(dir.path(), "state.vhdx", &data);
    fails_fast(&p, out.path(), &["state.vhdx", "invalid state 5"]);
}

#[test]
fn damaged_tables_and_streams() {
    if !have("qemu-img", "qemu-utils") {
        return;
    }
    let dir = tempdir();
    let out = tempdir();
    let raw = dir.path().join("r.raw");
    patterned_raw(&raw, 2 * MIB, 5);
    let sparse = dir.path().join("s.vmdk");
    let stream = dir.path().join("t.vmdk");
    qemu_vmdk(&raw, &sparse, "");
    qemu_vmdk(&raw, &stream, "subformat=streamOptimized");

    // Two grain table entries naming the same grain.
    let mut data = fs::read(&sparse).unwrap();
    let gd = u64::from_le_bytes(data[56..64].try_into().unwrap()) as usize * 512;
    let gt = u32::from_le_bytes(data[gd..gd + 4].try_into().unwrap()) as usize * 512;
    let e0 = data[gt..gt + 4].to_vec();
    data[gt + 4..gt + 8].copy_from_slice(&e0);
    let p = write_file(dir.path(), "overlap.vmdk", &data);
    expect_failure(
        &p,
        out.path(),
        3,
        &["overlap.vmdk", "grain table entry at offset", "overlapping"],
    );

    // A corrupt deflate stream: flip bytes inside the first compressed grain.
    let mut data = fs::read(&stream).unwrap();
    let gd = u64::from_le_bytes(data[56..64].try_into().unwrap()) as usize * 512;
    let gt = u32::from_le_bytes(data[gd..gd + 4].try_into().unwrap()) as usize * 512;
    let grain = u32::from_le_bytes(data[gt..gt + 4].try_into().unwrap()) as usize * 512;
    for b in &mut data[grain + 20..grain + 60] {
        *b ^= 0x5A;
    }
    let p = write_file(dir.path(), "deflate.vmdk", &data);
    expect_failure(
        &p,
        out.path(),
        3,
        &[
            "deflate.vmdk",
            &format!("compressed grain at offset {grain}"),
        ],
    );

    // A grain record for the wrong place.
    let mut data = fs::read(&stream).unwrap();
    data[grain..grain + 8].copy_from_slice(&4096u64.to_le_bytes());
    let p = write_file(dir.path(), "lba.vmdk", &data);
    expect_failure(&p, out.path(), 3, &["lba.vmdk", "grain is for sector 4096"]);

    // Header and footer of an ESXi-layout stream that disagree.
    let mut data = fs::read(fixture("handmade/stream-footer-padded.vmdk")).unwrap();
    let text = data
        .windows(8)
        .rposition(|w| w == b"KDMV\x01\0\0\0" || w == b"KDMV\x03\0\0\0")
        .unwrap();
    data[text + 12] ^= 1; // footer capacity
    let p = write_file(dir.path(), "footer.vmdk", &data);
    expect_failure(
        &p,
        out.path(),
        3,
        &[
            "footer.vmdk",
            "stream footer at offset",
            "differs from the header",
        ],
    );
}

#[test]
fn device_extents_are_refused_even_when_outside_paths_are_allowed() {
    let dir = tempdir();
    let out = tempdir();
    let p = write_file(
        dir.path(),
        "dev.vmdk",
        b"createType=\"monolithicFlat\"\nRW 8 FLAT \"/dev/zero\" 0\n",
    );
    let dst = out.path().join("o.vhd");
    let o = vdconv(&[&"convert", &p, &dst, &"--allow-outside-paths"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    assert!(listing(out.path()).is_empty());
}

#[test]
fn sigint_and_sigterm_leave_nothing_behind() {
    for signal in ["-INT", "-TERM"] {
        let dir = tempdir();
        // 60 TiB of zeros with --verify: hashing every byte takes hours, so the run is
        // surely still going when the signal arrives.
        let src = write_file(
            dir.path(),
            "big.vmdk",
            b"createType=\"monolithicFlat\"\nRW 128849018880 ZERO\n",
        );
        let dst = dir.path().join("big.vhdx");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_vdconv"))
            .args(["convert", "--verify", "-q"])
            .arg(&src)
            .arg(&dst)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the temporary file exists: the conversion is under way.
        let t = Instant::now();
        while listing(dir.path()).len() < 2 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(listing(dir.path()).len(), 2, "temporary file appeared");
        std::thread::sleep(Duration::from_millis(200));
        run_ok("kill", &[&signal, &child.id().to_string()]);
        let o = child.wait_with_output().unwrap();
        // The signal is re-raised after cleanup, so a shell loop around vdconv stops
        // (the shell reports 130 for SIGINT, 143 for SIGTERM).
        use std::os::unix::process::ExitStatusExt;
        let expected = if signal == "-INT" { 2 } else { 15 };
        assert_eq!(
            o.status.signal(),
            Some(expected),
            "{signal}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("interrupted"));
        assert_eq!(
            listing(dir.path()),
            ["big.vmdk"],
            "{signal}: no DST, no temporary file"
        );
    }
}

#[test]
fn full_file_system_gives_a_clean_error() {
    let dir = tempdir();
    let mnt = dir.path().join("small");
    let Some(small) = Tmpfs::mount(&mnt, "2m") else {
        return;
    };
    let raw = dir.path().join("r.raw");
    let f = fs::File::create(&raw).unwrap();
    let mut rng = Rng::new(3);
    let mut buf = vec![0u8; 8 * MIB as usize];
    rng.fill(&mut buf);
    f.write_all_at(&buf, 0).unwrap();
    let src = write_file(
        dir.path(),
        "r.vmdk",
        b"createType=\"monolithicFlat\"\nRW 16384 FLAT \"r.raw\" 0\n",
    );
    let o = vdconv(&[&"convert", &src, &mnt.join("out.vhd"), &"--type", &"fixed"]);
    let left = listing(&mnt);
    drop(small);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    // Refused before writing: the data alone does not fit.
    assert!(
        stderr(&o).contains("MiB free; nothing was written"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).trim_end().lines().count(), 1);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A descriptor with long lines of garbage beside a valid extent: a few short warnings,
/// not the whole of each line (the first release printed 780 KB of warnings for this).
#[test]
fn garbage_descriptor_lines_give_a_few_short_warnings() {
    let dir = tempdir();
    let junk = "\u{1}garbage ".repeat(5000);
    let mut text = String::from(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\nRW 8 ZERO\n",
    );
    for _ in 0..12 {
        text.push_str(&junk);
        text.push('\n');
    }
    let src = write_file(dir.path(), "junk.vmdk", text.as_bytes());
    let o = vdconv(&[&"info", &src]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 9, "{err}");
    assert!(warnings.iter().all(|w| w.len() < 300), "{err}");
    assert!(
        warnings[8].contains("4 more descriptor lines not understood"),
        "{err}"
    );
    assert!(warnings[0].contains("(44999 bytes)"), "{err}");
}

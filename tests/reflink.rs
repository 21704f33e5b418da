//! Block sharing: on XFS with reflink=1 (a loop-mounted file system made for the test), a
//! 1 GiB flat disk becomes a fixed VHD that shares every data block with the source
//! (FIEMAP says so) in well under 0.2 s; on tmpfs, and across file systems, the copy
//! falls back and -v says which path ran; `--reflink always` fails where it cannot share,
//! `--reflink never` shares nothing.
//!
//! Needs root (mount) and mkfs.xfs (xfsprogs): without them the test fails naming what
//! is missing, unless VDCONV_SKIP_MISSING_TOOLS=1 (never under CI=true).

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const GIB: u64 = 1 << 30;

/// Fails the test naming what is missing, or says it skips where the caller opted in.
fn missing(what: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if ci || std::env::var_os("VDCONV_SKIP_MISSING_TOOLS").is_none() {
        panic!("{what} (set VDCONV_SKIP_MISSING_TOOLS=1 to skip outside CI)");
    }
    eprintln!("skipping: {what}");
}

/// An XFS file system with reflink=1 on a loop file, unmounted and removed when dropped.
struct Xfs {
    mnt: PathBuf,
    image: PathBuf,
}

impl Xfs {
    fn make(dir: &Path) -> Option<Xfs> {
        let ok = Command::new("mkfs.xfs")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            missing("mkfs.xfs is required: install the Debian package xfsprogs");
            return None;
        }
        // In memory when /dev/shm is there: the test writes a GiB.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm } else { dir };
        let image = base.join(format!("vdconv-reflink-{}.img", std::process::id()));
        let mnt = dir.join("xfs");
        std::fs::create_dir_all(&mnt).unwrap();
        File::create(&image).unwrap().set_len(4 * GIB).unwrap();
        run_ok("mkfs.xfs", &[&"-q", &"-m", &"reflink=1", &image]);
        let mounted = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt)
            .output()
            .unwrap();
        if !mounted.status.success() {
            let _ = std::fs::remove_file(&image);
            let why = format!(
                "mounting an XFS loop file needs root and loop devices: {}",
                stderr(&mounted).trim()
            );
            missing(&why);
            return None;
        }
        Some(Xfs { mnt, image })
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

/// A monolithicFlat VMDK of `size` bytes of data (every byte written, so the file
/// system holds real extents), flushed.
fn flat_disk(dir: &Path, name: &str, size: u64) -> (PathBuf, PathBuf) {
    let extent = dir.join(format!("{name}-flat.vmdk"));
    let f = File::create(&extent).unwrap();
    let mut piece = vec![0u8; MIB as usize];
    Rng::new(size).fill(&mut piece);
    for i in 0..size / MIB {
        piece[..8].copy_from_slice(&i.to_le_bytes());
        f.write_all_at(&piece, i * MIB).unwrap();
    }
    f.sync_all().unwrap();
    let descriptor = dir.join(format!("{name}.vmdk"));
    std::fs::write(
        &descriptor,
        format!(
            "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW {} FLAT \"{name}-flat.vmdk\" 0\n",
            size / 512
        ),
    )
    .unwrap();
    (descriptor, extent)
}

/// FIEMAP: (logical offset, length, shared) of each extent of `path`.
fn extents(path: &Path) -> Vec<(u64, u64, bool)> {
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 1;
    const FIEMAP_EXTENT_LAST: u32 = 1;
    const FIEMAP_EXTENT_SHARED: u32 = 0x2000;
    const BATCH: usize = 256;
    // struct fiemap (32 bytes) then BATCH struct fiemap_extent (56 bytes each), as u64s.
    let f = File::open(path).unwrap();
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let mut buf = vec![0u64; (32 + BATCH * 56) / 8];
        buf[0] = start;
        buf[1] = u64::MAX - start;
        buf[2] = u64::from(FIEMAP_FLAG_SYNC) | ((BATCH as u64) << 32); // flags, mapped=0
        buf[3] = BATCH as u64; // extent_count, reserved
        // SAFETY: the buffer holds a struct fiemap with room for BATCH extents.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FIEMAP as _, buf.as_mut_ptr()) };
        assert_eq!(r, 0, "FIEMAP: {}", std::io::Error::last_os_error());
        let mapped = (buf[2] >> 32) as usize;
        if mapped == 0 {
            return out;
        }
        let mut last = false;
        for i in 0..mapped {
            let e = &buf[4 + i * 7..4 + (i + 1) * 7];
            let flags = e[5] as u32;
            out.push((e[0], e[2], flags & FIEMAP_EXTENT_SHARED != 0));
            start = e[0] + e[2];
            last |= flags & FIEMAP_EXTENT_LAST != 0;
        }
        if last {
            return out;
        }
    }
}

/// Bytes of `[0, end)` of `path` the file system says are shared with another file.
fn shared_bytes(path: &Path, end: u64) -> u64 {
    extents(path)
        .iter()
        .filter(|(_, _, shared)| *shared)
        .map(|&(at, len, _)| len.min(end.saturating_sub(at)))
        .sum()
}

fn convert(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let o = vdconv(args);
    (o, started.elapsed())
}

#[test]
fn fixed_outputs_share_the_flat_source_where_the_file_system_can() {
    if !have_readers() {
        return;
    }
    let dir = tempdir();
    let Some(xfs) = Xfs::make(dir.path()) else {
        return;
    };
    let (desc, extent) = flat_disk(&xfs.mnt, "big", GIB);
    let out = xfs.mnt.join("big.vhd");

    // Best of three: the bound is on the work, not on a busy machine's scheduling.
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let _ = std::fs::remove_file(&out);
        let (o, took) = convert(&[&"convert", &"-v", &"--type", &"fixed", &desc, &out]);
        assert_ok(&o);
        assert!(
            stderr(&o).contains(&format!("{GIB} bytes shared (FICLONERANGE")),
            "-v says the blocks were shared: {}",
            stderr(&o)
        );
        best = best.min(took);
    }
    assert!(
        best < Duration::from_millis(200),
        "1 GiB shared in {best:?}"
    );
    assert_eq!(std::fs::metadata(&out).unwrap().len(), GIB + 512);
    assert_eq!(shared_bytes(&out, GIB), GIB, "every data block is shared");
    assert_eq!(shared_bytes(&extent, GIB), GIB, "and the source's with it");
    qemu_compare(&extent, "raw", &out, "vpc");
    assert_eq!(libvhdi_sha256(&out), (GIB, file_sha256(&extent)));

    // always: the same, said to be required.
    let _ = std::fs::remove_file(&out);
    let (o, _) = convert(&[
        &"convert",
        &"--reflink",
        &"always",
        &"--type",
        &"fixed",
        &desc,
        &out,
    ]);
    assert_ok(&o);
    assert_eq!(shared_bytes(&out, GIB), GIB);
    std::fs::remove_file(&out).unwrap();

    // never: on the same file system, nothing shared (copy_file_range would share).
    let (small, small_extent) = flat_disk(&xfs.mnt, "small", 8 * MIB);
    let copy = xfs.mnt.join("small.vhd");
    let (o, _) = convert(&[
        &"convert",
        &"-v",
        &"--reflink",
        &"never",
        &"--type",
        &"fixed",
        &small,
        &copy,
    ]);
    assert_ok(&o);
    assert!(stderr(&o).contains("0 bytes shared"), "{}", stderr(&o));
    assert_eq!(shared_bytes(&copy, 8 * MIB), 0, "never shares");
    qemu_compare(&small_extent, "raw", &copy, "vpc");

    // To another file system: always fails saying why, leaving nothing; auto copies and
    // says so.
    let Some(_tmpfs) = Tmpfs::mount(&dir.path().join("tmpfs"), "64m") else {
        return;
    };
    let there = dir.path().join("tmpfs/small.vhd");
    let (o, _) = convert(&[
        &"convert",
        &"--reflink",
        &"always",
        &"--type",
        &"fixed",
        &small,
        &there,
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot share blocks"), "{}", stderr(&o));
    assert_eq!(listing(&dir.path().join("tmpfs")), Vec::<String>::new());
    let (o, _) = convert(&[&"convert", &"-v", &"--type", &"fixed", &small, &there]);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("sharing blocks (FICLONERANGE) unavailable here"),
        "{err}"
    );
    assert!(err.contains("0 bytes shared"), "{err}");
    qemu_compare(&small_extent, "raw", &there, "vpc");
}

#[test]
fn on_tmpfs_the_copy_falls_back_and_says_so() {
    if !have("qemu-img", "the Debian package qemu-utils") {
        return;
    }
    let dir = tempdir();
    let Some(_tmpfs) = Tmpfs::mount(&dir.path().join("t"), "64m") else {
        return;
    };
    let d = dir.path().join("t");
    let (desc, extent) = flat_disk(&d, "disk", 8 * MIB);
    let out = d.join("disk.vhd");
    let (o, _) = convert(&[&"convert", &"-v", &"--type", &"fixed", &desc, &out]);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("sharing blocks (FICLONERANGE) unavailable here"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "0 bytes shared (FICLONERANGE, --reflink auto), {} bytes copied by copy_file_range",
            8 * MIB
        )),
        "{err}"
    );
    qemu_compare(&extent, "raw", &out, "vpc");
    std::fs::remove_file(&out).unwrap();
    let (o, _) = convert(&[
        &"convert",
        &"--reflink",
        &"always",
        &"--type",
        &"fixed",
        &desc,
        &out,
    ]);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr(&o).contains("--reflink always: cannot share blocks"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    // A sparse source has no flat data to share.
    let raw = d.join("s.raw");
    patterned_raw(&raw, 2 * MIB, 1);
    let sparse = d.join("s.vmdk");
    qemu_vmdk(&raw, &sparse, "");
    let (o, _) = convert(&[
        &"convert",
        &"--reflink",
        &"always",
        &"--type",
        &"fixed",
        &sparse,
        &out,
    ]);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr(&o).contains("not stored as it is in one file"),
        "{}",
        stderr(&o)
    );
    let (o, _) = convert(&[&"convert", &"--reflink", &"always", &sparse, &out]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "dynamic outputs cannot promise sharing"
    );
}

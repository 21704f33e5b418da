//! The guest readers against real disks made by the real tools: partition tables (sfdisk),
//! ext4 (mkfs.ext4 -d), XFS (mkfs.xfs + loop mount), FAT (mkfs.vfat + mtools), NTFS
//! (mkntfs + ntfs-3g), LVM2 (lvm with activation off), and hand-made signatures for what
//! is detected only (LUKS, BitLocker, MD RAID). Contents read back are compared with the
//! source trees byte for byte. Hostile cases must end in an error or a volume problem,
//! quickly, without a panic.

#[path = "common/guest_images.rs"]
mod guest_images;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_images::*;
use vdconv::guest::fs::{FileKind, GuestFs, exercise};
use vdconv::guest::volume::{Content, DiskLayout, Firmware, Scheme, Volume, scan_disk};
use vdconv::guest::{ByteSource, GuestError};

/// Time any hostile case may take.
const HOSTILE_BUDGET: Duration = Duration::from_secs(2);

fn layout(disk: &Path) -> DiskLayout {
    scan_disk(FileSource::open(disk)).expect("scan")
}

fn volume<'a>(layout: &'a DiskLayout, name: &str) -> &'a Volume {
    layout
        .volumes
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no {name} in {:#?}", layout.volumes))
}

fn fs_of<'a>(layout: &'a DiskLayout, name: &str) -> &'a dyn GuestFs {
    let v = volume(layout, name);
    v.fs.as_deref()
        .unwrap_or_else(|| panic!("{name} has no file system: {v:?}"))
}

fn tools_for_linux_disk() -> bool {
    need("sfdisk", "fdisk")
        & need("mkfs.ext4", "e2fsprogs")
        & need("mkfs.vfat", "dosfstools")
        & need("mcopy", "mtools")
}

const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const LINUX_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const LVM_TYPE: &str = "E6D6D379-F507-44C2-A23C-238F2A3DF928";
const BIOS_BOOT_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";
const EXT_UUID: &str = "3f0c5a1e-9d2b-4c6a-8e1f-7a5b4c3d2e10";

/// An ext4 image of `size` bytes holding the Linux test tree (made in `dir/tree`).
fn ext4_image(dir: &Path, size: u64, big: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let tree = dir.join("tree");
    linux_tree(&tree, big);
    let img = dir.join("root.ext4");
    sparse_file(&img, size);
    sh(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            "guestroot",
            "-U",
            EXT_UUID,
            "-d",
            tree.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    (img, tree)
}

#[test]
fn gpt_disk_with_esp_and_ext4_root() {
    if !tools_for_linux_disk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    sparse_file(&disk, 48 * MIB);
    sfdisk(
        &disk,
        &format!(
            "label: gpt\nstart=2048, size=16M, type={ESP_TYPE}, name=\"EFI System\"\n\
             size=28M, type={LINUX_TYPE}, name=root\n"
        ),
    );
    let parts = partitions(&disk);

    // The ESP: FAT made by mkfs.vfat, the fallback loader copied in with mtools.
    let esp = dir.path().join("esp.img");
    sparse_file(&esp, parts[0].1);
    sh(
        "mkfs.vfat",
        &[
            "-F",
            "16",
            "-n",
            "ESP",
            "-i",
            "1234ABCD",
            esp.to_str().unwrap(),
        ],
    );
    let loader = pattern(70_000, 9);
    let loader_path = dir.path().join("BOOTX64.EFI");
    std::fs::write(&loader_path, &loader).unwrap();
    let i = esp.to_str().unwrap();
    sh("mmd", &["-i", i, "::/EFI", "::/EFI/BOOT"]);
    sh(
        "mcopy",
        &[
            "-i",
            i,
            loader_path.to_str().unwrap(),
            "::/EFI/BOOT/BOOTX64.EFI",
        ],
    );
    write_at(&disk, parts[0].0, &esp);

    let (root, tree) = ext4_image(dir.path(), parts[1].1, 3 << 20);
    write_at(&disk, parts[1].0, &root);

    let l = layout(&disk);
    assert_eq!(l.table.scheme, Scheme::Gpt);
    assert!(l.table.has_esp && !l.table.has_bios_boot);
    assert_eq!(l.table.firmware(), Firmware::Uefi);
    assert!(l.table.problems.is_empty(), "{:?}", l.table.problems);
    assert_eq!(l.volumes.len(), 2);

    let esp_v = volume(&l, "partition 1");
    assert_eq!(esp_v.content, Content::Fat);
    assert_eq!(esp_v.disk_offset, parts[0].0);
    assert_eq!(
        esp_v.partition_type.as_deref(),
        Some(&ESP_TYPE.to_lowercase()[..])
    );
    assert_eq!(esp_v.part_label.as_deref(), Some("EFI System"));
    let fat = fs_of(&l, "partition 1");
    assert_eq!(fat.kind(), "vfat");
    assert_eq!(fat.uuid().as_deref(), Some("1234-ABCD"));
    assert_eq!(fat.label().as_deref(), Some("ESP"));
    // Case-insensitive, as UEFI firmware looks it up.
    assert_eq!(
        fat.read_file(b"/efi/boot/bootx64.efi", 1 << 20).unwrap(),
        loader
    );
    assert_eq!(
        fat.read_file(b"/EFI/BOOT/BOOTX64.EFI", 1 << 20).unwrap(),
        loader
    );
    let md = fat.metadata(b"/Efi/Boot").unwrap();
    assert_eq!(md.kind, FileKind::Dir);
    assert!(matches!(
        fat.read_file(b"/EFI/BOOT/BOOTX64.EFI", 1000),
        Err(GuestError::Limit(_))
    ));
    assert!(matches!(
        fat.metadata(b"/EFI/none"),
        Err(GuestError::NotFound(_))
    ));

    let root_v = volume(&l, "partition 2");
    assert_eq!(root_v.content, Content::Ext);
    assert_eq!(root_v.part_label.as_deref(), Some("root"));
    let ext = fs_of(&l, "partition 2");
    assert_eq!(ext.kind(), "ext4");
    assert_eq!(ext.uuid().as_deref(), Some(EXT_UUID));
    assert_eq!(ext.label().as_deref(), Some("guestroot"));
    assert_same_tree(ext, &host_tree(&tree));
    check_linux_links(ext);

    // The primary GPT header damaged: the backup at the end of the disk is used.
    zero_at(&disk, 512, 512);
    let l = layout(&disk);
    assert_eq!(l.table.scheme, Scheme::Gpt);
    assert_eq!(l.volumes.len(), 2);
    assert!(
        l.table.problems.iter().any(|p| p.contains("backup")),
        "{:?}",
        l.table.problems
    );
    assert_eq!(
        fs_of(&l, "partition 1")
            .read_file(b"/EFI/BOOT/BOOTX64.EFI", 1 << 20)
            .unwrap(),
        loader
    );

    // A FAT file system without a partition table is the whole disk, not an MBR.
    let l = layout(&esp);
    assert_eq!(l.table.scheme, Scheme::None);
    assert_eq!(volume(&l, "whole disk").content, Content::Fat);
}

/// Symlink resolution the checks rely on, on any Linux root.
fn check_linux_links(fs: &dyn GuestFs) {
    let release = b"NAME=\"Test Linux\"\nID=test\n".to_vec();
    // A relative link in the last component: read_file follows, metadata does not.
    assert_eq!(fs.read_file(b"/etc/os-release", 4096).unwrap(), release);
    assert_eq!(
        fs.metadata(b"/etc/os-release").unwrap().kind,
        FileKind::Symlink
    );
    // Through /lib -> usr/lib, and through an absolute link, with `..` after it.
    assert_eq!(fs.read_file(b"/lib/os-release", 4096).unwrap(), release);
    assert_eq!(
        fs.read_file(b"/etc/abs-modules/../os-release", 4096)
            .unwrap(),
        release
    );
    assert_eq!(
        fs.read_dir(b"/lib/modules/6.1.0/kernel").unwrap()[0].name,
        b"hv_vmbus.ko"
    );
    assert_eq!(fs.read_dir(b"/lib").unwrap().len(), 2);
    assert!(matches!(
        fs.read_file(b"/loop1/x", 10),
        Err(GuestError::Limit(_))
    ));
    assert!(matches!(
        fs.read_file(b"/loop1", 10),
        Err(GuestError::Limit(_))
    ));
    assert!(matches!(
        fs.read_file(b"/many", 10),
        Err(GuestError::WrongKind { .. })
    ));
    assert!(matches!(
        fs.read_file(b"/big.bin", 10),
        Err(GuestError::Limit(_))
    ));
    assert!(matches!(
        fs.metadata(b"/etc/nope"),
        Err(GuestError::NotFound(_))
    ));
    assert!(matches!(
        fs.metadata(b"/etc/fstab/x"),
        Err(GuestError::WrongKind { .. })
    ));
}

/// Fills an XFS (mounted at `m`) with every directory and file format: shortform, block,
/// leaf and node directories; an extent list and a B+tree file; local and remote links.
fn fill_xfs(m: &Path) {
    linux_tree(m, 3 << 20);
    for i in 0..3 {
        std::fs::create_dir_all(m.join("shortform")).unwrap();
        std::fs::write(m.join(format!("shortform/f{i}")), [i as u8; 3]).unwrap();
    }
    std::fs::create_dir_all(m.join("block")).unwrap();
    for i in 0..40 {
        std::fs::write(m.join(format!("block/file_{i}")), format!("{i}")).unwrap();
    }
    std::fs::create_dir_all(m.join("node")).unwrap();
    for i in 0..3000 {
        std::fs::write(
            m.join(format!(
                "node/a_rather_long_name_to_fill_directory_blocks_{i}"
            )),
            b"",
        )
        .unwrap();
    }
    // Every other 4 KiB block written: hundreds of extents, more than the inode holds.
    let frag = std::fs::File::create(m.join("fragmented")).unwrap();
    for i in (0..600u64).step_by(2) {
        use std::os::unix::fs::FileExt;
        frag.write_all_at(&pattern(4096, i + 1), i * 4096).unwrap();
        frag.sync_data().unwrap();
    }
    std::os::unix::fs::symlink("/etc/fstab", m.join("short_link")).unwrap();
    let long = format!(
        "{}/{}/{}",
        "d".repeat(200),
        "e".repeat(200),
        "f".repeat(200)
    );
    std::os::unix::fs::symlink(long, m.join("remote_link")).unwrap();
}

fn xfs_tools() -> bool {
    need("mkfs.xfs", "xfsprogs") & need("xfs_db", "xfsprogs") & need_root()
}

/// mkfs.xfs refuses file systems under 300 MB unless run the way xfstests runs it.
fn mkfs_xfs(img: &Path, size: u64) {
    sparse_file(img, size);
    sh_env(
        "mkfs.xfs",
        &["-q", "-f", "-L", "guestxfs", img.to_str().unwrap()],
        &[("TEST_DIR", "1"), ("TEST_DEV", "1"), ("QA_CHECK_FS", "1")],
    );
}

/// The data fork format xfs_db reports for `path` ("local", "extents", "btree").
fn xfs_format(img: &Path, path: &str) -> String {
    let out = sh(
        "xfs_db",
        &[
            "-r",
            "-c",
            &format!("path {path}"),
            "-c",
            "p core.format",
            img.to_str().unwrap(),
        ],
    );
    out.split('(')
        .nth(1)
        .unwrap_or("")
        .trim_end_matches([')', '\n'])
        .to_string()
}

#[test]
fn xfs_whole_disk_every_format() {
    if !xfs_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("xfs.img");
    mkfs_xfs(&img, 64 * MIB);
    {
        let m = mount_loop(&img, &dir.path().join("m"));
        fill_xfs(&m.dir);
    }
    // Copy the expected tree from a read-only mount of the final image.
    let expected = {
        let m = mount_loop(&img, &dir.path().join("m"));
        host_tree(&m.dir)
    };
    // The formats this test means to cover, as xfs_db sees them.
    assert_eq!(xfs_format(&img, "/shortform"), "local");
    assert_eq!(xfs_format(&img, "/block"), "extents");
    assert_eq!(xfs_format(&img, "/node"), "btree");
    assert_eq!(xfs_format(&img, "/fragmented"), "btree");
    assert_eq!(xfs_format(&img, "/remote_link"), "extents");
    assert_eq!(xfs_format(&img, "/short_link"), "local");

    let l = layout(&img);
    assert_eq!(l.table.scheme, Scheme::None);
    let v = volume(&l, "whole disk");
    assert_eq!(v.content, Content::Xfs);
    let fs = fs_of(&l, "whole disk");
    assert_eq!(fs.kind(), "xfs");
    assert_eq!(fs.label().as_deref(), Some("guestxfs"));
    let blkid = sh(
        "blkid",
        &["-o", "value", "-s", "UUID", img.to_str().unwrap()],
    );
    assert_eq!(fs.uuid().as_deref(), Some(blkid.trim()));
    let t = Instant::now();
    assert_same_tree(fs, &expected);
    eprintln!("xfs tree compared in {:?}", t.elapsed());
    check_linux_links(fs);
}

/// A guest copied from a crash-consistent snapshot: changes committed to the XFS log but
/// not yet written in place. lamxfs replays the log in memory, as Linux does at mount.
#[test]
fn xfs_dirty_log_is_replayed() {
    if !(xfs_tools() & need("xfs_io", "xfsprogs") & need("xfs_logprint", "xfsprogs")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("xfs.img");
    mkfs_xfs(&img, 64 * MIB);
    let m = mount_loop(&img, &dir.path().join("m"));
    linux_tree(&m.dir, 200_000);
    sh("sync", &[]);
    // Made after the last sync: in the log only, unless the kernel writes it back within
    // these milliseconds.
    {
        // fsync: data and inode in place or in the log, as an application that saved a file
        // would have them; the directory entry only in the log.
        let mut marker = std::fs::File::create(m.dir.join("etc/marker")).unwrap();
        std::io::Write::write_all(&mut marker, b"after sync\n").unwrap();
        marker.sync_all().unwrap();
    }
    let expected = host_tree(&m.dir);
    // Flush the log and stop the file system: the changes stay in the log.
    sh(
        "xfs_io",
        &["-x", "-c", "shutdown -f", m.dir.to_str().unwrap()],
    );
    drop(m);
    let log = sh("xfs_logprint", &["-t", img.to_str().unwrap()]);
    assert!(log.contains("DIRTY"), "the log should be dirty: {log}");
    // xfs_db reads without replaying.
    let unreplayed = std::process::Command::new("xfs_db")
        .args(["-r", "-c", "path /etc/marker", img.to_str().unwrap()])
        .output()
        .unwrap();
    if String::from_utf8_lossy(&unreplayed.stderr).is_empty()
        && !String::from_utf8_lossy(&unreplayed.stdout).contains("No such file")
    {
        eprintln!("the kernel wrote the marker in place: the replay is not what is tested");
    }

    let l = layout(&img);
    let fs = fs_of(&l, "whole disk");
    assert_same_tree(fs, &expected);
    check_linux_links(fs);
}

#[test]
fn xfs_truncated_is_an_error_not_a_hang() {
    if !xfs_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("xfs.img");
    mkfs_xfs(&img, 64 * MIB);
    {
        let m = mount_loop(&img, &dir.path().join("m"));
        fill_xfs(&m.dir);
    }
    let full = std::fs::read(&img).unwrap();
    for cut in [100u64, 4096, 64 << 10, 1 << 20, 8 << 20, 20 << 20, 40 << 20] {
        let t = Instant::now();
        let bytes = full[..cut as usize].to_vec();
        let source: Arc<dyn ByteSource> = Arc::new(bytes);
        let result = vdconv::guest::fs::xfs::XfsFs::open(source);
        if let Ok(fs) = &result {
            // Whatever opens must fail cleanly where the data is missing.
            exercise(fs);
            let _ = fs.read_file(b"/big.bin", 1 << 30);
        }
        eprintln!("cut at {cut}: {:?}", t.elapsed());
        assert!(
            t.elapsed() < HOSTILE_BUDGET,
            "cut at {cut}: {:?}",
            t.elapsed()
        );
    }
    // And through the scanner, which must make it a problem of the volume.
    let cut = dir.path().join("cut.img");
    std::fs::write(&cut, &full[..4096]).unwrap();
    let l = layout(&cut);
    let v = volume(&l, "whole disk");
    assert_eq!(v.content, Content::Xfs);
    assert!(
        v.problem.as_deref().unwrap().starts_with("cannot inspect:"),
        "{v:?}"
    );
}

/// The same for ext4, made deterministic with debugfs's journal writer: the journal holds
/// a committed new version of a file's block that is not in place. ext4-view replays the
/// journal in memory.
#[test]
fn ext4_dirty_journal_is_replayed() {
    if !(need("mkfs.ext4", "e2fsprogs") & need("debugfs", "e2fsprogs")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hostname"), b"old-name\n").unwrap();
    let img = dir.path().join("ext4.img");
    sparse_file(&img, 16 * MIB);
    let i = img.to_str().unwrap();
    sh(
        "mkfs.ext4",
        &["-q", "-F", "-b", "4096", "-d", tree.to_str().unwrap(), i],
    );
    let block = sh("debugfs", &["-R", "bmap /etc/hostname 0", i]);
    let mut new = b"new-name\n".to_vec();
    new.resize(4096, 0);
    let new_path = dir.path().join("block");
    std::fs::write(&new_path, &new).unwrap();
    let pristine = std::fs::read(&img).unwrap();
    let journal = |checksums: bool| {
        std::fs::write(&img, &pristine).unwrap();
        // `jo -c` writes a checksummed (v3) journal, as the kernel does on metadata_csum
        // file systems.
        let open = if checksums { "jo -c" } else { "jo" };
        let script = format!(
            "{open}\njw -b {} {}\njc\n",
            block.trim(),
            new_path.display()
        );
        let script_path = dir.path().join("journal.cmds");
        std::fs::write(&script_path, script).unwrap();
        sh("debugfs", &["-w", "-f", script_path.to_str().unwrap(), i]);
        assert!(sh("dumpe2fs", &["-h", i]).contains("needs_recovery"));
        // In place, the old contents; debugfs does not replay.
        assert_eq!(sh("debugfs", &["-R", "cat /etc/hostname", i]), "old-name\n");
        layout(&img)
    };

    let l = journal(true);
    let fs = fs_of(&l, "whole disk");
    assert_eq!(fs.read_file(b"/etc/hostname", 100).unwrap(), b"new-name\n");

    // ext4-view replays only checksummed journals: without, the volume is not read
    // (rather than read stale), and says why.
    let l = journal(false);
    let v = volume(&l, "whole disk");
    assert!(v.fs.is_none());
    assert!(v.problem.as_deref().unwrap().contains("journal"), "{v:?}");
}

#[test]
fn ext4_directory_and_symlink_loops_end() {
    if !(need("mkfs.ext4", "e2fsprogs") & need("debugfs", "e2fsprogs")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = ext4_image(dir.path(), 16 * MIB, 1000);
    // A hard link from a directory to its grandparent: a directory loop.
    sh("debugfs", &["-w", "-R", "mkdir /a", img.to_str().unwrap()]);
    sh(
        "debugfs",
        &["-w", "-R", "mkdir /a/b", img.to_str().unwrap()],
    );
    sh(
        "debugfs",
        &["-w", "-R", "link /a /a/b/up", img.to_str().unwrap()],
    );
    let l = layout(&img);
    let fs = fs_of(&l, "whole disk");
    let t = Instant::now();
    exercise(fs);
    let deep = "/a/b/up/b/up/b/up/b/up/b".as_bytes();
    assert_eq!(fs.metadata(deep).unwrap().kind, FileKind::Dir);
    let names: Vec<_> = fs
        .read_dir(deep)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![b"up".to_vec()]);
    assert!(matches!(
        fs.read_file(b"/loop1", 10),
        Err(GuestError::Limit(_))
    ));
    assert!(t.elapsed() < HOSTILE_BUDGET, "{:?}", t.elapsed());
}

/// A superblock that claims 2^32-1 block groups: `ext4-view` sized a descriptor table
/// for all of them (64 GiB) before reading one, and the failed allocation aborted the
/// process (the volumes fuzz target found it). The geometry is now checked first: a
/// volume problem that names the superblock, and no file system.
#[test]
fn ext4_claiming_more_blocks_than_its_volume_is_refused_before_anything_is_sized() {
    if !(need("mkfs.ext4", "e2fsprogs") & need("debugfs", "e2fsprogs")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ext4.img");
    sparse_file(&img, 16 * MIB);
    let i = img.to_str().unwrap();
    sh("mkfs.ext4", &["-q", "-F", "-b", "1024", "-g", "8192", i]);
    // debugfs writes both halves of the count and the superblock checksum, so nothing
    // but the count is wrong: 8192 * (2^32 - 1) blocks after the first data block.
    let blocks = 8192 * (u64::from(u32::MAX)) + 1;
    sh(
        "debugfs",
        &["-w", "-R", &format!("ssv blocks_count {blocks}"), i],
    );
    let t = Instant::now();
    let l = layout(&img);
    let v = volume(&l, "whole disk");
    assert!(v.fs.is_none(), "{v:?}");
    let problem = v.problem.as_deref().unwrap_or_default();
    assert!(
        problem.contains("ext4 superblock")
            && problem.contains(&format!("claims {blocks} blocks of 1024 bytes"))
            && problem.contains("more than the volume's 16777216 bytes"),
        "{problem}"
    );
    assert!(t.elapsed() < HOSTILE_BUDGET, "{:?}", t.elapsed());
}

/// The LVM disk: GPT with a BIOS boot partition and two PVs; VG `guestvg` with `root`
/// (7 extents on the first PV, the rest on the second: the LV spans both) holding ext4,
/// `swap` and `data` (XFS) on the second PV.
struct LvmDisk {
    _dir: tempfile::TempDir,
    disk: std::path::PathBuf,
    tree: std::path::PathBuf,
    /// What the `data` LV's XFS holds.
    xfs_tree: std::collections::BTreeMap<String, (FileKind, Vec<u8>)>,
    pv_offsets: Vec<u64>,
}

fn lvm_tools() -> bool {
    tools_for_linux_disk() & need("lvm", "lvm2") & need("mkswap", "util-linux") & xfs_tools()
}

fn make_lvm_disk() -> LvmDisk {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    sparse_file(&disk, 80 * MIB);
    sfdisk(
        &disk,
        &format!(
            "label: gpt\nstart=2048, size=1M, type={BIOS_BOOT_TYPE}\n\
             size=8M, type={LVM_TYPE}\nsize=64M, type={LVM_TYPE}\n"
        ),
    );
    let parts = partitions(&disk);
    let (pv_a, pv_b) = (
        Loop::new(&disk, parts[1].0, parts[1].1),
        Loop::new(&disk, parts[2].0, parts[2].1),
    );
    let (dev_a, dev_b) = (pv_a.dev.clone(), pv_b.dev.clone());
    let devs = [dev_a.as_str(), dev_b.as_str()];
    let d = dir.path();
    lvm(d, &devs, &["pvcreate", "-q", devs[0], devs[1]]);
    lvm(
        d,
        &devs,
        &["vgcreate", "-q", "-s", "1M", "guestvg", devs[0], devs[1]],
    );
    lvm(
        d,
        &devs,
        &[
            "lvcreate", "-q", "-an", "-Zn", "-n", "root", "-l", "7", "guestvg", devs[0],
        ],
    );
    lvm(
        d,
        &devs,
        &["lvextend", "-q", "-l", "+25", "guestvg/root", devs[1]],
    );
    lvm(
        d,
        &devs,
        &[
            "lvcreate", "-q", "-an", "-Zn", "-n", "swap", "-L", "4M", "guestvg", devs[1],
        ],
    );
    lvm(
        d,
        &devs,
        &[
            "lvcreate", "-q", "-an", "-Zn", "-n", "data", "-L", "20M", "guestvg", devs[1],
        ],
    );
    // Where LVM put each segment: "lv start size dev:first-last".
    let segs = lvm(
        d,
        &devs,
        &[
            "lvs",
            "--noheadings",
            "--segments",
            "-o",
            "lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges",
            "guestvg",
        ],
    );
    let pe_start: u64 = lvm(
        d,
        &devs,
        &[
            "pvs",
            "--noheadings",
            "--nosuffix",
            "--units",
            "b",
            "-o",
            "pe_start",
            devs[0],
        ],
    )
    .trim()
    .parse()
    .unwrap();
    drop((pv_a, pv_b));

    let (root_img, tree) = ext4_image(d, 32 * MIB, 6 << 20);
    let swap_img = d.join("swap.img");
    sparse_file(&swap_img, 4 * MIB);
    sh("mkswap", &[swap_img.to_str().unwrap()]);
    // XFS for the `data` LV, filled through a loop mount.
    let xfs_img = d.join("data.xfs");
    mkfs_xfs(&xfs_img, 20 * MIB);
    let xfs_tree = {
        let m = mount_loop(&xfs_img, &d.join("xfs-mnt"));
        linux_tree(&m.dir, 1 << 20);
        host_tree(&m.dir)
    };
    let images = [
        ("data", std::fs::read(&xfs_img).unwrap()),
        ("root", std::fs::read(&root_img).unwrap()),
        ("swap", std::fs::read(&swap_img).unwrap()),
    ];
    let extent = MIB;
    for line in segs.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (lv, start, count) = (
            f[0],
            f[1].parse::<u64>().unwrap(),
            f[2].parse::<u64>().unwrap(),
        );
        let (dev, range) = f[3].split_once(':').unwrap();
        let first: u64 = range.split_once('-').unwrap().0.parse().unwrap();
        let part = if dev == devs[0] {
            parts[1].0
        } else {
            parts[2].0
        };
        let data = &images.iter().find(|(n, _)| *n == lv).unwrap().1;
        let piece = &data[(start * extent) as usize..((start + count) * extent) as usize];
        write_bytes_at(&disk, part + pe_start + first * extent, piece);
    }
    LvmDisk {
        pv_offsets: vec![parts[1].0, parts[2].0],
        _dir: dir,
        disk,
        tree,
        xfs_tree,
    }
}

#[test]
fn lvm_root_spanning_two_pvs() {
    if !lvm_tools() {
        return;
    }
    let d = make_lvm_disk();
    let l = layout(&d.disk);
    assert_eq!(l.table.scheme, Scheme::Gpt);
    assert!(l.table.has_bios_boot);
    assert_eq!(l.table.firmware(), Firmware::Bios);
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    assert_eq!(volume(&l, "partition 1").content, Content::NoFileSystem);
    for p in ["partition 2", "partition 3"] {
        let v = volume(&l, p);
        assert_eq!(v.content, Content::LvmPv);
        assert!(v.problem.is_none(), "{v:?}");
    }
    let root = volume(&l, "LV guestvg/root");
    assert_eq!(root.lvm, Some(("guestvg".to_string(), "root".to_string())));
    assert_eq!(root.source.len(), 32 * MIB);
    assert_eq!(root.content, Content::Ext);
    assert_eq!(root.disk_offset, d.pv_offsets[0] + MIB);
    let fs = fs_of(&l, "LV guestvg/root");
    assert_eq!(fs.uuid().as_deref(), Some(EXT_UUID));
    assert_same_tree(fs, &host_tree(&d.tree));
    check_linux_links(fs);
    let swap = volume(&l, "LV guestvg/swap");
    assert_eq!(swap.content, Content::Swap);
    assert!(swap.fs.is_none() && swap.problem.is_none());
    let data = volume(&l, "LV guestvg/data");
    assert_eq!(data.content, Content::Xfs);
    let xfs = fs_of(&l, "LV guestvg/data");
    assert_same_tree(xfs, &d.xfs_tree);
    check_linux_links(xfs);
}

/// Scans `disk` within the hostile budget and returns the layout.
fn scan_quickly(disk: &Path) -> DiskLayout {
    let t = Instant::now();
    let l = layout(disk);
    assert!(t.elapsed() < HOSTILE_BUDGET, "scan took {:?}", t.elapsed());
    l
}

#[test]
fn lvm_hostile_metadata_becomes_problems() {
    if !lvm_tools() {
        return;
    }
    let d = make_lvm_disk();
    let copy = |name: &str| {
        let p = d.disk.with_file_name(name);
        sh(
            "cp",
            &[
                "--sparse=always",
                d.disk.to_str().unwrap(),
                p.to_str().unwrap(),
            ],
        );
        p
    };

    // A RAID1 segment (what lvcreate --type raid1 writes; not readable as linear).
    let raid = copy("raid.img");
    for &pv in &d.pv_offsets {
        rewrite_lvm_metadata(
            &raid,
            pv,
            |t| {
                let at = t.find("swap {").unwrap();
                let (head, tail) = t.split_at(at);
                format!(
                    "{head}{}",
                    tail.replacen("type = \"striped\"", "type = \"raid1\"", 1)
                )
            },
            None,
        );
    }
    let l = scan_quickly(&raid);
    let swap = volume(&l, "LV guestvg/swap");
    let problem = swap.problem.as_deref().unwrap();
    assert!(
        problem.starts_with("cannot inspect:") && problem.contains("raid1"),
        "{problem}"
    );
    assert_eq!(swap.source.len(), 0);
    assert!(volume(&l, "LV guestvg/root").fs.is_some());

    // Absurd nesting, with valid checksums: refused by the parser's depth bound.
    let nested = copy("nested.img");
    for &pv in &d.pv_offsets {
        rewrite_lvm_metadata(
            &nested,
            pv,
            |t| format!("{}{}{}", "x {\n".repeat(5000), t, "}\n".repeat(5000)),
            None,
        );
    }
    let l = scan_quickly(&nested);
    assert!(!l.volumes.iter().any(|v| v.lvm.is_some()));
    assert!(
        l.problems.iter().any(|p| p.contains("deeper")),
        "{:?}",
        l.problems
    );

    // A metadata location claiming a gigabyte: refused before anything is read.
    let huge = copy("huge.img");
    for &pv in &d.pv_offsets {
        rewrite_lvm_metadata(&huge, pv, |t| t.to_string(), Some(1 << 30));
    }
    let l = scan_quickly(&huge);
    assert!(!l.volumes.iter().any(|v| v.lvm.is_some()));
    for p in ["partition 2", "partition 3"] {
        let problem = volume(&l, p).problem.as_deref().unwrap();
        assert!(problem.contains("limit"), "{problem}");
    }

    // One PV wiped: the LV that spans it is reported, not read.
    let missing = copy("missing.img");
    zero_at(&missing, d.pv_offsets[1], 1 << 20);
    let l = scan_quickly(&missing);
    let root = volume(&l, "LV guestvg/root");
    assert!(
        root.problem.as_deref().unwrap().contains("missing"),
        "{root:?}"
    );
}

/// Random edits of real LVM metadata, checksums made right so the parser and the VG
/// assembly see them: never a panic, always quick.
#[test]
fn lvm_metadata_edits_never_panic() {
    if !lvm_tools() {
        return;
    }
    let d = make_lvm_disk();
    let image = std::fs::read(&d.disk).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        "=",
        "\"",
        "#",
        ",",
        "\n",
        "-1",
        "0",
        "99999999999999999999",
        "9223372036854775807",
        "segment1 {",
        "type = \"striped\"",
        "stripes = [",
        "pv9",
    ];
    let t = Instant::now();
    let mut with_lvs = 0;
    for round in 0..40 {
        let mut disk = image.clone();
        // Even rounds change numbers only (the text still parses: the VG assembly sees
        // negative, zero and overflowing extents); odd rounds break the syntax.
        let numbers_only = round % 2 == 0;
        let edits: Vec<(usize, usize, &str)> = (0..1 + next() % 6)
            .map(|_| {
                let piece = pieces[(next() % pieces.len() as u64) as usize];
                (next() as usize, (next() % 8) as usize, piece)
            })
            .collect();
        let numbers = [
            "-1",
            "0",
            "1",
            "99999999999999999999",
            "9223372036854775807",
        ];
        let edit = |text: &str| {
            let mut t = text.as_bytes().to_vec();
            if numbers_only {
                // Replace the digit runs after " = " at the chosen places.
                let runs: Vec<(usize, usize)> = text
                    .match_indices(" = ")
                    .map(|(i, _)| i + 3)
                    .filter(|&i| t.get(i).is_some_and(u8::is_ascii_digit))
                    .map(|i| {
                        (
                            i,
                            i + t[i..].iter().take_while(|b| b.is_ascii_digit()).count(),
                        )
                    })
                    .collect();
                assert!(!runs.is_empty(), "no numbers in {text}");
                for &(at, _, _) in &edits {
                    // Earlier splices may have moved later runs: a stale run only makes
                    // the edit more random.
                    let (start, end) = runs[at % runs.len()];
                    let n = numbers[at % numbers.len()];
                    if end <= t.len() {
                        t.splice(start..end, n.bytes());
                    }
                }
                return String::from_utf8_lossy(&t).into_owned();
            }
            for &(at, cut, piece) in &edits {
                let at = at % t.len().max(1);
                let end = (at + cut).min(t.len());
                t.splice(at..end, piece.bytes());
            }
            String::from_utf8_lossy(&t).into_owned()
        };
        for &pv in &d.pv_offsets {
            rewrite_lvm_metadata_in(&mut disk, pv, edit, None);
        }
        let one = Instant::now();
        let l = scan_disk(Arc::new(disk)).unwrap();
        with_lvs += usize::from(l.volumes.iter().any(|v| v.lvm.is_some()));
        // Whatever LVs came out must read (or refuse) within their bounds.
        for v in l.volumes.iter().filter(|v| v.lvm.is_some()) {
            let mut buf = vec![0u8; 4096.min(v.source.len() as usize)];
            let _ = v
                .source
                .read_exact_at(v.source.len() - buf.len() as u64, &mut buf);
        }
        assert!(one.elapsed() < HOSTILE_BUDGET, "{:?}", one.elapsed());
    }
    eprintln!(
        "40 edited metadata texts scanned in {:?}, {with_lvs} still giving LVs",
        t.elapsed()
    );
}

#[test]
fn ntfs_on_mbr_case_insensitive() {
    if !(need("sfdisk", "fdisk")
        & need("mkntfs", "ntfs-3g")
        & need("ntfs-3g", "ntfs-3g")
        & need_root())
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    sparse_file(&disk, 40 * MIB);
    sfdisk(
        &disk,
        "label: dos\nlabel-id: 0x5eed1234\nstart=2048, size=32M, type=7, bootable\n",
    );
    let parts = partitions(&disk);
    let img = dir.path().join("ntfs.img");
    sparse_file(&img, parts[0].1);
    sh(
        "mkntfs",
        &["-q", "-F", "-f", "-L", "Windows", img.to_str().unwrap()],
    );
    let system = pattern(300_000, 11);
    let small = b"small resident file\r\n".to_vec();
    {
        let m = mount_ntfs(&img, &dir.path().join("m"));
        let config = m.dir.join("Windows/System32/config");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(config.join("SYSTEM"), &system).unwrap();
        std::fs::write(config.join("SOFTWARE"), b"").unwrap();
        std::fs::write(m.dir.join("Windows/win.ini"), &small).unwrap();
        std::fs::create_dir_all(m.dir.join("Program Files/Long Directory Name")).unwrap();
    }
    write_at(&disk, parts[0].0, &img);

    let l = layout(&disk);
    assert_eq!(l.table.scheme, Scheme::Mbr);
    assert_eq!(l.table.disk_signature, Some(0x5eed1234));
    assert_eq!(l.table.firmware(), Firmware::Bios);
    let v = volume(&l, "partition 1");
    assert_eq!(v.content, Content::Ntfs);
    assert_eq!(v.partition_type.as_deref(), Some("0x07"));
    assert_eq!(v.part_uuid.as_deref(), Some("5eed1234-01"));
    let fs = fs_of(&l, "partition 1");
    assert_eq!(fs.kind(), "ntfs");
    assert_eq!(fs.label().as_deref(), Some("Windows"));
    let uuid = fs.uuid().unwrap();
    let blkid = sh(
        "blkid",
        &["-o", "value", "-s", "UUID", img.to_str().unwrap()],
    );
    assert_eq!(uuid, blkid.trim());
    // Non-resident, through every spelling Windows would accept.
    for p in [
        "/Windows/System32/config/SYSTEM",
        "/windows/system32/CONFIG/system",
        "/WINDOWS/SYSTEM32/Config/System",
    ] {
        assert_eq!(fs.read_file(p.as_bytes(), 1 << 20).unwrap(), system, "{p}");
    }
    assert_eq!(
        fs.metadata(b"/windows/system32/config/system")
            .unwrap()
            .size,
        300_000
    );
    // Resident and empty.
    assert_eq!(fs.read_file(b"/WINDOWS/WIN.INI", 1 << 20).unwrap(), small);
    assert_eq!(
        fs.read_file(b"/Windows/System32/config/SOFTWARE", 10)
            .unwrap(),
        b""
    );
    let mut names: Vec<String> = fs
        .read_dir(b"/windows/system32/config")
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["SOFTWARE", "SYSTEM"]);
    let root: Vec<String> = fs
        .read_dir(b"/")
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    assert!(root.contains(&"Program Files".to_string()) && root.contains(&"$MFT".to_string()));
    // The DOS 8.3 alias is not listed beside the long name.
    assert!(!root.iter().any(|n| n.contains('~')), "{root:?}");
    assert_eq!(
        fs.metadata(b"/program files/long directory name")
            .unwrap()
            .kind,
        FileKind::Dir
    );
    assert!(matches!(
        fs.read_file(b"/Windows/System32/config/SYSTEM", 1000),
        Err(GuestError::Limit(_))
    ));
    assert!(matches!(
        fs.read_file(b"/Windows", 1000),
        Err(GuestError::WrongKind { .. })
    ));
    assert!(matches!(
        fs.metadata(b"/Windows/nope"),
        Err(GuestError::NotFound(_))
    ));

    assert!(matches!(
        fs.read_link(b"/Windows/nope"),
        Err(GuestError::NotFound(_))
    ));
    assert!(matches!(
        fs.read_link(b"/Windows/win.ini"),
        Err(GuestError::WrongKind { .. })
    ));

    // NTFS without a partition table (its boot sector ends in 55 AA too) is the whole disk.
    let l = layout(&img);
    assert_eq!(l.table.scheme, Scheme::None);
    let v = volume(&l, "whole disk");
    assert_eq!(v.content, Content::Ntfs);
    assert!(v.fs.is_some());
}

#[test]
fn mbr_with_extended_and_logical_partitions() {
    if !(need("sfdisk", "fdisk") & need("mkfs.vfat", "dosfstools") & need("mkswap", "util-linux")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    sparse_file(&disk, 32 * MIB);
    // Logical partitions are named by number, or sfdisk makes them primaries.
    let d = disk.display();
    sfdisk(
        &disk,
        &format!(
            "label: dos\nlabel-id: 0xa1b2c3d4\nstart=2048, size=4M, type=83\n\
             size=24M, type=5\n{d}5 : size=8M, type=82\n{d}6 : size=8M, type=c\n\
             {d}7 : size=4M, type=83\n"
        ),
    );
    let parts = partitions(&disk);
    // sfdisk lists the primaries, the extended partition, then the logical ones.
    assert_eq!(parts.len(), 5);
    let swap = dir.path().join("swap.img");
    sparse_file(&swap, parts[2].1);
    sh("mkswap", &[swap.to_str().unwrap()]);
    write_at(&disk, parts[2].0, &swap);
    let fat = dir.path().join("fat.img");
    sparse_file(&fat, parts[3].1);
    sh("mkfs.vfat", &["-n", "DATA", fat.to_str().unwrap()]);
    write_at(&disk, parts[3].0, &fat);

    let l = layout(&disk);
    assert_eq!(l.table.scheme, Scheme::Mbr);
    assert!(l.table.problems.is_empty(), "{:?}", l.table.problems);
    let names: Vec<&str> = l.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        ["partition 1", "partition 5", "partition 6", "partition 7"]
    );
    let p5 = volume(&l, "partition 5");
    assert_eq!((p5.disk_offset, p5.source.len()), parts[2]);
    assert_eq!(p5.content, Content::Swap);
    assert_eq!(p5.part_uuid.as_deref(), Some("a1b2c3d4-05"));
    let p6 = volume(&l, "partition 6");
    assert_eq!((p6.disk_offset, p6.source.len()), parts[3]);
    assert_eq!(p6.content, Content::Fat);
    assert_eq!(fs_of(&l, "partition 6").label().as_deref(), Some("DATA"));
    let p7 = volume(&l, "partition 7");
    assert_eq!((p7.disk_offset, p7.source.len()), parts[4]);
    assert_eq!(p7.content, Content::Unknown);
}

#[test]
fn encrypted_and_raid_members_are_detected_not_read() {
    if !need("sfdisk", "fdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    sparse_file(&disk, 40 * MIB);
    sfdisk(
        &disk,
        "label: dos\nstart=2048, size=8M, type=83\nsize=8M, type=7\nsize=8M, type=fd\nsize=8M, type=fd\n",
    );
    let parts = partitions(&disk);
    // LUKS: the magic and version at 0.
    write_bytes_at(&disk, parts[0].0, b"LUKS\xba\xbe\x00\x02");
    // BitLocker: a boot sector with the -FVE-FS- OEM id.
    let mut bde = vec![0u8; 512];
    bde[..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    bde[3..11].copy_from_slice(b"-FVE-FS-");
    bde[510..].copy_from_slice(&[0x55, 0xAA]);
    write_bytes_at(&disk, parts[1].0, &bde);
    // MD 1.2 superblock at 4 KiB, saying so (super_offset 8 sectors).
    let mut md = vec![0u8; 256];
    md[..4].copy_from_slice(&0xa92b_4efcu32.to_le_bytes());
    md[4..8].copy_from_slice(&1u32.to_le_bytes());
    md[144..152].copy_from_slice(&8u64.to_le_bytes());
    write_bytes_at(&disk, parts[2].0 + 4096, &md);
    // MD 0.90 superblock in the last 64 KiB-aligned 64 KiB, over an ext4 signature at the
    // start (a RAID1 member shows its file system too).
    let end = parts[3].1;
    let mut md0 = vec![0u8; 16];
    md0[..4].copy_from_slice(&0xa92b_4efcu32.to_le_bytes());
    write_bytes_at(&disk, parts[3].0 + (end & !0xFFFF) - 0x10000, &md0);
    write_bytes_at(&disk, parts[3].0 + 1080, &[0x53, 0xEF]);

    let l = layout(&disk);
    let expect = [
        ("partition 1", Content::Luks, "LUKS"),
        ("partition 2", Content::BitLocker, "BitLocker"),
        ("partition 3", Content::MdRaid, "RAID member"),
        ("partition 4", Content::MdRaid, "RAID member"),
    ];
    for (name, content, problem) in expect {
        let v = volume(&l, name);
        assert_eq!(v.content, content, "{name}");
        assert!(v.fs.is_none());
        assert!(v.problem.as_deref().unwrap().contains(problem), "{v:?}");
    }
}

#[test]
fn windows_partition_types_on_gpt() {
    if !need("sfdisk", "fdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    sparse_file(&disk, 16 * MIB);
    sfdisk(
        &disk,
        "label: gpt\nstart=2048, size=4M, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE\n\
         size=1M, type=5808C8AA-7E8F-42E0-85D2-E1E90434CFB3\n\
         size=4M, type=AF9B60A0-1431-4F62-BC68-3311714A69AD\n",
    );
    let l = layout(&disk);
    // No ESP: BIOS, whatever the scheme.
    assert_eq!(l.table.firmware(), Firmware::Bios);
    let msr = volume(&l, "partition 1");
    assert_eq!(msr.content, Content::NoFileSystem);
    assert!(msr.problem.is_none() && msr.fs.is_none());
    for p in ["partition 2", "partition 3"] {
        let v = volume(&l, p);
        assert_eq!(v.content, Content::WindowsDynamic, "{p}");
        assert!(
            v.problem.as_deref().unwrap().contains("dynamic disk"),
            "{v:?}"
        );
    }
}

/// The scanner over mutated copies of a real disk: never a panic, always quick.
#[test]
fn scanning_damaged_disks_never_panics() {
    if !tools_for_linux_disk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    sparse_file(&disk, 20 * MIB);
    sfdisk(
        &disk,
        &format!("label: gpt\nstart=2048, size=4M, type={ESP_TYPE}\nsize=12M, type={LINUX_TYPE}\n"),
    );
    let parts = partitions(&disk);
    let esp = dir.path().join("esp.img");
    sparse_file(&esp, parts[0].1);
    sh("mkfs.vfat", &[esp.to_str().unwrap()]);
    write_at(&disk, parts[0].0, &esp);
    let (root, _) = ext4_image(dir.path(), parts[1].1, 100_000);
    write_at(&disk, parts[1].0, &root);
    let image = std::fs::read(&disk).unwrap();
    // Metadata lives in the first sectors of the disk and of each file system.
    let hot = [
        (0u64, 34 * 512),
        (parts[0].0, 64 << 10),
        (parts[1].0, 2 << 20),
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let t = Instant::now();
    let rounds = 40;
    for _ in 0..rounds {
        let mut bytes = image.clone();
        let (start, len) = hot[(next() % hot.len() as u64) as usize];
        for _ in 0..(1 + next() % 16) {
            let at = (start + next() % len) as usize;
            bytes[at] = next() as u8;
        }
        let one = Instant::now();
        vdconv::guest::volume::fuzz_volumes(&bytes);
        assert!(one.elapsed() < HOSTILE_BUDGET, "{:?}", one.elapsed());
    }
    eprintln!("{rounds} damaged disks scanned in {:?}", t.elapsed());
}

// Mutation runs over the crate-backed readers: no damaged image may panic or take longer
// than the hostile budget to walk. A few hundred rounds each keep them to seconds; the
// fuzz targets (fuzz/, `volumes`) run millions. ROUNDS=N in the environment runs more.

fn rounds(default: usize) -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

#[test]
fn damaged_ntfs_never_panics_or_stalls() {
    if !(need("mkntfs", "ntfs-3g") & need_root()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ntfs.img");
    sparse_file(&img, 8 * MIB);
    sh("mkntfs", &["-q", "-F", "-f", img.to_str().unwrap()]);
    {
        let m = mount_ntfs(&img, &dir.path().join("m"));
        let config = m.dir.join("Windows/System32/config");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(config.join("SYSTEM"), pattern(300_000, 1)).unwrap();
        for i in 0..200 {
            std::fs::write(m.dir.join(format!("Windows/f{i}")), b"x").unwrap();
        }
    }
    let base = std::fs::read(&img).unwrap();
    let mft = {
        let c = u64::from_le_bytes(base[0x30..0x38].try_into().unwrap());
        let spc = base[0x0d] as u64;
        (c * spc * 512) as usize
    };
    std::panic::set_hook(Box::new(|_| {}));
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut panics, mut worst) = (0, Duration::ZERO);
    for _ in 0..rounds(300) {
        let mut b = base.clone();
        for _ in 0..(1 + next() % 8) {
            let at = if next() % 4 == 0 {
                (next() % 512) as usize
            } else {
                mft + (next() % (64 * 1024)) as usize
            };
            b[at] = next() as u8;
        }
        let t = Instant::now();
        let r = std::panic::catch_unwind(move || {
            if let Ok(fs) = vdconv::guest::fs::ntfs::NtfsFs::open(Arc::new(b)) {
                exercise(&fs);
            }
        });
        worst = worst.max(t.elapsed());
        if r.is_err() {
            panics += 1;
        }
    }
    let _ = std::panic::take_hook();
    eprintln!("ntfs: {panics} panics, worst {worst:?}");
    assert_eq!(panics, 0, "damaged NTFS images panicked the reader");
    assert!(
        worst < HOSTILE_BUDGET,
        "slowest damaged NTFS walk {worst:?}"
    );
}

#[test]
fn damaged_ext_and_fat_never_panic_or_stall() {
    if !(need("mkfs.ext4", "e2fsprogs") & need("mkfs.vfat", "dosfstools") & need("mcopy", "mtools"))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ext, _) = ext4_image(dir.path(), 8 * MIB, 100_000);
    let fat = dir.path().join("fat.img");
    sparse_file(&fat, 8 * MIB);
    sh("mkfs.vfat", &[fat.to_str().unwrap()]);
    let i = fat.to_str().unwrap();
    sh("mmd", &["-i", i, "::/EFI", "::/EFI/BOOT"]);
    let f = dir.path().join("x.efi");
    std::fs::write(&f, pattern(100_000, 3)).unwrap();
    sh(
        "mcopy",
        &["-i", i, f.to_str().unwrap(), "::/EFI/BOOT/BOOTX64.EFI"],
    );
    for (name, path, hot) in [("ext", ext, 1 << 20), ("fat", fat, 64 << 10)] {
        let base = std::fs::read(&path).unwrap();
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut errs, mut worst) = (0, Duration::ZERO);
        for _ in 0..rounds(150) {
            let mut b = base.clone();
            for _ in 0..(1 + next() % 8) {
                let at = (next() % hot) as usize;
                b[at] = next() as u8;
            }
            let t = Instant::now();
            let content = if name == "ext" {
                Content::Ext
            } else {
                Content::Fat
            };
            match vdconv::guest::fs::open_fs(&content, Arc::new(b)) {
                Ok(Some(fs)) => exercise(&*fs),
                _ => errs += 1,
            }
            worst = worst.max(t.elapsed());
        }
        eprintln!("{name}: {errs} failed opens, worst {worst:?}");
        assert!(
            worst < HOSTILE_BUDGET,
            "slowest damaged {name} walk {worst:?}"
        );
    }
}

//! OVA and OVF packages built with real tools (qemu-img, GNU tar, coreutils, gzip), read
//! from a file, from a folder and through a pipe: the parsed model is asserted exactly,
//! the bytes it locates are the bytes that were packed, and hostile packages fail fast
//! with a typed error naming the file or member.

mod common;
#[path = "common/ova_build.rs"]
mod ova_build;

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ova_build::{DiskSpec, VmSpec};
use vdconv::ova::ovf::{ControllerKind, Firmware, HostResource};
use vdconv::ova::{
    Compression, OvaError, OvaPackage, OvaResult, OvaStream, OvfPackage, Place, StreamOutcome,
    fuzz_manifest, fuzz_ovf, fuzz_tar, tar,
};

const MIB: u64 = 1 << 20;
/// Every hostile input must fail at least this fast,
const FAST: Duration = Duration::from_secs(2);
/// and allocate at most this much on the way (the descriptor cap is 4 MiB).
const SMALL: usize = 16 << 20;

/// Counts the bytes each thread has allocated, so a test can tell how much memory a
/// call needed at its peak (other tests run on other threads and do not count).
struct Counting;

thread_local! {
    static LIVE: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
    static PEAK: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed to the system allocator unchanged; the counters are
// const-initialised thread-locals, which never allocate.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new) };
        if !p.is_null() {
            track(new as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f`; returns what it gave, the time it took and the most it had allocated at
/// once on this thread.
fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration, usize) {
    let base = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(base));
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    let peak = (PEAK.with(|p| p.get()) - base).max(0) as usize;
    (out, took, peak)
}

/// Runs `f` and checks it took under FAST and allocated under SMALL at its peak.
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let (out, took, peak) = measure(f);
    assert!(took < FAST, "{what}: took {took:?}");
    assert!(peak < SMALL, "{what}: allocated {peak} bytes at its peak");
    out
}

#[test]
fn the_allocation_meter_sees_a_large_buffer() {
    let ((), _, peak) = measure(|| drop(std::hint::black_box(vec![1u8; 20 << 20])));
    assert!(peak >= 20 << 20, "{peak}");
    let ((), _, peak) = measure(|| drop(std::hint::black_box(vec![1u8; 1 << 10])));
    assert!(peak < SMALL, "{peak}");
}

/// How a disk is stored in the package.
#[derive(Clone, Copy)]
enum Store {
    Plain,
    Gzip,
    Chunked(u64),
}

struct Plan {
    href: &'static str,
    mib: u64,
    seed: u64,
    store: Store,
    parent: &'static str,
    unit: u32,
}

/// What a test expects of one disk.
struct Expected {
    disk_id: String,
    href: String,
    /// The bytes stored in the package (gzip or whole), and the VMDK itself.
    stored: Vec<u8>,
    vmdk: Vec<u8>,
    pieces: Vec<(String, u64)>,
    capacity: u64,
    compression: Compression,
    chunk_size: Option<u64>,
    controller: (
        ControllerKind,
        Option<String>,
        String,
        Option<u32>,
        Option<u32>,
    ),
}

/// A package's files staged in a folder, and what they should parse as.
struct Staged {
    dir: PathBuf,
    name: String,
    /// Package files in ovftool's order: .ovf, .mf, then the disks.
    order: Vec<String>,
    disks: Vec<Expected>,
    firmware: Firmware,
    secure_boot: Option<bool>,
    algorithm: &'static str,
}

impl Staged {
    fn ova(&self, format: &str) -> PathBuf {
        let out = self
            .dir
            .parent()
            .unwrap()
            .join(format!("{}-{format}.ova", self.name));
        let names: Vec<&str> = self.order.iter().map(String::as_str).collect();
        ova_build::tar(&self.dir, &out, format, &names);
        out
    }

    fn descriptor(&self) -> PathBuf {
        self.dir.join(format!("{}.ovf", self.name))
    }
}

fn controller_of(parent: &str) -> (ControllerKind, Option<String>, Option<u32>) {
    match parent {
        "3" => (ControllerKind::Scsi, Some("lsilogicsas".into()), Some(0)),
        "5" => (ControllerKind::Ide, None, Some(0)),
        "6" => (
            ControllerKind::Sata,
            Some("vmware.sata.ahci".into()),
            Some(0),
        ),
        other => panic!("no controller {other} in the template"),
    }
}

/// Stages a VM: streamOptimized disks from qemu-img stored as planned, the descriptor
/// from the VMware template, the manifest from sha*sum.
fn stage(
    root: &Path,
    name: &str,
    plans: &[Plan],
    firmware: Option<&'static str>,
    secure_boot: Option<bool>,
    algorithm: &'static str,
) -> Staged {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    let mut specs = Vec::new();
    let mut disks = Vec::new();
    let mut files = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let work = format!("work{i}.vmdk");
        let vmdk_path = ova_build::stream_vmdk(&dir, &work, p.mib, p.seed);
        let vmdk = fs::read(&vmdk_path).unwrap();
        let (compression, chunk_size) = match p.store {
            Store::Plain => (Compression::Identity, None),
            Store::Gzip => (Compression::Gzip, None),
            Store::Chunked(c) => (Compression::Identity, Some(c)),
        };
        match p.store {
            Store::Gzip => ova_build::gzip(&vmdk_path, &dir.join(p.href)),
            _ => fs::copy(&vmdk_path, dir.join(p.href)).map(drop).unwrap(),
        }
        fs::remove_file(&vmdk_path).unwrap();
        let stored = fs::read(dir.join(p.href)).unwrap();
        let pieces: Vec<(String, u64)> = match p.store {
            Store::Chunked(c) => ova_build::split_chunks(&dir, p.href, c)
                .into_iter()
                .map(|n| {
                    let len = fs::metadata(dir.join(&n)).unwrap().len();
                    (n, len)
                })
                .collect(),
            _ => vec![(p.href.to_string(), stored.len() as u64)],
        };
        files.extend(pieces.iter().map(|(n, _)| n.clone()));
        let (kind, subtype, bus) = controller_of(p.parent);
        specs.push(DiskSpec {
            file_id: format!("file{}", i + 1),
            disk_id: format!("vmdisk{}", i + 1),
            href: p.href.to_string(),
            size: stored.len() as u64,
            capacity_mib: p.mib,
            populated: vmdk.len() as u64,
            compression: matches!(p.store, Store::Gzip).then_some("gzip"),
            chunk_size,
            parent: p.parent,
            unit: p.unit,
        });
        disks.push(Expected {
            disk_id: format!("vmdisk{}", i + 1),
            href: p.href.to_string(),
            stored,
            vmdk,
            pieces,
            capacity: p.mib * MIB,
            compression,
            chunk_size,
            controller: (kind, subtype, p.parent.to_string(), bus, Some(p.unit)),
        });
    }
    let vm = VmSpec {
        name: name.to_string(),
        firmware,
        secure_boot,
        disks: specs,
    };
    let order = ova_build::descriptor_and_manifest(&dir, &vm, files, algorithm);
    Staged {
        dir,
        name: name.to_string(),
        order,
        disks,
        firmware: match firmware {
            Some("efi") => Firmware::Efi,
            Some("bios") => Firmware::Bios,
            _ => Firmware::Unknown,
        },
        secure_boot,
        algorithm,
    }
}

/// Asserts the whole model against what was staged, and that the bytes it locates are
/// the bytes that were packed.
fn check_model(pkg: &vdconv::ova::Package, s: &Staged, readable: bool) {
    assert_eq!(pkg.descriptor, format!("{}.ovf", s.name));
    assert_eq!(pkg.certificate, None);
    assert_eq!(pkg.warnings, Vec::<String>::new());
    let pm = pkg.manifest.as_ref().expect("a manifest");
    assert_eq!(pm.name, format!("{}.mf", s.name));
    assert_eq!(pm.manifest.warnings, Vec::<String>::new());
    let listed: Vec<(&str, &str)> = pm
        .manifest
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.algorithm.name()))
        .collect();
    let expected_listed: Vec<(&str, &str)> = s
        .order
        .iter()
        .filter(|n| !n.ends_with(".mf"))
        .map(|n| (n.as_str(), s.algorithm))
        .collect();
    assert_eq!(listed, expected_listed);

    let env = &pkg.envelope;
    assert_eq!(env.networks, ["VM Network"]);
    let sys = &env.system;
    assert_eq!(sys.id, s.name);
    assert_eq!(sys.display_name(), s.name);
    let os = sys.os.as_ref().unwrap();
    assert_eq!(os.id, Some(103));
    assert_eq!(os.os_type.as_deref(), Some("windows7Server64Guest"));
    assert_eq!(
        os.description.as_deref(),
        Some("Microsoft Windows Server 2008 R2 (64-bit)")
    );
    let hw = &sys.hardware;
    assert_eq!(hw.system_type.as_deref(), Some("vmx-10"));
    assert_eq!(hw.firmware, s.firmware);
    assert_eq!(hw.secure_boot, s.secure_boot);
    assert_eq!((hw.cpus, hw.cores_per_socket), (Some(2), Some(2)));
    assert_eq!(hw.memory_bytes, Some(4096 * MIB));
    let controllers: Vec<_> = hw
        .controllers
        .iter()
        .map(|c| {
            (
                c.instance_id.as_str(),
                c.kind.clone(),
                c.subtype.as_deref(),
                c.address,
            )
        })
        .collect();
    assert_eq!(
        controllers,
        [
            ("3", ControllerKind::Scsi, Some("lsilogicsas"), Some(0)),
            ("4", ControllerKind::Ide, None, Some(1)),
            ("5", ControllerKind::Ide, None, Some(0)),
            ("6", ControllerKind::Sata, Some("vmware.sata.ahci"), Some(0)),
        ]
    );
    let drives: Vec<_> = hw
        .disk_drives
        .iter()
        .map(|d| {
            (
                d.host_resource.clone(),
                d.parent.clone(),
                d.address_on_parent,
            )
        })
        .collect();
    let expected_drives: Vec<_> = s
        .disks
        .iter()
        .map(|d| {
            (
                HostResource::Disk(d.disk_id.clone()),
                Some(d.controller.2.clone()),
                d.controller.4,
            )
        })
        .collect();
    assert_eq!(drives, expected_drives);
    let nics: Vec<_> = hw
        .nics
        .iter()
        .map(|n| {
            (
                n.instance_id.as_str(),
                n.subtype.as_deref(),
                n.connection.as_deref(),
                n.mac.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        nics,
        [(
            "20",
            Some("E1000"),
            Some("VM Network"),
            Some("00:50:56:aa:bb:cc")
        )]
    );
    let mut config = vec![("cpuHotAddEnabled".to_string(), "false".to_string())];
    if s.firmware != Firmware::Unknown {
        let f = if s.firmware == Firmware::Efi {
            "efi"
        } else {
            "bios"
        };
        config.push(("firmware".into(), f.into()));
    }
    if let Some(b) = s.secure_boot {
        config.push(("bootOptions.efiSecureBootEnabled".into(), b.to_string()));
    }
    config.push(("powerOpInfo.powerOffType".into(), "soft".into()));
    config.push(("tools.syncTimeWithHost".into(), "false".into()));
    assert_eq!(hw.config, config);

    assert_eq!(pkg.disks.len(), s.disks.len());
    for (d, e) in pkg.disks.iter().zip(&s.disks) {
        assert_eq!(d.disk_id, e.disk_id);
        assert_eq!(d.href.as_deref(), Some(e.href.as_str()));
        assert_eq!(d.capacity, e.capacity);
        assert_eq!(d.populated_size, Some(e.vmdk.len() as u64));
        assert_eq!(
            d.format.as_deref(),
            Some("http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized")
        );
        assert_eq!(d.compression, e.compression);
        assert_eq!(d.sequential_only(), e.compression == Compression::Gzip);
        assert_eq!(d.chunk_size, e.chunk_size);
        let pieces: Vec<(String, u64)> =
            d.pieces.iter().map(|p| (p.name.clone(), p.size)).collect();
        assert_eq!(pieces, e.pieces);
        let a = d.attachment.as_ref().expect("attached");
        let got = (
            a.controller.clone(),
            a.subtype.clone(),
            a.controller_instance.clone(),
            a.bus,
            a.unit,
        );
        assert_eq!(got, e.controller);
        if readable {
            // The located bytes are the packed bytes, piece by piece and whole.
            let mut stored = Vec::new();
            for p in &d.pieces {
                let view = pkg.piece_view(p).expect("a positioned view");
                let mut buf = vec![0u8; view.size as usize];
                view.file.read_exact_at(&mut buf, view.offset).unwrap();
                stored.extend_from_slice(&buf);
            }
            assert!(stored == e.stored, "{}: located bytes differ", e.href);
            let mut content = Vec::new();
            pkg.disk_reader(d)
                .unwrap()
                .read_to_end(&mut content)
                .unwrap();
            assert!(content == e.vmdk, "{}: disk contents differ", e.href);
        }
    }
}

/// Each stored file's name and bytes, as the pipe gave them.
type Seen = Vec<(String, Vec<u8>)>;

/// Reads an archive through a pipe (`cat`), reading every file to its end, and returns
/// the outcome and the bytes each file had.
fn read_pipe(ova: &Path) -> OvaResult<(StreamOutcome, Seen)> {
    let mut child = ova_build::cat_pipe(ova);
    let stdout = child.stdout.take().unwrap();
    let result = (|| {
        let mut stream = OvaStream::new(stdout, ova)?;
        let mut seen = Vec::new();
        while let Some(mut f) = stream.next_file()? {
            let name = f.name.clone();
            let mut data = Vec::new();
            f.read_to_end(&mut data)
                .map_err(|e| OvaError::from_io(Place::member(ova, &name), "the member", e))?;
            seen.push((name, data));
        }
        Ok((stream.finish()?, seen))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Opens an OVA from the file and through the pipe: the same model, the manifest
/// verified both ways, the piped bytes the packed ones.
fn check_ova(ova: &Path, s: &Staged) {
    let pkg = OvaPackage::open_file(ova).unwrap();
    check_model(&pkg, s, true);
    let report = pkg.verify_manifest().unwrap().unwrap();
    let covered: Vec<String> = s
        .order
        .iter()
        .filter(|n| !n.ends_with(".mf"))
        .cloned()
        .collect();
    assert_eq!(report.verified, covered);
    assert!(report.unlisted.is_empty() && report.absent.is_empty());

    let (outcome, seen) = read_pipe(ova).unwrap();
    assert_eq!(outcome.package, pkg, "the pipe gives the file's model");
    check_model(&outcome.package, s, false);
    assert_eq!(outcome.report.unwrap().verified, covered);
    let seen_names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    let disk_names: Vec<&str> = s.order[2..].iter().map(String::as_str).collect();
    assert_eq!(seen_names, disk_names);
    for e in &s.disks {
        let piped: Vec<u8> = seen
            .iter()
            .filter(|(n, _)| e.pieces.iter().any(|(p, _)| p == n))
            .flat_map(|(_, d)| d.iter().copied())
            .collect();
        assert!(piped == e.stored, "{}: piped bytes differ", e.href);
    }
}

fn plan(
    href: &'static str,
    mib: u64,
    seed: u64,
    store: Store,
    parent: &'static str,
    unit: u32,
) -> Plan {
    Plan {
        href,
        mib,
        seed,
        store,
        parent,
        unit,
    }
}

#[test]
fn one_disk_bios_sha256_ustar() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = stage(
        tmp.path(),
        "web01",
        &[plan("web01-disk1.vmdk", 2, 1, Store::Plain, "3", 0)],
        Some("bios"),
        None,
        "SHA256",
    );
    let ova = s.ova("ustar");
    check_ova(&ova, &s);
    // The data offset agrees with GNU tar's own block numbers (header block + 1).
    let listing = common::run_ok("tar", &[&"-tR", &"-f", &ova]);
    let block: u64 = listing
        .lines()
        .find_map(|l| l.strip_suffix(": web01-disk1.vmdk"))
        .and_then(|l| l.strip_prefix("block "))
        .unwrap()
        .parse()
        .unwrap();
    let pkg = OvaPackage::open_file(&ova).unwrap();
    assert_eq!(
        pkg.disks[0].pieces[0].location,
        vdconv::ova::Location::Member {
            member: "web01-disk1.vmdk".into(),
            offset: (block + 1) * 512
        }
    );
}

#[test]
fn three_disks_efi_secure_boot_sha1_gnu() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = stage(
        tmp.path(),
        "db01",
        &[
            plan("db01-disk1.vmdk", 2, 2, Store::Plain, "3", 0),
            plan("db01-disk2.vmdk", 1, 3, Store::Plain, "3", 1),
            plan("db01-disk3.vmdk", 3, 4, Store::Plain, "6", 0),
        ],
        Some("efi"),
        Some(true),
        "SHA1",
    );
    check_ova(&s.ova("gnu"), &s);
}

#[test]
fn long_member_names_in_gnu_and_pax() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // 125 characters: past ustar's 100-byte name field (GNU writes an 'L' record, pax an
    // 'x' record with path=).
    const LONG: &str = "a-virtual-machine-with-a-rather-long-name-exported-by-a-tool-that-keeps-it-whole-in-every-file-it-writes-disk1.vmdk";
    assert!(LONG.len() > 100);
    let s = stage(
        tmp.path(),
        "long",
        &[plan(LONG, 1, 5, Store::Plain, "5", 0)],
        None,
        None,
        "SHA256",
    );
    for format in ["gnu", "pax"] {
        let ova = s.ova(format);
        let index = tar::index_file(&File::open(&ova).unwrap(), &ova).unwrap();
        assert!(index.members.iter().any(|m| m.name == LONG), "{format}");
        check_ova(&ova, &s);
    }
}

#[test]
fn gzip_compressed_disk() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = stage(
        tmp.path(),
        "gz",
        &[plan("gz-disk1.vmdk", 2, 6, Store::Gzip, "3", 0)],
        Some("efi"),
        Some(false),
        "SHA256",
    );
    check_ova(&s.ova("gnu"), &s);
}

#[test]
fn chunked_disk() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = stage(
        tmp.path(),
        "chunky",
        &[
            plan("chunky-disk1.vmdk", 3, 7, Store::Chunked(256 << 10), "3", 0),
            plan("chunky-disk2.vmdk", 1, 8, Store::Plain, "3", 1),
        ],
        Some("bios"),
        None,
        "SHA1",
    );
    assert!(
        s.disks[0].pieces.len() > 2,
        "the disk is split in several chunks"
    );
    assert_eq!(s.disks[0].pieces[0].0, "chunky-disk1.vmdk.000000000");
    check_ova(&s.ova("ustar"), &s);
}

#[test]
fn ovf_folder() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = stage(
        tmp.path(),
        "folder",
        &[
            plan("folder-disk1.vmdk", 2, 9, Store::Plain, "3", 0),
            plan("folder-disk2.vmdk", 2, 10, Store::Chunked(300_000), "6", 0),
            plan("folder-disk3.vmdk", 1, 11, Store::Gzip, "5", 0),
        ],
        Some("efi"),
        Some(true),
        "SHA256",
    );
    let pkg = OvfPackage::open_dir(&s.descriptor()).unwrap();
    check_model(&pkg, &s, true);
    assert_eq!(pkg.descriptor, "folder.ovf");
    let report = pkg.verify_manifest().unwrap().unwrap();
    assert_eq!(report.verified.len(), s.order.len() - 1);
}

// ---------------------------------------------------------------------------------------
// Hostile packages: typed errors naming the file or member, fast.

/// A one-disk package staged for hostile variations.
fn small(tmp: &Path) -> Staged {
    stage(
        tmp,
        "victim",
        &[plan("victim-disk1.vmdk", 1, 12, Store::Plain, "3", 0)],
        Some("bios"),
        None,
        "SHA256",
    )
}

/// Opens `ova` from the file and through the pipe; both must fail fast. Returns both
/// errors.
fn both_fail(ova: &Path) -> (OvaError, OvaError) {
    let file =
        bounded("file", || OvaPackage::open_file(ova)).expect_err("the file must be refused");
    let pipe =
        bounded("pipe", || read_pipe(ova).map(|_| ())).expect_err("the pipe must be refused");
    (file, pipe)
}

fn member_of(e: &OvaError) -> Option<&str> {
    e.place().member.as_deref()
}

#[test]
fn member_names_leaving_the_archive_are_refused() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = small(tmp.path());
    fs::write(tmp.path().join("evil.vmdk"), b"evil").unwrap();
    let abs = tmp.path().join("evil.vmdk");
    // -P keeps '..' and leading '/' in member names, as a crafted archive would.
    for (label, evil) in [
        ("dotdot", "../evil.vmdk".to_string()),
        ("absolute", abs.display().to_string()),
    ] {
        let ova = tmp.path().join(format!("{label}.ova"));
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"--format=gnu", &"-P", &"-cf", &ova, &"-C", &s.dir];
        for n in &s.order {
            args.push(n);
        }
        args.push(&evil);
        common::run_ok("tar", &args);
        let (file, pipe) = both_fail(&ova);
        for e in [&file, &pipe] {
            assert!(matches!(e, OvaError::Refused { .. }), "{label}: {e}");
            assert_eq!(member_of(e), Some(evil.as_str()), "{label}: {e}");
        }
    }
}

#[test]
fn hrefs_leaving_the_package_are_refused() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = small(tmp.path());
    let ovf = s.descriptor();
    let original = fs::read_to_string(&ovf).unwrap();
    fs::write(tmp.path().join("outside.vmdk"), b"secret").unwrap();

    // In an OVA and in a folder: '..', absolute, URL.
    for bad in [
        "../outside.vmdk",
        "/etc/passwd",
        "http://example.com/x.vmdk",
        "sub\\x.vmdk",
    ] {
        fs::write(
            &ovf,
            original.replace("victim-disk1.vmdk\"", &format!("{bad}\"")),
        )
        .unwrap();
        let e = OvfPackage::open_dir(&ovf).unwrap_err();
        assert!(matches!(e, OvaError::Refused { .. }), "{bad}: {e}");
        let text = e.to_string();
        assert!(
            text.contains("file1") && text.contains(&format!("{bad:?}")),
            "{e}"
        );
        let ova = s.ova("ustar");
        let (file, pipe) = both_fail(&ova);
        assert!(matches!(file, OvaError::Refused { .. }), "{bad}: {file}");
        assert!(matches!(pipe, OvaError::Refused { .. }), "{bad}: {pipe}");
    }

    // A link in the folder leading out of it.
    std::os::unix::fs::symlink("../outside.vmdk", s.dir.join("link.vmdk")).unwrap();
    fs::write(&ovf, original.replace("victim-disk1.vmdk\"", "link.vmdk\"")).unwrap();
    let e = OvfPackage::open_dir(&ovf).unwrap_err();
    assert!(matches!(e, OvaError::Refused { .. }), "{e}");
    assert_eq!(member_of(&e), Some("link.vmdk"));

    // A FIFO: refused, and opening it does not hang.
    let fifo = s.dir.join("fifo.vmdk");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    fs::write(&ovf, original.replace("victim-disk1.vmdk\"", "fifo.vmdk\"")).unwrap();
    let e = bounded("fifo", || OvfPackage::open_dir(&ovf)).unwrap_err();
    assert!(matches!(e, OvaError::Refused { .. }), "{e}");
    assert_eq!(member_of(&e), Some("fifo.vmdk"));
}

/// The header offset of a member of an archive.
fn header_of(ova: &Path, name: &str) -> u64 {
    let index = tar::index_file(&File::open(ova).unwrap(), ova).unwrap();
    index
        .members
        .iter()
        .find(|m| m.name == name)
        .unwrap()
        .header_offset
}

/// Rewrites a ustar header in place with `edit`, fixing its checksum.
fn patch_header(ova: &Path, at: u64, edit: impl FnOnce(&mut [u8; 512])) {
    let f = OpenOptions::new().read(true).write(true).open(ova).unwrap();
    let mut h = [0u8; 512];
    f.read_exact_at(&mut h, at).unwrap();
    edit(&mut h);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    f.write_all_at(&h, at).unwrap();
}

#[test]
fn a_member_larger_than_the_archive_is_named() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = small(tmp.path());
    let ova = s.ova("ustar");
    let at = header_of(&ova, "victim-disk1.vmdk");
    patch_header(&ova, at, |h| h[124..136].copy_from_slice(b"77777777777\0"));
    let (file, pipe) = both_fail(&ova);
    for e in [&file, &pipe] {
        assert!(matches!(e, OvaError::Corrupt { .. }), "{e}");
        assert_eq!(member_of(e), Some("victim-disk1.vmdk"), "{e}");
    }
    assert!(matches!(file, OvaError::Corrupt { offset, .. } if offset == at));
}

#[test]
fn a_bad_tar_checksum_is_named() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = small(tmp.path());
    let ova = s.ova("ustar");
    let at = header_of(&ova, "victim-disk1.vmdk");
    let f = OpenOptions::new().write(true).open(&ova).unwrap();
    f.write_all_at(b"W", at).unwrap();
    let (file, pipe) = both_fail(&ova);
    for e in [&file, &pipe] {
        assert!(
            matches!(e, OvaError::Corrupt { structure: "tar header", offset, .. } if *offset == at),
            "{e}"
        );
        assert!(e.to_string().contains("checksum"), "{e}");
        assert_eq!(e.place().package, ova);
    }
}

#[test]
fn a_truncated_archive_is_named() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = small(tmp.path());
    let ova = s.ova("ustar");
    let at = header_of(&ova, "victim-disk1.vmdk");
    let f = OpenOptions::new().write(true).open(&ova).unwrap();
    f.set_len(at + 512 + 1000).unwrap();
    let (file, pipe) = both_fail(&ova);
    for e in [&file, &pipe] {
        assert!(matches!(e, OvaError::Corrupt { .. }), "{e}");
        assert_eq!(member_of(e), Some("victim-disk1.vmdk"), "{e}");
    }
    // Cut inside a header: the header is named by its offset.
    f.set_len(at + 100).unwrap();
    let (file, pipe) = both_fail(&ova);
    for e in [&file, &pipe] {
        assert!(
            matches!(e, OvaError::Corrupt { structure: "tar header", offset, .. } if *offset == at),
            "{e}"
        );
    }
}

#[test]
fn an_entity_bomb_descriptor_is_refused() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = small(tmp.path());
    let ovf = s.descriptor();
    let original = fs::read_to_string(&ovf).unwrap();
    let mut bomb =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE Envelope [\n <!ENTITY a \"lol\">\n");
    let mut prev = 'a';
    for name in 'b'..='k' {
        bomb.push_str(&format!(
            " <!ENTITY {name} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
        prev = name;
    }
    bomb.push_str("]>\n");
    let body = &original[original.find("<Envelope").unwrap()..];
    fs::write(
        &ovf,
        format!(
            "{bomb}{}",
            body.replace("<Name>victim</Name>", "<Name>&k;</Name>")
        ),
    )
    .unwrap();
    let ova = s.ova("ustar");
    let (file, pipe) = both_fail(&ova);
    for e in [&file, &pipe] {
        assert!(matches!(e, OvaError::Refused { .. }), "{e}");
        assert_eq!(member_of(e), Some("victim.ovf"));
        assert!(e.to_string().contains("DOCTYPE"), "{e}");
    }
    let e = bounded("folder", || OvfPackage::open_dir(&ovf)).unwrap_err();
    assert!(matches!(e, OvaError::Refused { .. }), "{e}");
}

#[test]
fn a_40_mb_descriptor_is_refused_unread() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = small(tmp.path());
    let ovf = s.descriptor();
    let original = fs::read_to_string(&ovf).unwrap();
    let padding = format!("<!--{}-->\n", "x".repeat(40 << 20));
    fs::write(&ovf, original.replacen("\n", &format!("\n{padding}"), 1)).unwrap();
    let ova = s.ova("ustar");
    let (file, pipe) = both_fail(&ova);
    for e in [&file, &pipe] {
        assert!(matches!(e, OvaError::Limit { .. }), "{e}");
        assert_eq!(member_of(e), Some("victim.ovf"));
    }
    let e = bounded("folder", || OvfPackage::open_dir(&ovf)).unwrap_err();
    assert!(matches!(e, OvaError::Limit { .. }), "{e}");
}

#[test]
fn a_manifest_mismatch_names_the_file() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = small(tmp.path());
    let ova = s.ova("ustar");
    let pkg = OvaPackage::open_file(&ova).unwrap();
    let piece = &pkg.disks[0].pieces[0];
    let view = pkg.piece_view(piece).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&ova)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, view.offset + 4096).unwrap();
    f.write_all_at(&[b[0] ^ 0x55], view.offset + 4096).unwrap();
    let expected = {
        let mf = fs::read_to_string(s.dir.join("victim.mf")).unwrap();
        let line = mf
            .lines()
            .find(|l| l.contains("victim-disk1.vmdk"))
            .unwrap();
        line.rsplit(' ').next().unwrap().to_string()
    };
    let file = pkg.verify_manifest().unwrap_err();
    let pipe = read_pipe(&ova).map(|_| ()).unwrap_err();
    for e in [&file, &pipe] {
        match e {
            OvaError::ManifestMismatch {
                place,
                algorithm,
                expected: listed,
                found,
            } => {
                assert_eq!(place.member.as_deref(), Some("victim-disk1.vmdk"));
                assert_eq!(algorithm.name(), "SHA256");
                assert_eq!(*listed, expected);
                assert_ne!(*found, expected);
            }
            other => panic!("{other}"),
        }
    }
    // It converts to the crate's error with the member still named.
    let crate_error: vdconv::Error = file.into();
    assert!(
        crate_error.to_string().contains("victim-disk1.vmdk"),
        "{crate_error}"
    );
}

#[test]
fn fuzz_entry_points_survive_mutations() {
    if !ova_build::tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = small(tmp.path());
    let ova = fs::read(s.ova("ustar")).unwrap();
    // A whole package with a small stand-in disk keeps each iteration cheap; pax adds
    // extended headers to mutate.
    let seed_dir = tmp.path().join("seed");
    fs::create_dir(&seed_dir).unwrap();
    for n in ["victim.ovf", "victim.mf"] {
        fs::copy(s.dir.join(n), seed_dir.join(n)).unwrap();
    }
    fs::write(seed_dir.join("victim-disk1.vmdk"), [7u8; 600]).unwrap();
    let seed_ova = tmp.path().join("seed.ova");
    ova_build::tar(
        &seed_dir,
        &seed_ova,
        "pax",
        &["victim.ovf", "victim.mf", "victim-disk1.vmdk"],
    );
    let head = fs::read(&seed_ova).unwrap();
    let head = &head[..];
    let ovf = fs::read(s.descriptor()).unwrap();
    let mf = fs::read(s.dir.join("victim.mf")).unwrap();
    // Header blocks (ustar magic): after mutating, half the time their checksums are
    // fixed so that the fields behind the checksum are reached.
    let headers: Vec<usize> = (0..head.len() / 512)
        .map(|b| b * 512)
        .filter(|&at| &head[at + 257..at + 262] == b"ustar")
        .collect();
    assert!(
        headers.len() >= 6,
        "pax writes an extended header per member"
    );
    let fix = |bytes: &mut Vec<u8>| {
        for &at in &headers {
            if at + 512 <= bytes.len() {
                let h = &mut bytes[at..at + 512];
                h[148..156].copy_from_slice(b"        ");
                let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
                h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            }
        }
    };
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let start = Instant::now();
    // OVA_FUZZ_ROUNDS raises the count for a longer local run.
    let rounds: u32 = std::env::var("OVA_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    for round in 0..rounds {
        for (seed, entry) in [
            (head, fuzz_tar as fn(&[u8])),
            (&ovf[..], fuzz_ovf as fn(&[u8])),
            (&mf[..], fuzz_manifest as fn(&[u8])),
        ] {
            let mut bytes = seed.to_vec();
            for _ in 0..1 + next() % 8 {
                let i = (next() as usize) % bytes.len();
                bytes[i] = match next() % 4 {
                    0 => 0,
                    1 => 0xff,
                    2 => b"<>&/.=()0 \n"[(next() % 11) as usize],
                    _ => next() as u8,
                };
            }
            if std::ptr::eq(seed.as_ptr(), head.as_ptr()) && next() % 2 == 0 {
                fix(&mut bytes);
            }
            if round % 7 == 0 {
                bytes.truncate((next() as usize) % bytes.len());
            }
            entry(&bytes);
        }
    }
    fuzz_tar(&ova);
    fuzz_tar(&[]);
    fuzz_ovf(&[]);
    fuzz_manifest(&[]);
    assert!(rounds != 400 || start.elapsed() < Duration::from_secs(60));
}

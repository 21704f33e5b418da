//! `inspect`: will the guest inside an image boot, and be reachable, on Hyper-V or Azure?
//!
//! The pipeline over any image vdconv reads: the disk is read through a [`DiskSource`]
//! (bounded, counted, cancellable, read-only), its volumes scanned and the catalogue's
//! checks run ([`crate::guest`]); then what belongs to the command rather than to the
//! guest is added: the disk's own size facts (X2, [`DISK_FINDINGS`]) and the fail-closed
//! rule (a guest whose readiness could not be established is not ready,
//! `guest-unverified`). [`gate`] is what `convert --inspect` does with the result.
//!
//! Nothing is written and nothing is mounted: the guest is hostile input, read in process
//! by readers that bound their memory and work.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;

use crate::cancel::Cancel;
use crate::disk::{Disk, OpenOptions};
use crate::error::{Error, Result};
use crate::guest::checks::catalogue::Entry;
use crate::guest::checks::{InspectOptions, inspect as check_guest};
use crate::guest::report::{Finding, Firmware, InspectReport, Severities, Severity};
use crate::guest::source::{ByteSource, out_of_range};
use crate::guest::volume::{Scheme, scan_disk};
use crate::guest::{GuestError, GuestResult};
use crate::report::SCHEMA_VERSION;
use crate::target::{AZURE_MAX_SIZE, AZURE_MIN_SIZE, MBR_LIMIT, Target, whole_mib};

/// The targets in the order reports list them.
pub const TARGETS: [Target; 3] = [Target::HypervGen1, Target::HypervGen2, Target::Azure];

const TIB: u64 = 1 << 40;
/// Azure's OS disk limit for generation 1 VMs (BIOS boot).
const AZURE_GEN1_OS_LIMIT: u64 = 2 * TIB;
/// Azure's recommended OS disk maximum for generation 2 VMs.
const AZURE_OS_RECOMMENDED: u64 = 4 * TIB;

/// A virtual disk as the guest readers see it: positioned reads of the guest-visible
/// bytes, refused outside the disk, stopped by the cancel token, and counted.
///
/// The disk's readers take `&mut self`, the guest readers share the source: a mutex
/// serialises the (single-threaded) inspection's reads. The first error the image itself
/// raises (a damaged grain, a truncated extent) is kept: the guest readers see only an I/O
/// error and carry on, but the command then fails with it, since a gate must not pass an
/// image it could not read.
pub struct DiskSource {
    disk: Mutex<Option<Box<dyn Disk>>>,
    size: u64,
    read: AtomicU64,
    cancel: Cancel,
    failure: Mutex<Option<Error>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a disk half-read in a way the next read would trust
    // (every read positions itself), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DiskSource {
    pub fn new(disk: Box<dyn Disk>, cancel: Cancel) -> Self {
        DiskSource {
            size: disk.virtual_size(),
            disk: Mutex::new(Some(disk)),
            read: AtomicU64::new(0),
            cancel,
            failure: Mutex::new(None),
        }
    }

    /// Bytes of the virtual disk read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// The first error the image raised, if any (taken: a second call says None).
    pub fn take_failure(&self) -> Option<Error> {
        lock(&self.failure).take()
    }

    /// Hands the disk back (for the conversion that follows an inspection); reads after
    /// this fail.
    pub fn take_disk(&self) -> Option<Box<dyn Disk>> {
        lock(&self.disk).take()
    }
}

impl ByteSource for DiskSource {
    fn len(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> GuestResult<()> {
        if self.cancel.is_cancelled() {
            return Err(GuestError::Interrupted);
        }
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.size)
        {
            return Err(out_of_range(offset, buf.len(), self.size));
        }
        let result = match lock(&self.disk).as_mut() {
            Some(disk) => disk.as_mut().read_at(offset, buf),
            None => {
                return Err(GuestError::Io {
                    what: "the virtual disk".into(),
                    offset,
                    detail: "the disk was handed back".into(),
                });
            }
        };
        match result {
            Ok(()) => {
                self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let detail = e.to_string();
                lock(&self.failure).get_or_insert(e);
                Err(GuestError::Io {
                    what: "the virtual disk".into(),
                    offset,
                    detail,
                })
            }
        }
    }
}

/// What `vdconv inspect --json` prints: the guest report with the facts about the image
/// and the verdict. docs/json.md describes every field.
#[derive(Debug, Serialize)]
pub struct InspectDocument {
    pub schema_version: u32,
    /// The image as given.
    pub image: String,
    pub virtual_size: u64,
    /// The partition table: "none", "mbr" or "gpt".
    pub scheme: &'static str,
    /// Damage in the partition table and the volume layout (LVM metadata) that belongs to
    /// no one volume.
    pub problems: Vec<String>,
    /// What the exit code says: with a target, nothing blocks it; without, nothing
    /// blocks at least one target.
    pub ready: bool,
    /// The targets nothing blocks.
    pub ready_for: Vec<Target>,
    /// Bytes of the virtual disk read.
    pub bytes_read: u64,
    /// Wall time of the inspection.
    pub seconds: f64,
    #[serde(flatten)]
    pub report: InspectReport,
}

impl InspectDocument {
    /// The findings that block `target`.
    pub fn blocking(&self, target: Target) -> impl Iterator<Item = &Finding> + '_ {
        self.report
            .findings
            .iter()
            .filter(move |f| f.severity.get(target) == Some(Severity::Block))
    }
}

/// Opens the image at `path` and inspects it. Errors (exit 3 in the binary) when the image
/// cannot be opened or read; whatever is wrong inside the guest is a finding.
pub fn inspect_image(
    path: &Path,
    options: &OpenOptions,
    target: Option<Target>,
) -> Result<InspectDocument> {
    if let Some(input) = crate::export::detect::sniff(path)? {
        return inspect_export(path, input, options, target);
    }
    let disk = crate::open(path, options)?;
    inspect_disk(disk, target, None, &options.cancel).map(|(doc, _)| doc)
}

/// An OVA or OVF export: its first disk (the boot disk, as VMware lists it), read in place,
/// with the firmware the VM was configured with next to what the disk says.
fn inspect_export(
    path: &Path,
    input: crate::export::detect::Input,
    options: &OpenOptions,
    target: Option<Target>,
) -> Result<InspectDocument> {
    use crate::export::detect::{ExportKind, Input};
    use crate::ova::{Firmware as OvfFirmware, Package};
    let pkg = match input {
        Input::Package(ExportKind::Ova) => Package::open_file(path)?,
        Input::Package(ExportKind::Ovf) => Package::open_dir(path)?,
        Input::Stream(_) => {
            return Err(Error::usage(
                None,
                "inspect reads files, not pipes: save the export first, or convert it with --inspect",
            ));
        }
    };
    let hint = match pkg.envelope.system.hardware.firmware {
        OvfFirmware::Efi => Some(Firmware::Uefi),
        OvfFirmware::Bios => Some(Firmware::Bios),
        OvfFirmware::Unknown => None,
    };
    let Some(first) = pkg.disks.iter().find(|d| !d.is_blank()) else {
        return Err(Error::unsupported(
            path,
            "the export holds no disk with a file",
        ));
    };
    let Some(disk) = crate::export::disk::open_in_place(&pkg, first, options)? else {
        return Err(Error::unsupported(
            path,
            format!(
                "disk {} is stored gzip-compressed or in chunks, which inspect does not read in place; convert it, then inspect the output",
                first.href.as_deref().unwrap_or(&first.disk_id)
            ),
        ));
    };
    inspect_disk(disk, target, hint, &options.cancel).map(|(doc, _)| doc)
}

/// Inspects an opened disk and hands it back (for `convert --inspect`). `firmware_hint`:
/// the firmware the VM was configured with, when known (an export says it).
pub fn inspect_disk(
    disk: Box<dyn Disk>,
    target: Option<Target>,
    firmware_hint: Option<Firmware>,
    cancel: &Cancel,
) -> Result<(InspectDocument, Box<dyn Disk>)> {
    let started = Instant::now();
    let path = disk.path().to_path_buf();
    let size = disk.virtual_size();
    let source = Arc::new(DiskSource::new(disk, cancel.clone()));
    let checked = check(&source, &path, target, firmware_hint, cancel);
    let bytes_read = source.bytes_read();
    let failure = source.take_failure();
    let disk = source.take_disk();
    if cancel.is_cancelled() {
        return Err(Error::interrupted());
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let (mut report, scheme, problems) = checked?;
    let Some(disk) = disk else {
        // Only this function takes the disk; a missing one means a read raced the
        // hand-back, which the single-threaded inspection never does.
        return Err(Error::unsupported(
            &path,
            "the disk was taken during the inspection",
        ));
    };
    disk_findings(&mut report, size, scheme);
    fail_closed(&mut report);
    let ready_for: Vec<Target> = TARGETS.into_iter().filter(|&t| !report.blocks(t)).collect();
    let ready = match target {
        Some(t) => ready_for.contains(&t),
        None => !ready_for.is_empty(),
    };
    let doc = InspectDocument {
        schema_version: SCHEMA_VERSION,
        image: path.display().to_string(),
        virtual_size: size,
        scheme: match scheme {
            Scheme::None => "none",
            Scheme::Mbr => "mbr",
            Scheme::Gpt => "gpt",
        },
        problems,
        ready,
        ready_for,
        bytes_read,
        seconds: started.elapsed().as_secs_f64(),
        report,
    };
    Ok((doc, disk))
}

/// Scans the volumes and runs the checks. The volumes (and every file system holding the
/// source) are dropped before this returns.
fn check(
    source: &Arc<DiskSource>,
    path: &Path,
    target: Option<Target>,
    firmware_hint: Option<Firmware>,
    cancel: &Cancel,
) -> Result<(InspectReport, Scheme, Vec<String>)> {
    // Only reads of the image fail the scan (every guest structure is range-checked
    // before it is read); the caller prefers the image's own error when there is one.
    let layout = scan_disk(source.clone())
        .map_err(|e| Error::corrupt(path, "partition table", 0, e.to_string()))?;
    let cancelled = || cancel.is_cancelled();
    let options = InspectOptions {
        targets: target.map_or_else(|| TARGETS.to_vec(), |t| vec![t]),
        firmware_hint,
        cancelled: &cancelled,
    };
    let report = check_guest(&layout.volumes, &options);
    let mut problems = layout.table.problems.clone();
    problems.extend(layout.problems.iter().cloned());
    Ok((report, layout.table.scheme, problems))
}

const B: Option<Severity> = Some(Severity::Block);
const W: Option<Severity> = Some(Severity::Warn);
const NA: Option<Severity> = None;

const fn s(gen1: Option<Severity>, gen2: Option<Severity>, azure: Option<Severity>) -> Severities {
    Severities::new(gen1, gen2, azure)
}

/// The findings this command adds beside the guest's own (docs/json.md lists them after
/// the checks' catalogue).
pub const DISK_FINDINGS: &[Entry] = &[
    Entry {
        id: "guest-unverified",
        check: "X1",
        severities: &[s(B, B, B), s(NA, B, B), s(NA, B, NA)],
        summary: "Readiness could not be established (no OS found, no kernel, an unreadable initramfs, hive or ESP): the gate fails closed on the targets those findings concern.",
    },
    Entry {
        id: "disk-mbr-over-2tib",
        check: "X2",
        severities: &[s(W, W, W)],
        summary: "The disk has an MBR and is larger than 2 TiB: space past 2 TiB cannot be partitioned.",
    },
    Entry {
        id: "disk-azure-bios-os-over-2tib",
        check: "X2",
        severities: &[s(NA, NA, B)],
        summary: "The disk boots with BIOS only (an Azure generation 1 VM) and is larger than 2 TiB, Azure's generation 1 OS disk limit.",
    },
    Entry {
        id: "disk-azure-os-over-4tib",
        check: "X2",
        severities: &[s(NA, NA, W)],
        summary: "The disk is larger than 4 TiB, Azure's recommended OS disk maximum.",
    },
    Entry {
        id: "disk-azure-size-bounds",
        check: "X2",
        severities: &[s(NA, NA, B)],
        summary: "Rounded up to whole MiB, the disk is under 20 MiB or over 32767 GiB: Azure takes no such disk.",
    },
];

fn add(report: &mut InspectReport, id: &str, severity: Severities, message: String, fix: &str) {
    let entry = DISK_FINDINGS.iter().find(|e| e.id == id);
    debug_assert!(
        entry.is_some_and(|e| e.severities.contains(&severity)),
        "finding {id} ({severity:?}) is not in DISK_FINDINGS"
    );
    report.add_finding(Finding {
        id: id.to_string(),
        check: entry.map_or("X2", |e| e.check).to_string(),
        severity,
        message,
        location: None,
        fix: fix.to_string(),
    });
}

/// X2: the disk's size against the partition table and Azure's OS disk limits. The
/// format rules (fixed VHD, whole MiB) are the output's, which `convert --target azure`
/// makes and `check --target azure` checks; here only what the source decides.
fn disk_findings(report: &mut InspectReport, size: u64, scheme: Scheme) {
    if scheme == Scheme::Mbr && size > MBR_LIMIT {
        add(
            report,
            "disk-mbr-over-2tib",
            s(W, W, W),
            format!("the disk is {size} bytes with an MBR, which addresses only the first 2 TiB"),
            "Convert the partition table to GPT in the guest, or shrink the disk to 2 TiB.",
        );
    }
    if report.firmware.boots_with == Firmware::Bios && size > AZURE_GEN1_OS_LIMIT {
        add(
            report,
            "disk-azure-bios-os-over-2tib",
            s(NA, NA, B),
            format!(
                "the disk boots with BIOS only, so it needs an Azure generation 1 VM, whose OS disks are at most 2 TiB; it is {size} bytes"
            ),
            "Shrink the OS disk to 2 TiB, or make it boot with UEFI (GPT and an ESP) for a generation 2 VM.",
        );
    } else if size > AZURE_OS_RECOMMENDED {
        add(
            report,
            "disk-azure-os-over-4tib",
            s(NA, NA, W),
            format!("the disk is {size} bytes; Azure recommends OS disks of at most 4 TiB"),
            "Move data to a data disk and shrink the OS disk.",
        );
    }
    if whole_mib(size).is_none_or(|r| !(AZURE_MIN_SIZE..=AZURE_MAX_SIZE).contains(&r)) {
        add(
            report,
            "disk-azure-size-bounds",
            s(NA, NA, B),
            format!("the disk is {size} bytes; Azure takes disks of 20 MiB to 32767 GiB"),
            "Resize the disk into Azure's bounds.",
        );
    }
}

/// Findings that mean the checks could not establish readiness.
const UNVERIFIED_BY: [&str; 5] = [
    "guest-os-not-found",
    "linux-no-kernel",
    "linux-initramfs-unreadable",
    "windows-hive-unreadable",
    "firmware-esp-unreadable",
];

/// The gate fails closed: where the checks could not read what decides the boot (the OS,
/// the default kernel's initramfs, the SYSTEM hive, the ESP), the guest is not ready on
/// the targets those findings concern. The checks report them as warnings (they describe
/// the guest); the command, which answers "ready?", cannot answer yes.
fn fail_closed(report: &mut InspectReport) {
    let causes: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| UNVERIFIED_BY.contains(&f.id.as_str()))
        .collect();
    if causes.is_empty() {
        return;
    }
    let on = |t: Target| {
        causes
            .iter()
            .any(|f| f.severity.get(t).is_some())
            .then_some(Severity::Block)
    };
    let severity = s(
        on(Target::HypervGen1),
        on(Target::HypervGen2),
        on(Target::Azure),
    );
    let mut ids: Vec<&str> = causes.iter().map(|f| f.id.as_str()).collect();
    ids.dedup();
    let message = format!(
        "readiness could not be established ({}): a guest that could not be read is not ready",
        ids.join(", ")
    );
    add(
        report,
        "guest-unverified",
        severity,
        message,
        "Fix what those findings name, or check the guest by hand and convert with --force-unready.",
    );
}

/// The lines `convert --inspect` prints as warnings: each finding that blocks or warns on
/// `target` (without a target: that blocks or warns anywhere), saying where it blocks.
pub fn gate_warnings(doc: &InspectDocument, target: Option<Target>) -> Vec<String> {
    let mut lines = Vec::new();
    for f in &doc.report.findings {
        let severity = match target {
            Some(t) => f.severity.get(t),
            None => f.severity.max(),
        };
        if severity < Some(Severity::Warn) {
            continue;
        }
        let blocks: Vec<&str> = TARGETS
            .into_iter()
            .filter(|&t| target.is_none_or(|want| want == t))
            .filter(|&t| f.severity.get(t) == Some(Severity::Block))
            .map(Target::name)
            .collect();
        let tail = if blocks.is_empty() {
            String::new()
        } else {
            format!(" (blocks {})", blocks.join(", "))
        };
        lines.push(format!("guest: [{}] {}{tail}", f.id, f.message));
    }
    lines
}

/// `convert --inspect`: stops the conversion (kind `guest-not-ready`, exit 3) when a
/// finding blocks the target, unless `force`. Without a target nothing stops it.
pub fn gate(doc: &InspectDocument, target: Option<Target>, force: bool) -> Result<()> {
    let Some(t) = target else { return Ok(()) };
    let ids: Vec<&str> = doc.blocking(t).map(|f| f.id.as_str()).collect();
    if ids.is_empty() || force {
        return Ok(());
    }
    Err(Error::guest_not_ready(
        Path::new(&doc.image),
        format!(
            "the guest is not ready for {}: {} blocking finding(s) ({}); --force-unready converts anyway",
            t.name(),
            ids.len(),
            ids.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::report::FirmwareReport;

    fn report(boots_with: Firmware) -> InspectReport {
        InspectReport {
            targets: TARGETS.to_vec(),
            os: Vec::new(),
            kernels: Vec::new(),
            default_kernel: None,
            firmware: FirmwareReport {
                boots_with,
                hint: None,
                gpt: false,
                esp: None,
                bios_boot_partition: false,
                efi_loaders: Vec::new(),
            },
            volumes: Vec::new(),
            findings: Vec::new(),
        }
    }

    fn ids(r: &InspectReport) -> Vec<&str> {
        r.findings.iter().map(|f| f.id.as_str()).collect()
    }

    #[test]
    fn size_facts() {
        let mut r = report(Firmware::Bios);
        disk_findings(&mut r, 3 * TIB, Scheme::Mbr);
        assert_eq!(
            ids(&r),
            ["disk-mbr-over-2tib", "disk-azure-bios-os-over-2tib"]
        );
        assert!(r.blocks(Target::Azure) && !r.blocks(Target::HypervGen1));

        let mut r = report(Firmware::Uefi);
        disk_findings(&mut r, 5 * TIB, Scheme::Gpt);
        assert_eq!(ids(&r), ["disk-azure-os-over-4tib"]);

        let mut r = report(Firmware::Both);
        disk_findings(&mut r, 2 * TIB, Scheme::Gpt);
        disk_findings(&mut r, 20 << 20, Scheme::Gpt);
        assert!(ids(&r).is_empty());
        disk_findings(&mut r, 19 << 20, Scheme::Gpt);
        disk_findings(&mut r, 32768 << 30, Scheme::Gpt);
        disk_findings(&mut r, u64::MAX - 5, Scheme::Gpt);
        assert_eq!(
            ids(&r)
                .iter()
                .filter(|i| **i == "disk-azure-size-bounds")
                .count(),
            3
        );
    }

    #[test]
    fn unverified_blocks_where_its_causes_apply() {
        let mut r = report(Firmware::Both);
        fail_closed(&mut r);
        assert!(r.findings.is_empty());
        r.add_finding(Finding {
            id: "firmware-esp-unreadable".into(),
            check: "L3".into(),
            severity: s(NA, W, NA),
            message: String::new(),
            location: None,
            fix: String::new(),
        });
        fail_closed(&mut r);
        let f = r.with_id("guest-unverified").next().unwrap();
        assert_eq!(f.severity, s(NA, B, NA));
        assert!(f.message.contains("firmware-esp-unreadable"));
    }

    #[test]
    fn the_source_counts_refuses_and_stops() {
        let path = std::env::temp_dir().join(format!("vdconv-source-{}", std::process::id()));
        std::fs::write(&path, (0..8192u32).map(|i| i as u8).collect::<Vec<u8>>()).unwrap();
        let file = crate::disk::InputFile::open(&path).unwrap();
        let cancel = Cancel::new();
        let source = DiskSource::new(Box::new(crate::raw::RawDisk::open(file)), cancel.clone());
        let mut buf = [0u8; 16];
        source.read_exact_at(4096, &mut buf).unwrap();
        assert_eq!(buf[0], 0);
        assert_eq!(buf[15], 15);
        assert_eq!(source.bytes_read(), 16);
        // Past the end, and past u64: refused, never asked of the disk, not counted.
        assert!(matches!(
            source.read_exact_at(8190, &mut buf),
            Err(GuestError::Corrupt { .. })
        ));
        assert!(source.read_exact_at(u64::MAX - 3, &mut buf).is_err());
        assert_eq!(source.bytes_read(), 16);
        assert!(source.take_failure().is_none());
        cancel.cancel();
        assert_eq!(
            source.read_exact_at(0, &mut buf),
            Err(GuestError::Interrupted)
        );
        let disk = source.take_disk().unwrap();
        assert_eq!(disk.virtual_size(), 8192);
        assert!(source.read_exact_at(0, &mut buf).is_err());
        std::fs::remove_file(&path).unwrap();
    }

    /// A disk whose bytes past the first MiB cannot be read (a damaged grain).
    struct Damaged(Vec<String>);

    impl Disk for Damaged {
        fn virtual_size(&self) -> u64 {
            64 << 20
        }
        fn path(&self) -> &Path {
            Path::new("damaged.vmdk")
        }
        fn map_range(
            &mut self,
            offset: u64,
            len: u64,
            out: &mut Vec<crate::disk::Run>,
        ) -> Result<()> {
            crate::disk::push_run(out, offset, len, crate::disk::RunKind::Data);
            Ok(())
        }
        fn read_range(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
            if offset + buf.len() as u64 > 1 << 20 {
                return Err(Error::corrupt(
                    self.path(),
                    "compressed grain",
                    7 << 20,
                    "bad deflate data",
                ));
            }
            // An MBR whose one partition starts past the readable MiB.
            buf.fill(0);
            if offset == 0 && buf.len() >= 512 {
                buf[446 + 4] = 0x83;
                buf[446 + 8..446 + 12].copy_from_slice(&4096u32.to_le_bytes());
                buf[446 + 12..446 + 16].copy_from_slice(&65536u32.to_le_bytes());
                buf[510] = 0x55;
                buf[511] = 0xAA;
            }
            Ok(())
        }
        fn describe(&mut self, _: &Cancel) -> Result<crate::disk::ImageInfo> {
            Err(Error::unsupported(self.path(), "not described"))
        }
        fn warnings(&self) -> &[String] {
            &self.0
        }
        fn files(&self) -> Vec<std::path::PathBuf> {
            Vec::new()
        }
    }

    #[test]
    fn an_image_that_fails_a_read_fails_the_inspection() {
        let Err(e) = inspect_disk(Box::new(Damaged(Vec::new())), None, None, &Cancel::new()) else {
            panic!("a damaged image inspected");
        };
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt);
        assert_eq!(e.structure(), Some("compressed grain"));
        assert_eq!(e.class().code(), 3);
        let cancel = Cancel::new();
        cancel.cancel();
        let Err(e) = inspect_disk(Box::new(Damaged(Vec::new())), None, None, &cancel) else {
            panic!("an interrupted inspection finished");
        };
        assert_eq!(e.kind(), crate::ErrorKind::Interrupted);
    }

    #[test]
    fn the_command_findings_are_not_in_the_checks_catalogue() {
        for e in DISK_FINDINGS {
            assert!(
                crate::guest::checks::catalogue::entry(e.id).is_none(),
                "{}",
                e.id
            );
        }
    }
}

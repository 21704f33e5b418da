//! What the disk holds: partitions, LVM2 logical volumes, and what each volume contains.
//!
//! [`scan`] reads the partition table (`table`), detects each volume's content from its
//! signatures (`detect`), assembles LVM2 volume groups (`lvm`) and opens the file systems
//! vdconv reads (`crate::guest::fs::open_fs`).

pub mod detect;
pub mod lvm;
pub mod table;

use std::sync::Arc;

use super::error::GuestResult;
use super::fs::{GuestFs, open_fs};
use super::source::{ByteSource, Slice};
pub use table::{Firmware, PartitionEntry, Scheme, TableReport};

/// What a volume was found to hold, from its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Ext,
    Xfs,
    Ntfs,
    Fat,
    Swap,
    LvmPv,
    Luks,
    BitLocker,
    MdRaid,
    /// Windows dynamic disk (LDM) data or metadata.
    WindowsDynamic,
    /// BIOS boot partition, MSR and other partitions that hold no file system by design.
    NoFileSystem,
    /// Nothing recognised.
    Unknown,
}

/// One volume of the disk: a partition, a logical volume, or the whole disk when it has no
/// partition table.
pub struct Volume {
    /// For messages and findings: "partition 2", "LV rhel/root", "whole disk".
    pub name: String,
    pub source: Arc<dyn ByteSource>,
    /// Byte offset on the virtual disk where the volume starts (for a logical volume, the
    /// start of its first segment).
    pub disk_offset: u64,
    /// MBR type byte as "0x83" or GPT type GUID (lower case), when a partition.
    pub partition_type: Option<String>,
    /// GPT partition GUID (lower case) or MBR `SIGNATURE-NN` (PARTUUID as Linux spells it).
    pub part_uuid: Option<String>,
    /// GPT partition name.
    pub part_label: Option<String>,
    /// (volume group, logical volume) for LVM volumes.
    pub lvm: Option<(String, String)>,
    pub content: Content,
    /// The mounted file system, when `content` is one vdconv reads and it opened.
    pub fs: Option<Box<dyn GuestFs>>,
    /// Why the volume cannot be inspected, when it cannot (encrypted, RAID member, an LV
    /// made of non-linear segments, a file system that failed to open). An LV that cannot
    /// be mapped has an empty `source`.
    pub problem: Option<String>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("name", &self.name)
            .field("len", &self.source.len())
            .field("disk_offset", &self.disk_offset)
            .field("partition_type", &self.partition_type)
            .field("part_uuid", &self.part_uuid)
            .field("part_label", &self.part_label)
            .field("lvm", &self.lvm)
            .field("content", &self.content)
            .field("fs", &self.fs.as_ref().map(|fs| fs.kind()))
            .field("problem", &self.problem)
            .finish()
    }
}

/// The disk as the scanner found it: the partition table and every volume.
#[derive(Debug)]
pub struct DiskLayout {
    pub table: TableReport,
    /// Partitions in table order (logical partitions after the primaries), then the
    /// logical volumes of each volume group.
    pub volumes: Vec<Volume>,
    /// Problems that belong to no single volume (LVM metadata that does not parse, a VG
    /// without a valid extent size).
    pub problems: Vec<String>,
}

/// Every volume of the disk, with its content detected and its file system opened.
pub fn scan(disk: Arc<dyn ByteSource>) -> GuestResult<Vec<Volume>> {
    scan_disk(disk).map(|layout| layout.volumes)
}

/// [`scan`], with the partition table's report (scheme, disk signature, ESP and BIOS boot
/// presence for the firmware rule) and the problems that belong to no one volume.
pub fn scan_disk(disk: Arc<dyn ByteSource>) -> GuestResult<DiskLayout> {
    let (table, partitions) = table::read_table(&*disk)?;
    let mut volumes = Vec::new();
    if table.scheme == Scheme::None {
        volumes.push(new_volume("whole disk".into(), disk.clone(), 0));
    }
    for p in &partitions {
        let name = format!("partition {}", p.number);
        // A partition that leaves the disk is reported by the table; read what is inside.
        let size = p.size.min(disk.len().saturating_sub(p.start));
        let Some(slice) = Slice::new(disk.clone(), p.start, size) else {
            continue;
        };
        let mut v = new_volume(name, Arc::new(slice), p.start);
        v.partition_type = Some(p.type_id.clone());
        v.part_uuid = p.part_uuid.clone();
        v.part_label = p.label.clone();
        volumes.push(v);
    }
    for v in &mut volumes {
        classify(v);
    }
    let mut problems = Vec::new();
    let lvs = scan_lvm(&mut volumes, &mut problems);
    volumes.extend(lvs);
    Ok(DiskLayout {
        table,
        volumes,
        problems,
    })
}

fn new_volume(name: String, source: Arc<dyn ByteSource>, disk_offset: u64) -> Volume {
    Volume {
        name,
        source,
        disk_offset,
        partition_type: None,
        part_uuid: None,
        part_label: None,
        lvm: None,
        content: Content::Unknown,
        fs: None,
        problem: None,
    }
}

/// Why a volume of this content is not inspected, when it is not.
fn content_problem(content: &Content) -> Option<&'static str> {
    match content {
        Content::Luks => Some("LUKS-encrypted, cannot inspect"),
        Content::BitLocker => Some(
            "BitLocker-encrypted, cannot inspect; recovery key may be demanded after move \
             (vTPM key not portable)",
        ),
        Content::MdRaid => Some("RAID member, not inspected"),
        Content::WindowsDynamic => Some("Windows dynamic disk (LDM), not inspected"),
        _ => None,
    }
}

/// Detects what the volume holds and opens its file system; failures become the
/// volume's `problem`, never an error of the whole scan.
fn classify(v: &mut Volume) {
    let by_type = v
        .partition_type
        .as_deref()
        .and_then(detect::content_by_type);
    let content = match by_type {
        Some(c) => Ok(c),
        None => detect::detect(&*v.source),
    };
    v.content = match content {
        Ok(c) => c,
        Err(e) => {
            v.problem = Some(format!("cannot inspect: {e}"));
            return;
        }
    };
    if let Some(p) = content_problem(&v.content) {
        v.problem = Some(p.into());
        return;
    }
    match open_fs(&v.content, v.source.clone()) {
        Ok(fs) => v.fs = fs,
        Err(e) => v.problem = Some(format!("cannot inspect: {e}")),
    }
}

/// Reads the label of every PV volume, assembles the VGs and returns their LVs as volumes
/// (classified). PVs whose label or metadata cannot be read get a `problem`.
fn scan_lvm(volumes: &mut [Volume], problems: &mut Vec<String>) -> Vec<Volume> {
    let mut pvs = Vec::new();
    // Each metadata text with the index of the volume that holds it.
    let mut texts: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut total = 0usize;
    for (i, v) in volumes.iter_mut().enumerate() {
        if v.content != Content::LvmPv {
            continue;
        }
        match lvm::label::read_pv_label(&*v.source) {
            Ok(label) => {
                if !label.problems.is_empty() {
                    v.problem = Some(format!("cannot inspect: {}", label.problems.join("; ")));
                }
                pvs.push(lvm::FoundPv {
                    uuid: label.uuid,
                    source: v.source.clone(),
                    disk_offset: v.disk_offset,
                });
                for text in label.texts {
                    total = total.saturating_add(text.len());
                    if total > lvm::MAX_TOTAL_TEXT {
                        v.problem = Some(format!(
                            "cannot inspect: LVM metadata past {} bytes on this disk is not read",
                            lvm::MAX_TOTAL_TEXT
                        ));
                        break;
                    }
                    texts.push((i, text));
                }
            }
            Err(e) => v.problem = Some(format!("cannot inspect: {e}")),
        }
    }
    if pvs.is_empty() {
        return Vec::new();
    }
    let mut holder_problems = Vec::new();
    let lvs = lvm::logical_volumes(&pvs, &texts, problems, &mut holder_problems);
    for (i, why) in holder_problems {
        if let Some(v) = volumes.get_mut(i) {
            v.problem
                .get_or_insert_with(|| format!("cannot inspect: {why}"));
        }
        problems.push(why);
    }
    let mut out = Vec::new();
    for lv in lvs {
        let name = format!("LV {}/{}", lv.vg, lv.name);
        let mut v = match lv.source {
            Ok(source) => {
                let mut v = new_volume(name, source, lv.disk_offset);
                classify(&mut v);
                v
            }
            Err(why) => {
                let mut v = new_volume(name, Arc::new(Vec::new()), lv.disk_offset);
                v.problem = Some(format!("cannot inspect: {why}"));
                v
            }
        };
        v.lvm = Some((lv.vg, lv.name));
        out.push(v);
    }
    out
}

/// For fuzzing: scans `bytes` as a disk and reads a little of every file system found.
/// Never panics, whatever the bytes.
pub fn fuzz_volumes(bytes: &[u8]) {
    fuzz_volumes_source(Arc::new(bytes.to_vec()));
}

/// For fuzzing: `bytes` are a disk in [`PagedImage`](crate::guest::source::PagedImage)'s
/// encoding, scanned as `fuzz_volumes` scans a raw one. Never panics.
pub fn fuzz_volumes_pages(bytes: &[u8]) {
    fuzz_volumes_source(Arc::new(crate::guest::source::PagedImage::decode(bytes)));
}

fn fuzz_volumes_source(disk: Arc<dyn ByteSource>) {
    if let Ok(layout) = scan_disk(disk) {
        for v in &layout.volumes {
            if let Some(fs) = &v.fs {
                crate::guest::fs::exercise(fs.as_ref());
            }
        }
    }
}

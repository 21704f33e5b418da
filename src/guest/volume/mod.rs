//! What the disk holds: partitions, LVM2 logical volumes, and what each volume contains.
//! (Interface only; the scanner is built in `scan`.)

use std::sync::Arc;

use super::fs::GuestFs;
use super::source::ByteSource;

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
    /// made of non-linear segments, a file system that failed to open).
    pub problem: Option<String>,
}

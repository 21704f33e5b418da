//! Guest readiness: reading the guest inside a virtual disk, read-only and in process, to
//! say before the upload whether it will boot and be reachable on Hyper-V or Azure.
//!
//! Layers, lowest first (arrows point down only):
//! - `source`: [`ByteSource`], bounded positioned reads of a byte range (a disk, a
//!   partition, a logical volume).
//! - `volume`: partition tables, LVM2 linear volumes, detection of what a volume holds
//!   (a file system, swap, LUKS, BitLocker, MD RAID, ...). Produces [`Volume`]s.
//! - `fs`: read-only file systems behind one trait, [`GuestFs`].
//! - `registry`, `initramfs`: Windows hives and Linux initramfs archives, over bytes.
//! - `checks`: the catalogue (GUEST.md section 8) over the volumes and file systems,
//!   producing an `InspectReport`.
//!
//! Everything inside the guest is hostile input: every reader bounds its memory and its
//! work, and a damaged structure becomes a finding, never a panic.

pub mod checks;
pub mod error;
pub mod fs;
pub mod initramfs;
pub mod registry;
pub mod report;
pub mod source;
pub mod volume;

pub use error::{GuestError, GuestResult};
pub use fs::{DirEntry, FileKind, GuestFs, Metadata};
pub use source::ByteSource;
pub use volume::{Content, DiskLayout, Firmware, Scheme, TableReport, Volume, scan, scan_disk};

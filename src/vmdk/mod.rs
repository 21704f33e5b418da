//! VMware VMDK reading: descriptors, hosted sparse and streamOptimized extents, flat extents.

pub mod cowd;
pub mod descriptor;
pub mod extents;
pub mod grain;
pub mod header;
pub mod sequential;
pub mod sesparse;
pub mod sparse;
pub mod stream;

pub use extents::VmdkDisk;

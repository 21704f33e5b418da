//! VMware VMDK reading: descriptors, hosted sparse and streamOptimized extents, flat extents.

pub mod descriptor;
pub mod extents;
pub mod header;
pub mod sparse;
pub mod stream;

pub use extents::VmdkDisk;

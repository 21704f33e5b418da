//! Microsoft VHDX: on-disk structures, the BAT, writing.

pub mod bat;
pub mod diff_write;
pub mod format;
pub mod locator;
pub mod log;
pub mod read;
pub mod write;

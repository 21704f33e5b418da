//! Microsoft VHD: footer, geometry, dynamic header and BAT, parent locators; writing.

pub mod diff_write;
pub mod dynamic;
pub mod footer;
pub mod geometry;
pub mod locator;
pub mod read;
pub mod write;

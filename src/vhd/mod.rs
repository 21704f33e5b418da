//! Microsoft VHD: footer, geometry, dynamic header and BAT; writing.

pub mod dynamic;
pub mod footer;
pub mod geometry;
pub mod read;
pub mod write;

//! vdconv: convert VMware virtual disks (VMDK) to VHD and VHDX, exactly.
//!
//! Open any supported image with [`open`], which detects the format from the content, then
//! [`convert::convert`] it, or ask it for [`info::ImageInfo`].

pub mod check;
pub mod compare;
pub mod convert;
pub mod detect;
pub mod disk;
pub mod error;
pub mod guest;
pub mod info;
pub mod output;
pub mod ova;
pub mod partition;
pub mod size;
pub mod target;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;
pub mod writer;

use std::path::Path;

pub use disk::Disk;
pub use error::{Error, ExitClass, Result};
pub use vmdk::OpenOptions;

use detect::Format;
use disk::InputFile;

/// Describes an image for `info`: its own details and the partition table inside it.
pub fn describe(disk: &mut dyn Disk) -> Result<info::ImageInfo> {
    let mut info = disk.info()?;
    // A damaged first sector should not hide everything else `info` can say.
    match partition::inspect(disk) {
        Ok(table) => info.partitions = Some(table),
        Err(e) => info
            .warnings
            .push(format!("partition table unreadable: {e}")),
    }
    Ok(info)
}

/// Opens an image, detecting its format from its content (never from its name).
pub fn open(path: &Path, options: OpenOptions) -> Result<Box<dyn Disk>> {
    let file = InputFile::open(path)?;
    Ok(match detect::detect(&file)? {
        Format::Vhdx => Box::new(vhdx::read::VhdxDisk::open(file)?),
        Format::Vhd => Box::new(vhd::read::VhdDisk::open(file)?),
        format => Box::new(vmdk::VmdkDisk::open(file, format, options)?),
    })
}

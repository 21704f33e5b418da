//! `vdconv info`: what the reader says about the image, with what lies above the format
//! (the partition table inside the disk, what the adapter type means on Hyper-V).

use serde::Serialize;

use crate::cancel::Cancel;
use crate::disk::{Disk, ImageInfo};
use crate::error::Result;
use crate::partition::{self, PartitionTable};
use crate::report::SCHEMA_VERSION;

#[derive(Debug, Clone, Serialize)]
pub struct InfoReport {
    pub schema_version: u32,
    #[serde(flatten)]
    pub image: ImageInfo,
    /// The partition table found inside the virtual disk; null when it cannot be read
    /// (a warning says why).
    pub partitions: Option<PartitionTable>,
}

/// Describes an image for `info`. A damaged first sector does not hide everything else.
pub fn describe(disk: &mut dyn Disk, cancel: &Cancel) -> Result<InfoReport> {
    let mut image = disk.describe(cancel)?;
    if let Some(v) = image.vmdk.as_mut() {
        v.adapter_hyperv = v.adapter_type.as_deref().map(crate::target::adapter_note);
    }
    let partitions = match partition::inspect(disk) {
        Ok(table) => Some(table),
        Err(e) => {
            image
                .warnings
                .push(format!("partition table unreadable: {e}"));
            None
        }
    };
    Ok(InfoReport {
        schema_version: SCHEMA_VERSION,
        image,
        partitions,
    })
}

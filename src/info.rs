//! `vdconv info`: what the reader says about the image, with what lies above the format
//! (the partition table inside the disk, what the adapter type means on Hyper-V).

use serde::Serialize;

use crate::cancel::Cancel;
use crate::disk::{Disk, ImageInfo, LinkId};
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
    /// The links of the image, top first: one entry for an image without a parent, one
    /// per file for a snapshot chain (a delta and its parents, a differencing disk and
    /// its). Always an array, so that scripts need not tell the two apart.
    pub chain: Vec<LinkInfo>,
}

/// One link of a chain.
#[derive(Debug, Clone, Serialize)]
pub struct LinkInfo {
    /// The link's file (a VMDK's descriptor).
    pub file: String,
    /// "vmdk", "vhd" or "vhdx".
    pub format: &'static str,
    /// VMDK createType, or "fixed" / "dynamic" / "differencing".
    pub layout: String,
    pub virtual_size: u64,
    /// Bytes of the disk this link itself stores (not what it leaves to its parent).
    pub allocated_bytes: u64,
    /// What `id` is: "cid" (VMDK), "unique-id" (VHD), "data-write-guid" (VHDX).
    pub id_kind: Option<&'static str>,
    /// The link's identity, as a child records it: the VMDK CID, the VHD unique id, the
    /// VHDX DataWriteGuid.
    pub id: Option<String>,
    /// The parent's identity as this link records it (VMDK parentCID, VHD parent unique
    /// id, VHDX parent_linkage); null for the base.
    pub parent_id: Option<String>,
    /// The parent's file as found (the next entry's `file`); null for the base.
    pub parent: Option<String>,
}

fn id_kind(id: &LinkId) -> &'static str {
    match id {
        LinkId::VmdkCid(_) => "cid",
        LinkId::VhdUniqueId(_) => "unique-id",
        LinkId::VhdxDataWrite(_) => "data-write-guid",
    }
}

/// The chain's links, top first (one for a disk without a parent).
fn links(disk: &mut dyn Disk, image: &ImageInfo, cancel: &Cancel) -> Result<Vec<LinkInfo>> {
    let link = |info: &ImageInfo, disk: &dyn Disk, parent: Option<String>| {
        let id = disk.link_id();
        LinkInfo {
            file: info.file.clone(),
            format: info.format,
            layout: info.layout.clone(),
            virtual_size: info.virtual_size,
            allocated_bytes: info.allocated_bytes,
            id_kind: id.as_ref().map(id_kind),
            id: id.as_ref().map(LinkId::value),
            parent_id: disk.parent().and_then(|p| {
                (!p.expected.is_empty()).then(|| {
                    p.expected
                        .iter()
                        .map(LinkId::value)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
            }),
            parent,
        }
    };
    let Some(layers) = disk.layers_mut() else {
        return Ok(vec![link(image, disk, None)]);
    };
    let paths: Vec<String> = layers
        .iter()
        .map(|l| l.path().display().to_string())
        .collect();
    let mut out = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter_mut().enumerate() {
        let info = layer.describe(cancel)?;
        out.push(link(&info, layer.as_ref(), paths.get(i + 1).cloned()));
    }
    Ok(out)
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
    let chain = links(disk, &image, cancel)?;
    Ok(InfoReport {
        schema_version: SCHEMA_VERSION,
        image,
        partitions,
        chain,
    })
}

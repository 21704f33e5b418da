//! What a reader says about its image for `vdconv info`, as one serialisable record. The
//! pipeline adds what lies above the format (the partition table, the chain).

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    /// The path given.
    pub file: String,
    /// "vmdk", "vhd", "vhdx" or "raw".
    pub format: &'static str,
    /// VMDK createType, or "fixed" / "dynamic" / "differencing".
    pub layout: String,
    /// Guest-visible size in bytes.
    pub virtual_size: u64,
    /// Bytes of the virtual disk mapped to stored data.
    pub allocated_bytes: u64,
    /// The pieces the disk is made of, in order.
    pub extents: Vec<ExtentInfo>,
    /// VMDK details; null for other formats.
    pub vmdk: Option<VmdkDetails>,
    /// VHD details; null for other formats.
    pub vhd: Option<VhdDetails>,
    /// VHDX details; null for other formats.
    pub vhdx: Option<VhdxDetails>,
    /// Anomalies that were tolerated.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExtentInfo {
    /// RW, RDONLY or NOACCESS.
    pub access: String,
    /// FLAT, SPARSE, ZERO, VMFS, ... (VMDK) or the VHD/VHDX layout.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where the extent starts on the virtual disk, in bytes.
    pub start: u64,
    /// Its length in bytes.
    pub size: u64,
    /// The file holding it (null for ZERO).
    pub file: Option<String>,
    /// Byte offset of the extent's data in that file (FLAT/VMFS).
    pub file_offset: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Geometry {
    pub cylinders: u64,
    pub heads: u64,
    pub sectors: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VmdkDetails {
    pub version: Option<String>,
    pub cid: Option<String>,
    pub parent_cid: Option<String>,
    pub create_type: Option<String>,
    /// ddb.adapterType: ide, lsilogic, buslogic, lsisas1068, pvscsi.
    pub adapter_type: Option<String>,
    /// What the adapter type means for Hyper-V.
    pub adapter_hyperv: Option<String>,
    /// ddb.virtualHWVersion.
    pub hardware_version: Option<String>,
    /// ddb.geometry.cylinders/heads/sectors.
    pub geometry: Option<Geometry>,
    pub uuid: Option<String>,
    pub long_content_id: Option<String>,
    /// Whether the descriptor is embedded in the sparse file.
    pub embedded_descriptor: bool,
    /// Grain size in bytes of the first sparse extent.
    pub grain_size: Option<u64>,
    /// Whether grains are deflate-compressed (streamOptimized).
    pub compressed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct VhdDetails {
    pub creator_app: String,
    pub creator_version: String,
    pub creator_host_os: String,
    pub geometry: Geometry,
    pub unique_id: String,
    /// Dynamic and differencing disks' block size; null for fixed.
    pub block_size: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VhdxDetails {
    pub block_size: u64,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    /// The current header's sequence number.
    pub sequence_number: u64,
}

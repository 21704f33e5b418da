//! VHDX on-disk structures (MS-VHDX), little-endian, GUIDs in Microsoft's mixed-endian
//! byte order: file identifier, headers, region table, metadata table and items.

use uuid::Uuid;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;

pub const FILE_SIGNATURE: &[u8; 8] = b"vhdxfile";
pub const HEADER_SIGNATURE: &[u8; 4] = b"head";
pub const REGION_SIGNATURE: &[u8; 4] = b"regi";
pub const METADATA_SIGNATURE: &[u8; 8] = b"metadata";

pub const HEADER1_OFFSET: u64 = 64 * KIB;
pub const HEADER2_OFFSET: u64 = 128 * KIB;
pub const REGION1_OFFSET: u64 = 192 * KIB;
pub const REGION2_OFFSET: u64 = 256 * KIB;
pub const HEADER_SIZE: usize = 4096;
pub const REGION_TABLE_SIZE: usize = 64 * 1024;
pub const METADATA_TABLE_SIZE: usize = 64 * 1024;
/// Entry limits from the specification.
pub const MAX_REGION_ENTRIES: u32 = 2047;
pub const MAX_METADATA_ENTRIES: u16 = 2047;

/// Where vdconv places what it writes, as Windows does: log, metadata, BAT, then data.
pub const LOG_OFFSET: u64 = MIB;
pub const LOG_LENGTH: u32 = MIB as u32;
pub const METADATA_OFFSET: u64 = 2 * MIB;
pub const METADATA_LENGTH: u32 = MIB as u32;
pub const BAT_OFFSET: u64 = 3 * MIB;

pub const MAX_SIZE: u64 = 64 << 40;

/// Parses a GUID literal into its on-disk (mixed-endian) bytes.
pub const fn guid(text: &str) -> [u8; 16] {
    match Uuid::try_parse(text) {
        Ok(u) => u.to_bytes_le(),
        Err(_) => panic!("bad GUID literal"),
    }
}

/// Formats on-disk GUID bytes for messages.
pub fn guid_string(bytes: &[u8; 16]) -> String {
    Uuid::from_bytes_le(*bytes).to_string()
}

pub const BAT_REGION: [u8; 16] = guid("2DC27766-F623-4200-9D64-115E9BFD4A08");
pub const METADATA_REGION: [u8; 16] = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E");

pub const FILE_PARAMETERS: [u8; 16] = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
pub const VIRTUAL_DISK_SIZE: [u8; 16] = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
pub const PAGE_83_DATA: [u8; 16] = guid("BECA12AB-B2E6-4523-93EF-C309E000C746");
pub const LOGICAL_SECTOR_SIZE: [u8; 16] = guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
pub const PHYSICAL_SECTOR_SIZE: [u8; 16] = guid("CDA348C7-445D-4471-9CC9-E9885251C556");
pub const PARENT_LOCATOR: [u8; 16] = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");

/// Metadata entry flags.
pub const META_IS_USER: u32 = 1;
pub const META_IS_VIRTUAL_DISK: u32 = 2;
pub const META_IS_REQUIRED: u32 = 4;

/// File parameter flags.
pub const LEAVE_BLOCK_ALLOCATED: u32 = 1;
pub const HAS_PARENT: u32 = 2;

/// The header (4 KiB, two copies).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct Header {
    /// `head`.
    pub signature: [u8; 4],
    /// CRC-32C of the 4 KiB with this field zero.
    pub checksum: U32,
    /// The valid header with the larger number is current.
    pub sequence_number: U64,
    /// Changes whenever the file is opened for writing.
    pub file_write_guid: [u8; 16],
    /// Changes whenever user-visible data changes.
    pub data_write_guid: [u8; 16],
    /// Zero when the log holds nothing to replay.
    pub log_guid: [u8; 16],
    /// 0.
    pub log_version: U16,
    /// 1.
    pub version: U16,
    /// Bytes of the log, a multiple of 1 MiB.
    pub log_length: U32,
    /// File offset of the log, a multiple of 1 MiB.
    pub log_offset: U64,
    pub reserved: [u8; 4016],
}

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);

/// The region table's fixed part.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct RegionTableHeader {
    /// `regi`.
    pub signature: [u8; 4],
    /// CRC-32C of the 64 KiB table with this field zero.
    pub checksum: U32,
    /// Entries that follow, at most 2047.
    pub entry_count: U32,
    pub reserved: U32,
}

/// One region: BAT, metadata, or something a reader must know when Required.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct RegionEntry {
    pub guid: [u8; 16],
    /// A multiple of 1 MiB.
    pub file_offset: U64,
    /// A multiple of 1 MiB.
    pub length: U32,
    /// Bit 0: Required.
    pub required: U32,
}

/// The metadata table's fixed part.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct MetadataTableHeader {
    /// `metadata`.
    pub signature: [u8; 8],
    pub reserved: U16,
    /// Entries that follow, at most 2047.
    pub entry_count: U16,
    pub reserved2: [u8; 20],
}

/// One metadata item's place in the region.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct MetadataEntry {
    pub item_id: [u8; 16],
    /// Offset within the metadata region, at least 64 KiB (0 only when length is 0).
    pub offset: U32,
    pub length: U32,
    /// META_IS_USER | META_IS_VIRTUAL_DISK | META_IS_REQUIRED.
    pub flags: U32,
    pub reserved: U32,
}

const _: () = assert!(size_of::<RegionEntry>() == 32);
const _: () = assert!(size_of::<MetadataEntry>() == 32);
const _: () = assert!(size_of::<MetadataTableHeader>() == 32);

/// CRC-32C of `bytes` with the 4-byte checksum field at `at` taken as zero.
pub fn checksum_with_field_zeroed(bytes: &[u8], at: usize) -> u32 {
    let crc = crc32c::crc32c(&bytes[..at]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &bytes[at + 4..])
}

/// Writes the CRC-32C of `bytes` (checksum at offset 4) into place.
pub fn seal(bytes: &mut [u8]) {
    bytes[4..8].fill(0);
    let crc = crc32c::crc32c(bytes);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
}

impl Header {
    pub fn new(sequence_number: u64, file_write: [u8; 16], data_write: [u8; 16]) -> Self {
        let mut h = Header::new_zeroed();
        h.signature = *HEADER_SIGNATURE;
        h.sequence_number.set(sequence_number);
        h.file_write_guid = file_write;
        h.data_write_guid = data_write;
        h.version.set(1);
        h.log_length.set(LOG_LENGTH);
        h.log_offset.set(LOG_OFFSET);
        seal(h.as_mut_bytes());
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_bytes_are_mixed_endian() {
        // First three fields little-endian, the last two as written.
        assert_eq!(
            BAT_REGION,
            [
                0x66, 0x77, 0xC2, 0x2D, 0x23, 0xF6, 0x00, 0x42, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD,
                0x4A, 0x08
            ]
        );
        assert_eq!(
            guid_string(&BAT_REGION),
            "2dc27766-f623-4200-9d64-115e9bfd4a08"
        );
    }

    #[test]
    fn header_checksum_is_crc32c_stored_little_endian_at_4() {
        let h = Header::new(1, [1; 16], [2; 16]);
        let bytes = h.as_bytes();
        let stored = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
        let mut zeroed = bytes.to_vec();
        zeroed[4..8].fill(0);
        assert_eq!(stored, crc32c::crc32c(&zeroed));
        assert_eq!(checksum_with_field_zeroed(bytes, 4), stored);
        // Not the IEEE CRC-32 that qemu rejects.
        assert_ne!(stored, crc32fast_ieee(&zeroed));
        // The reference value of CRC-32C for "123456789".
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    /// Bitwise IEEE CRC-32, only to show the two differ.
    fn crc32fast_ieee(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}

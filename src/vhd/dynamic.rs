//! The dynamic VHD header (1024 bytes at offset 512) and the block layout vdconv writes.

use zerocopy::big_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::vhd::footer::{VERSION, ones_complement_sum};

pub const COOKIE: &[u8; 8] = b"cxsparse";
pub const HEADER_OFFSET: u64 = 512;
pub const BAT_OFFSET: u64 = 1536;
/// BAT entry of a block that is not allocated.
pub const UNALLOCATED: u32 = 0xFFFF_FFFF;
pub const DEFAULT_BLOCK_SIZE: u64 = 2 << 20;
/// Block data starts on this boundary, as Windows lays it out.
pub const DATA_ALIGNMENT: u64 = 4096;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct DynamicHeader {
    /// `cxsparse`.
    pub cookie: [u8; 8],
    /// Unused: all ones.
    pub data_offset: U64,
    /// Byte offset of the BAT.
    pub table_offset: U64,
    /// 0x00010000.
    pub header_version: U32,
    /// BAT entries: exactly ceil(size / block size).
    pub max_table_entries: U32,
    /// Bytes per block, a power of two.
    pub block_size: U32,
    /// One's complement of the byte sum with this field zero.
    pub checksum: U32,
    /// Differencing disks: the parent's unique id.
    pub parent_unique_id: [u8; 16],
    /// Differencing disks: the parent's modification time.
    pub parent_timestamp: U32,
    pub reserved1: U32,
    /// Differencing disks: the parent's name, UTF-16BE.
    pub parent_unicode_name: [u8; 512],
    /// Differencing disks: eight 24-byte locator entries.
    pub parent_locators: [u8; 192],
    pub reserved2: [u8; 256],
}

const _: () = assert!(size_of::<DynamicHeader>() == 1024);

impl DynamicHeader {
    pub fn new(block_size: u32, entries: u32) -> Self {
        let mut h = DynamicHeader::new_zeroed();
        h.cookie = *COOKIE;
        h.data_offset.set(u64::MAX);
        h.table_offset.set(BAT_OFFSET);
        h.header_version.set(VERSION);
        h.max_table_entries.set(entries);
        h.block_size.set(block_size);
        h.seal();
        h
    }

    pub fn seal(&mut self) {
        self.checksum.set(0);
        let sum = ones_complement_sum(self.as_bytes());
        self.checksum.set(sum);
    }

    pub fn expected_checksum(&self) -> u32 {
        let mut copy = self.clone();
        copy.checksum.set(0);
        ones_complement_sum(copy.as_bytes())
    }
}

/// Bytes of a block's sector bitmap: one bit per sector, padded to a whole sector.
pub fn bitmap_bytes(block_size: u64) -> u64 {
    (block_size / 512).div_ceil(8).div_ceil(512) * 512
}

/// BAT entries for a disk: one per block, the last one possibly partial.
pub fn bat_entries(size: u64, block_size: u64) -> u64 {
    size.div_ceil(block_size)
}

/// Bytes the BAT occupies on disk, padded to a sector.
pub fn bat_bytes(entries: u64) -> u64 {
    (entries * 4).div_ceil(512) * 512
}

/// File offset of the bitmap of a block placed at or after `free`, such that the block's
/// data starts on a DATA_ALIGNMENT boundary.
pub fn block_position(free: u64, block_size: u64) -> u64 {
    let bitmap = bitmap_bytes(block_size);
    (free + bitmap).next_multiple_of(DATA_ALIGNMENT) - bitmap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bat_has_exactly_one_entry_per_block() {
        let mib = 1u64 << 20;
        assert_eq!(bat_entries(4 * mib, 2 * mib), 2);
        assert_eq!(bat_entries(4 * mib + 512, 2 * mib), 3);
        assert_eq!(bat_entries(512, 2 * mib), 1);
        assert_eq!(bat_bytes(1), 512);
        assert_eq!(bat_bytes(128), 512);
        assert_eq!(bat_bytes(129), 1024);
    }

    #[test]
    fn block_data_lands_on_4k() {
        let two = 2u64 << 20;
        assert_eq!(bitmap_bytes(two), 512);
        assert_eq!(bitmap_bytes(32 << 20), 8192);
        let first = block_position(BAT_OFFSET + 512, two);
        assert_eq!((first + 512) % 4096, 0);
        assert!(first >= BAT_OFFSET + 512);
        let next = block_position(first + 512 + two, two);
        assert_eq!(next, first + two + 4096);
        assert_eq!((next + 512) % 4096, 0);
    }

    #[test]
    fn header_checksum_covers_all_1024_bytes() {
        let h = DynamicHeader::new(2 << 20, 10);
        assert_eq!(h.expected_checksum(), h.checksum.get());
        let bytes = h.as_bytes();
        assert_eq!(&bytes[0..8], b"cxsparse");
        assert_eq!(
            u64::from_be_bytes(bytes[16..24].try_into().unwrap()),
            BAT_OFFSET
        );
        assert_eq!(u32::from_be_bytes(bytes[28..32].try_into().unwrap()), 10);
    }
}

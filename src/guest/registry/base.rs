//! The 4 KiB base block at the start of a hive: signature, sequence numbers, root cell.

use crate::guest::error::{GuestError, GuestResult};

/// Size of the base block; cell offsets count from its end (the first hbin).
pub const BASE_BLOCK_SIZE: usize = 4096;

/// What the base block says about the hive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBlock {
    /// Incremented before a write starts.
    pub primary_sequence: u32,
    /// Set equal to the primary once the write completed.
    pub secondary_sequence: u32,
    pub major_version: u32,
    pub minor_version: u32,
    /// Offset of the root key node, relative to the first hbin.
    pub root_cell: u32,
    /// False when the XOR checksum of the first 508 bytes does not match.
    pub checksum_ok: bool,
}

impl BaseBlock {
    pub fn parse(data: &[u8]) -> GuestResult<BaseBlock> {
        let block = data
            .get(..BASE_BLOCK_SIZE)
            .ok_or_else(|| corrupt(0, "shorter than its 4 KiB base block"))?;
        if block.get(..4) != Some(b"regf".as_slice()) {
            return Err(corrupt(0, "no regf signature"));
        }
        let u32_at = |o: usize| {
            block
                .get(o..o + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .unwrap_or(0)
        };
        let major_version = u32_at(20);
        if major_version != 1 {
            return Err(GuestError::Unsupported(format!(
                "registry hive major version {major_version} (only 1 exists)"
            )));
        }
        let mut xor = 0u32;
        for i in 0..127 {
            xor ^= u32_at(i * 4);
        }
        // The specification maps the two reserved results to neighbours.
        let expected = match xor {
            0xFFFF_FFFF => 0xFFFF_FFFE,
            0 => 1,
            x => x,
        };
        Ok(BaseBlock {
            primary_sequence: u32_at(4),
            secondary_sequence: u32_at(8),
            major_version,
            minor_version: u32_at(24),
            root_cell: u32_at(36),
            checksum_ok: expected == u32_at(508),
        })
    }
}

fn corrupt(offset: u64, detail: &str) -> GuestError {
    GuestError::Corrupt {
        structure: "registry base block",
        offset,
        detail: detail.into(),
    }
}

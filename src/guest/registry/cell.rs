//! Cells: the allocation unit inside hbins. A cell is an i32 size (negative when in use)
//! followed by its data; offsets count from the end of the base block.

use super::Hive;
use super::base::BASE_BLOCK_SIZE;
use crate::guest::error::{GuestError, GuestResult};

/// The offset value meaning "no cell".
pub const NO_CELL: u32 = 0xFFFF_FFFF;

impl Hive {
    /// The data of the cell at `offset` (after its size field), checked to lie inside the
    /// hive. Free cells are tolerated: hivex reads them too, and a damaged allocation flag
    /// is no reason to lose a key.
    pub(super) fn cell(&self, offset: u32, structure: &'static str) -> GuestResult<&[u8]> {
        let start = BASE_BLOCK_SIZE
            .checked_add(offset as usize)
            .ok_or_else(|| bad(structure, offset, "offset overflows"))?;
        let size_bytes: [u8; 4] = self
            .data
            .get(start..start.saturating_add(4))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad(structure, offset, "cell lies outside the hive"))?;
        let size = i32::from_le_bytes(size_bytes).unsigned_abs() as usize;
        if size < 8 {
            return Err(bad(structure, offset, "cell smaller than 8 bytes"));
        }
        self.data
            .get(start + 4..start.saturating_add(size))
            .ok_or_else(|| bad(structure, offset, "cell extends past the end of the hive"))
    }
}

/// Little-endian helpers over a cell's bytes; reading past the cell is a corruption.
pub(super) struct Fields<'a> {
    pub bytes: &'a [u8],
    pub structure: &'static str,
    pub offset: u32,
}

impl<'a> Fields<'a> {
    pub fn u16(&self, at: usize) -> GuestResult<u16> {
        self.slice(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&self, at: usize) -> GuestResult<u32> {
        self.slice(at, 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn slice(&self, at: usize, len: usize) -> GuestResult<&'a [u8]> {
        self.bytes
            .get(at..at.saturating_add(len))
            .filter(|s| s.len() == len)
            .ok_or_else(|| bad(self.structure, self.offset, "field extends past the cell"))
    }

    pub fn signature(&self, expected: &[u8; 2]) -> GuestResult<()> {
        if self.slice(0, 2)? == expected {
            Ok(())
        } else {
            Err(bad(
                self.structure,
                self.offset,
                &format!("expected signature {}", String::from_utf8_lossy(expected)),
            ))
        }
    }
}

pub(super) fn bad(structure: &'static str, offset: u32, detail: &str) -> GuestError {
    GuestError::Corrupt {
        structure,
        offset: u64::from(offset),
        detail: detail.into(),
    }
}

/// A name stored either as Latin-1 ("compressed", flag set) or UTF-16LE.
pub(super) fn decode_name(bytes: &[u8], latin1: bool) -> String {
    if latin1 {
        bytes.iter().map(|&b| char::from(b)).collect()
    } else {
        utf16le(bytes)
    }
}

/// UTF-16LE to a String, replacing unpaired surrogates; an odd last byte is dropped.
pub(super) fn utf16le(bytes: &[u8]) -> String {
    let units = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

//! The VHDX block allocation table: chunk ratio, entry positions and entry encoding.

/// Payload block states (bits 0-2 of an entry).
pub const NOT_PRESENT: u8 = 0;
pub const UNDEFINED: u8 = 1;
pub const ZERO: u8 = 2;
pub const UNMAPPED: u8 = 3;
pub const FULLY_PRESENT: u8 = 6;
pub const PARTIALLY_PRESENT: u8 = 7;

const MIB: u64 = 1 << 20;

/// The table's geometry for one disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatLayout {
    pub block_size: u64,
    /// Payload blocks: ceil(size / block size).
    pub payload_blocks: u64,
    /// Payload entries per sector-bitmap entry.
    pub chunk_ratio: u64,
}

impl BatLayout {
    pub fn new(virtual_size: u64, block_size: u64, logical_sector: u64) -> Self {
        BatLayout {
            block_size,
            payload_blocks: virtual_size.div_ceil(block_size),
            chunk_ratio: (1u64 << 23) * logical_sector / block_size,
        }
    }

    /// Entries in all, for a disk without a parent: a sector-bitmap entry follows every
    /// chunk_ratio payload entries, except after the last chunk when it is partial.
    pub fn total_entries(&self) -> u64 {
        if self.payload_blocks == 0 {
            return 0;
        }
        self.payload_blocks + (self.payload_blocks - 1) / self.chunk_ratio
    }

    /// Entries in all for a differencing image: every chunk, the last one too, is
    /// followed by its sector-bitmap entry (MS-VHDX 2.5).
    pub fn entries_with_parent(&self) -> u64 {
        self.payload_blocks.div_ceil(self.chunk_ratio) * (self.chunk_ratio + 1)
    }

    /// Entries in all, with or without a parent.
    pub fn entries(&self, has_parent: bool) -> u64 {
        if has_parent {
            self.entries_with_parent()
        } else {
            self.total_entries()
        }
    }

    /// Index of payload block `block` in the table.
    pub fn payload_index(&self, block: u64) -> u64 {
        block + block / self.chunk_ratio
    }

    /// Index of chunk `chunk`'s sector-bitmap entry: after its chunk_ratio payload entries.
    pub fn bitmap_index(&self, chunk: u64) -> u64 {
        (chunk + 1) * self.chunk_ratio + chunk
    }

    /// Bytes of the BAT region: whole MiB.
    pub fn region_bytes(&self) -> u64 {
        (self.total_entries() * 8).div_ceil(MIB).max(1) * MIB
    }

    /// Bytes of payload block `block` that lie inside a disk of `virtual_size` bytes (the
    /// last block may be partial).
    pub fn used_bytes(&self, block: u64, virtual_size: u64) -> u64 {
        virtual_size
            .saturating_sub(block * self.block_size)
            .min(self.block_size)
    }
}

/// Where a present block lies, judged the same way by the reader and by `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFit {
    /// Wholly inside the file, clear of the headers, log, BAT and metadata.
    Inside,
    /// Its used bytes are inside, but the whole block runs past the end of the file (a
    /// partial last block of a file qemu wrote): readable, though Windows refuses it.
    TailOutside,
    /// Its used bytes leave the file, lie in the first MiB, or touch a reserved region.
    Outside,
}

/// Judges a present block at file offset `offset` with `used` bytes inside the disk.
/// `reserved` holds (offset, length) of the log, BAT and metadata regions.
pub fn block_fit(
    offset: u64,
    used: u64,
    block_size: u64,
    file_len: u64,
    reserved: &[(u64, u64)],
) -> BlockFit {
    let (Some(used_end), whole_end) = (offset.checked_add(used), offset.checked_add(block_size))
    else {
        return BlockFit::Outside;
    };
    let collides =
        |&(start, len): &(u64, u64)| offset < start.saturating_add(len) && start < used_end;
    if offset < MIB || used_end > file_len || reserved.iter().any(collides) {
        BlockFit::Outside
    } else if whole_end.is_none_or(|e| e > file_len) {
        BlockFit::TailOutside
    } else {
        BlockFit::Inside
    }
}

/// An entry: state in bits 0-2, file offset in MiB in bits 20-63.
pub fn encode(state: u8, file_offset: u64) -> u64 {
    debug_assert_eq!(file_offset % MIB, 0);
    (file_offset / MIB) << 20 | u64::from(state)
}

/// (state, file offset in bytes, reserved bits 3-19).
pub fn decode(entry: u64) -> (u8, u64, u64) {
    (
        (entry & 7) as u8,
        (entry >> 20) * MIB,
        (entry >> 3) & 0x1FFFF,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ratio_at_its_boundaries() {
        // 512-byte sectors: 2^23 * 512 / block.
        assert_eq!(BatLayout::new(1, 1 << 20, 512).chunk_ratio, 4096);
        assert_eq!(BatLayout::new(1, 32 << 20, 512).chunk_ratio, 128);
        assert_eq!(BatLayout::new(1, 256 << 20, 512).chunk_ratio, 16);
        assert_eq!(BatLayout::new(1, 32 << 20, 4096).chunk_ratio, 1024);
        assert_eq!(BatLayout::new(1, 256 << 20, 4096).chunk_ratio, 128);
    }

    #[test]
    fn sector_bitmap_entries_are_interleaved() {
        let l = BatLayout::new(128 * (32 << 20), 32 << 20, 512);
        assert_eq!(l.payload_blocks, 128);
        assert_eq!(
            l.total_entries(),
            128,
            "exactly one chunk: no bitmap entry after it"
        );
        let l = BatLayout::new(129 * (32 << 20), 32 << 20, 512);
        assert_eq!(l.total_entries(), 130);
        assert_eq!(l.payload_index(127), 127);
        assert_eq!(
            l.payload_index(128),
            129,
            "index 128 is the first sector bitmap entry"
        );
        let l = BatLayout::new((32 << 20) + 512, 32 << 20, 512);
        assert_eq!(l.payload_blocks, 2);
        assert_eq!(l.total_entries(), 2);
        assert_eq!(l.region_bytes(), 1 << 20);
    }

    #[test]
    fn a_partial_last_block_is_readable_but_not_whole() {
        let mib = MIB;
        assert_eq!(
            block_fit(4 * mib, mib, 2 * mib, 6 * mib, &[]),
            BlockFit::Inside
        );
        assert_eq!(
            block_fit(4 * mib, mib, 2 * mib, 5 * mib, &[]),
            BlockFit::TailOutside
        );
        assert_eq!(
            block_fit(4 * mib, 2 * mib, 2 * mib, 5 * mib, &[]),
            BlockFit::Outside
        );
        assert_eq!(block_fit(0, mib, mib, 8 * mib, &[]), BlockFit::Outside);
        assert_eq!(
            block_fit(u64::MAX - mib, 2 * mib, 2 * mib, u64::MAX, &[]),
            BlockFit::Outside,
            "no wrap-around"
        );
        assert_eq!(
            block_fit(3 * mib, mib, mib, 8 * mib, &[(3 * mib, mib)]),
            BlockFit::Outside
        );
    }

    #[test]
    fn entry_layout() {
        let e = encode(FULLY_PRESENT, 5 << 20);
        assert_eq!(e, (5 << 20) | 6);
        assert_eq!(decode(e), (FULLY_PRESENT, 5 << 20, 0));
        assert_eq!(decode(0x8).2, 1, "reserved bits are reported");
    }
}

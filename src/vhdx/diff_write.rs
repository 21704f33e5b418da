//! Writing a differencing VHDX (a Hyper-V checkpoint's `.avhdx`): the layout of a dynamic
//! VHDX, with HasParent set, the parent's Virtual Disk ID, a parent locator naming the
//! parent and its DataWriteGuid, a BAT sized by the differencing formula, and only the
//! blocks the child changes.
//!
//! The caller says, in increasing order of offset, which ranges hold data and which read
//! as zeros (hiding the parent); everything else is the parent's. A block all of whose
//! sectors are this file's is FULLY_PRESENT; one with some is PARTIALLY_PRESENT, its
//! sectors marked in its chunk's sector bitmap block (one bit per logical sector, LSB
//! first). Zeros are stored as present sectors left as holes: libvhdi (through 2024)
//! reads a block in state ZERO as its parent's, so PAYLOAD_BLOCK_ZERO is not used. For
//! the same reader, every chunk gets a sector bitmap block (SB_BLOCK_PRESENT), even one
//! without partially present blocks: it consults the bitmap of every block not fully
//! present and would otherwise read the file's first MiB as one.

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::sink::{Sink, TableWriter, for_each_block};
use crate::vhdx::bat::{self, BatLayout};
use crate::vhdx::format::*;
use crate::vhdx::locator::{ParentLocator, guid_text};
use crate::vhdx::write::{
    VhdxParams, disk_metadata, write_file_identifier, write_headers, write_metadata_region,
    write_region_tables,
};

/// Hyper-V's block size for checkpoints (differencing disks): 2 MiB.
pub const DEFAULT_BLOCK_SIZE: u64 = 2 * MIB;

/// What the child records about its parent.
#[derive(Debug, Clone)]
pub struct VhdxParent {
    /// The parent's DataWriteGuid (on-disk bytes): the child's parent_linkage.
    pub data_write_guid: [u8; 16],
    /// The parent's Virtual Disk ID, which a child carries too (MS-VHDX 2.6.1.2).
    pub page83: [u8; 16],
    /// The parent's path relative to the child, with `\` separators (`.\base.vhdx`).
    pub relative_path: String,
    /// `\\?\d:\…` when the parent's Windows path is known; none is made up.
    pub absolute_win32_path: Option<String>,
}

/// The block being assembled: which of its sectors are this file's.
struct Current {
    block: u64,
    /// One flag per logical sector of the block.
    present: Vec<bool>,
    /// Where its payload is, once a write needed it.
    offset: Option<u64>,
}

pub struct VhdxDiffWriter<S: Sink> {
    out: S,
    params: VhdxParams,
    parent: VhdxParent,
    layout: BatLayout,
    bat: TableWriter,
    /// Next free MiB-aligned file offset.
    free: u64,
    current: Option<Current>,
    /// The sector bitmap of the chunk in hand (1 MiB) and its chunk.
    bitmap: Option<(u64, Vec<u8>)>,
    /// The chunk whose bitmap is written next (every chunk gets one, in order).
    next_chunk: u64,
    /// Where the caller got to: calls arrive in increasing order.
    position: u64,
}

impl<S: Sink> VhdxDiffWriter<S> {
    /// `params` must have passed `validate` (its `fixed` is ignored: a child is dynamic).
    pub fn new(out: S, params: VhdxParams, parent: VhdxParent) -> Self {
        let layout = BatLayout::new(
            params.size,
            params.block_size,
            u64::from(params.logical_sector),
        );
        let bat_bytes = (layout.entries_with_parent() * 8).div_ceil(MIB).max(1) * MIB;
        let free = BAT_OFFSET + bat_bytes;
        VhdxDiffWriter {
            out,
            params,
            parent,
            layout,
            bat: TableWriter::new(BAT_OFFSET, layout.entries_with_parent(), vec![0; 8]),
            free,
            current: None,
            bitmap: None,
            next_chunk: 0,
            position: 0,
        }
    }

    fn sector(&self) -> u64 {
        u64::from(self.params.logical_sector)
    }

    /// Refuses calls out of order or off the sector grid (the caller's mistake).
    fn advance(&mut self, offset: u64, len: u64) -> Result<()> {
        let end = offset.checked_add(len);
        let sector = self.sector();
        if offset < self.position
            || end.is_none_or(|e| e > self.params.size)
            || offset % sector != 0
            || len % sector != 0
        {
            return Err(Error::output_limit(format!(
                "differencing VHDX writer: range {offset}+{len} is out of order, outside the {}-byte disk or not whole {sector}-byte sectors",
                self.params.size
            )));
        }
        self.position = offset + len;
        Ok(())
    }

    /// Stores `data` at virtual `offset`: its sectors become this file's. Zero pieces
    /// stay holes. Returns the bytes written.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<u64> {
        self.advance(offset, data.len() as u64)?;
        let mut written = 0;
        let mut done = 0usize;
        let bs = self.params.block_size;
        let mut pieces = Vec::new();
        for_each_block(offset, data.len() as u64, bs, |block, within, n| {
            pieces.push((block, within, n));
            Ok(())
        })?;
        for (block, within, n) in pieces {
            let at = self.mark(block, within, n, true)?;
            written += self
                .out
                .write_nonzero(&data[done..done + n as usize], at + within)?;
            done += n as usize;
        }
        Ok(written)
    }

    /// Makes `[offset, offset + len)` read as zeros, hiding the parent.
    pub fn zero(&mut self, offset: u64, len: u64) -> Result<()> {
        self.advance(offset, len)?;
        let mut pieces = Vec::new();
        for_each_block(offset, len, self.params.block_size, |block, within, n| {
            pieces.push((block, within, n));
            Ok(())
        })?;
        for (block, within, n) in pieces {
            self.mark(block, within, n, false)?;
        }
        Ok(())
    }

    /// Marks sectors of `block` as this file's; with `allocate`, places the block's
    /// payload (if not yet) and returns its offset.
    fn mark(&mut self, block: u64, within: u64, n: u64, allocate: bool) -> Result<u64> {
        if self.current.as_ref().is_some_and(|c| c.block != block) {
            self.finish_block()?;
        }
        let sectors = (self.params.block_size / self.sector()) as usize;
        let sector = self.sector();
        let current = self.current.get_or_insert_with(|| Current {
            block,
            present: vec![false; sectors],
            offset: None,
        });
        let first = (within / sector) as usize;
        current.present[first..first + (n / sector) as usize].fill(true);
        if allocate && current.offset.is_none() {
            current.offset = Some(self.free);
            self.free += self.params.block_size;
        }
        Ok(current.offset.unwrap_or(0))
    }

    /// Settles the block in hand: its BAT state and its bits in the sector bitmap.
    fn finish_block(&mut self) -> Result<()> {
        let Some(mut current) = self.current.take() else {
            return Ok(());
        };
        let used = self
            .layout
            .used_bytes(current.block, self.params.size)
            .div_ceil(self.sector()) as usize;
        let present = &current.present[..used];
        let count = present.iter().filter(|&&p| p).count();
        if count == 0 {
            return Ok(());
        }
        let at = *current.offset.get_or_insert_with(|| {
            let at = self.free;
            self.free += self.params.block_size;
            at
        });
        let state = if count == used {
            bat::FULLY_PRESENT
        } else {
            bat::PARTIALLY_PRESENT
        };
        let index = self.layout.payload_index(current.block);
        self.bat
            .set(&self.out, index, &bat::encode(state, at).to_le_bytes())?;
        // Bits for fully present blocks too: readers that consult the bitmap of every
        // block then read the same.
        let chunk = current.block / self.layout.chunk_ratio;
        self.bitmap_for(chunk)?;
        let (_, bits) = self.bitmap.as_mut().expect("bitmap in hand");
        let base = (current.block % self.layout.chunk_ratio) as usize * current.present.len();
        for (i, _) in present.iter().enumerate().filter(|(_, p)| **p) {
            let bit = base + i;
            bits[bit / 8] |= 1 << (bit % 8);
        }
        Ok(())
    }

    /// Makes chunk `chunk`'s bitmap the one in hand, writing those of the chunks before.
    fn bitmap_for(&mut self, chunk: u64) -> Result<()> {
        if self.bitmap.as_ref().is_some_and(|(c, _)| *c == chunk) {
            return Ok(());
        }
        self.flush_bitmap()?;
        while self.next_chunk < chunk {
            // A chunk with nothing in it: an empty bitmap, which is all holes.
            self.place_bitmap(self.next_chunk, None)?;
            self.next_chunk += 1;
        }
        self.bitmap = Some((chunk, vec![0u8; MIB as usize]));
        Ok(())
    }

    fn flush_bitmap(&mut self) -> Result<()> {
        if let Some((chunk, bits)) = self.bitmap.take() {
            self.place_bitmap(chunk, Some(&bits))?;
            self.next_chunk = chunk + 1;
        }
        Ok(())
    }

    fn place_bitmap(&mut self, chunk: u64, bits: Option<&[u8]>) -> Result<()> {
        let at = self.free;
        self.free += MIB;
        if let Some(bits) = bits {
            self.out.write_nonzero(bits, at)?;
        }
        let index = self.layout.bitmap_index(chunk);
        self.bat.set(
            &self.out,
            index,
            &bat::encode(bat::FULLY_PRESENT, at).to_le_bytes(),
        )
    }

    /// Writes the blocks' states, the remaining bitmaps, metadata and headers, carrying
    /// `identity`'s ids.
    pub fn finish(mut self, identity: Identity) -> Result<()> {
        self.finish_block()?;
        self.flush_bitmap()?;
        let chunks = self.layout.payload_blocks.div_ceil(self.layout.chunk_ratio);
        while self.next_chunk < chunks {
            self.place_bitmap(self.next_chunk, None)?;
            self.next_chunk += 1;
        }
        let bat_bytes = (self.layout.entries_with_parent() * 8).div_ceil(MIB).max(1) * MIB;
        write_file_identifier(&self.out)?;
        write_headers(&self.out, &identity)?;
        write_region_tables(&self.out, bat_bytes)?;
        self.write_metadata()?;
        let VhdxDiffWriter { out, bat, free, .. } = self;
        bat.finish(&out)?;
        out.set_len(free)
    }

    fn write_metadata(&self) -> Result<()> {
        let linkage = guid_text(&self.parent.data_write_guid);
        let mut entries = vec![
            ("parent_linkage", linkage.as_str()),
            ("relative_path", self.parent.relative_path.as_str()),
        ];
        if let Some(abs) = &self.parent.absolute_win32_path {
            entries.push(("absolute_win32_path", abs.as_str()));
        }
        let mut items = disk_metadata(&self.params, HAS_PARENT, self.parent.page83);
        items.push((
            PARENT_LOCATOR,
            ParentLocator::encode(&entries),
            META_IS_REQUIRED,
        ));
        write_metadata_region(&self.out, &items)
    }
}

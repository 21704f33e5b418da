//! Writing a differencing VHD (disk type 4): the layout of a dynamic VHD, whose header
//! names the parent (its unique id, its timestamp, its name in UTF-16BE) and carries two
//! parent locators, `W2ru` (relative) and `W2ku` (absolute), UTF-16LE with their data
//! space in bytes as Hyper-V and VirtualBox write it; each block's sector bitmap
//! (MSB-first) marks the sectors this file holds, the others being the parent's.
//!
//! The caller says, in increasing order of offset, which ranges hold data and which read
//! as zeros (hiding the parent); everything else is the parent's. A block is allocated
//! when any of its sectors is this file's; zeros are stored as present sectors left as
//! holes (a VHD has no zero-block state).

use zerocopy::IntoBytes;

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::sink::{Sink, TableWriter, for_each_block};
use crate::vhd::dynamic::{
    BAT_OFFSET, DynamicHeader, HEADER_OFFSET, UNALLOCATED, bat_bytes, bat_entries, bitmap_bytes,
    block_position,
};
use crate::vhd::footer::{DISK_DIFFERENCING, Footer};
use crate::vhd::locator::{LocatorEntry, W2KU, W2RU};

/// What the child records about its parent.
#[derive(Debug, Clone)]
pub struct VhdParent {
    /// The parent footer's unique id.
    pub unique_id: [u8; 16],
    /// The parent footer's timestamp (seconds since 2000-01-01).
    pub timestamp: u32,
    /// The parent's file name, for the header.
    pub name: String,
    /// The parent's path relative to the child (`.\base.vhd`).
    pub relative_path: String,
    /// The parent's absolute path where it was written.
    pub absolute_path: String,
}

/// The block being assembled.
struct Current {
    block: u64,
    /// One flag per 512-byte sector of the block.
    present: Vec<bool>,
    /// File offset of its bitmap (its data follows).
    at: u64,
}

pub struct VhdDiffWriter<S: Sink> {
    out: S,
    size: u64,
    block_size: u64,
    entries: u64,
    parent: VhdParent,
    bat: TableWriter,
    /// File offsets of the two locators' data.
    locators_at: u64,
    free: u64,
    current: Option<Current>,
    position: u64,
}

/// Bytes reserved for a locator's path: its UTF-16 bytes in whole sectors.
fn locator_space(path: &str) -> u64 {
    ((path.encode_utf16().count() * 2) as u64)
        .max(1)
        .next_multiple_of(512)
}

impl<S: Sink> VhdDiffWriter<S> {
    /// `size` must have passed `check_size`, `block_size` be a power of two from 512 KiB
    /// to 256 MiB.
    pub fn new(out: S, size: u64, block_size: u64, parent: VhdParent) -> Self {
        let entries = bat_entries(size, block_size);
        let locators_at = BAT_OFFSET + bat_bytes(entries);
        let free = locators_at
            + locator_space(&parent.relative_path)
            + locator_space(&parent.absolute_path);
        VhdDiffWriter {
            out,
            size,
            block_size,
            entries,
            parent,
            bat: TableWriter::new(BAT_OFFSET, entries, UNALLOCATED.to_be_bytes().to_vec()),
            locators_at,
            free,
            current: None,
            position: 0,
        }
    }

    fn advance(&mut self, offset: u64, len: u64) -> Result<()> {
        if offset < self.position
            || offset.checked_add(len).is_none_or(|e| e > self.size)
            || offset % 512 != 0
            || len % 512 != 0
        {
            return Err(Error::output_limit(format!(
                "differencing VHD writer: range {offset}+{len} is out of order, outside the {}-byte disk or not whole sectors",
                self.size
            )));
        }
        self.position = offset + len;
        Ok(())
    }

    /// Stores `data` at virtual `offset`; zero pieces stay holes. Returns the bytes
    /// written.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<u64> {
        self.advance(offset, data.len() as u64)?;
        let mut pieces = Vec::new();
        for_each_block(offset, data.len() as u64, self.block_size, |b, w, n| {
            pieces.push((b, w, n));
            Ok(())
        })?;
        let (mut done, mut written) = (0usize, 0);
        for (block, within, n) in pieces {
            let data_at = self.mark(block, within, n)?;
            written += self
                .out
                .write_nonzero(&data[done..done + n as usize], data_at + within)?;
            done += n as usize;
        }
        Ok(written)
    }

    /// Makes `[offset, offset + len)` read as zeros, hiding the parent.
    pub fn zero(&mut self, offset: u64, len: u64) -> Result<()> {
        self.advance(offset, len)?;
        let mut pieces = Vec::new();
        for_each_block(offset, len, self.block_size, |b, w, n| {
            pieces.push((b, w, n));
            Ok(())
        })?;
        for (block, within, n) in pieces {
            self.mark(block, within, n)?;
        }
        Ok(())
    }

    /// Marks sectors of `block` as this file's, allocating the block on its first touch
    /// (bitmap, then data on a 4 KiB boundary, as Windows lays it out); returns where its
    /// data starts.
    fn mark(&mut self, block: u64, within: u64, n: u64) -> Result<u64> {
        if self.current.as_ref().is_some_and(|c| c.block != block) {
            self.finish_block()?;
        }
        let bitmap_len = bitmap_bytes(self.block_size);
        if self.current.is_none() {
            let at = block_position(self.free, self.block_size);
            if u32::try_from(at / 512).is_err() {
                return Err(Error::output_limit(format!(
                    "block {block} would start past the 2 TiB reach of a VHD BAT entry"
                )));
            }
            self.free = at + bitmap_len + self.block_size;
            self.current = Some(Current {
                block,
                present: vec![false; (self.block_size / 512) as usize],
                at,
            });
        }
        let current = self.current.as_mut().expect("just set");
        let first = (within / 512) as usize;
        current.present[first..first + (n / 512) as usize].fill(true);
        Ok(current.at + bitmap_len)
    }

    /// Writes the block in hand's bitmap and BAT entry.
    fn finish_block(&mut self) -> Result<()> {
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        let mut bitmap = vec![0u8; bitmap_bytes(self.block_size) as usize];
        for (i, _) in current.present.iter().enumerate().filter(|(_, p)| **p) {
            bitmap[i / 8] |= 0x80 >> (i % 8);
        }
        self.out.write_at(&bitmap, current.at)?;
        let entry = (current.at / 512) as u32;
        self.bat.set(&self.out, current.block, &entry.to_be_bytes())
    }

    /// Writes the BAT, header with the parent's name and locators, and both footers.
    pub fn finish(mut self, identity: Identity) -> Result<()> {
        self.finish_block()?;
        let this = self;
        this.bat.finish(&this.out)?;
        let table_end = BAT_OFFSET + this.entries * 4;
        let padding = (BAT_OFFSET + bat_bytes(this.entries) - table_end) as usize;
        this.out.write_at(&vec![0xFF; padding], table_end)?;
        let mut header = DynamicHeader::new(this.block_size as u32, this.entries as u32);
        header.parent_unique_id = this.parent.unique_id;
        header.parent_timestamp.set(this.parent.timestamp);
        for (i, unit) in this.parent.name.encode_utf16().take(256).enumerate() {
            header.parent_unicode_name[i * 2..i * 2 + 2].copy_from_slice(&unit.to_be_bytes());
        }
        let mut at = this.locators_at;
        for (i, (code, path)) in [
            (W2RU, &this.parent.relative_path),
            (W2KU, &this.parent.absolute_path),
        ]
        .into_iter()
        .enumerate()
        {
            let bytes: Vec<u8> = path.encode_utf16().flat_map(u16::to_le_bytes).collect();
            let space = locator_space(path);
            let mut e = LocatorEntry {
                platform_code: code,
                ..Default::default()
            };
            // Bytes, as Hyper-V and VirtualBox write the data space.
            e.data_space.set(space as u32);
            e.data_length.set(bytes.len() as u32);
            e.data_offset.set(at);
            header.parent_locators[i * 24..i * 24 + 24].copy_from_slice(e.as_bytes());
            this.out.write_at(&bytes, at)?;
            at += space;
        }
        header.seal();
        this.out.write_at(header.as_bytes(), HEADER_OFFSET)?;
        let footer = Footer::new(this.size, DISK_DIFFERENCING, HEADER_OFFSET, identity);
        this.out.write_at(footer.as_bytes(), 0)?;
        this.out.set_len(this.free)?;
        this.out.write_at(footer.as_bytes(), this.free)
    }
}

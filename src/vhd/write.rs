//! Writing fixed and dynamic VHD files.

use zerocopy::IntoBytes;

use crate::error::{Error, Result};
use crate::output::Output;
use crate::vhd::dynamic::{
    self, BAT_OFFSET, DynamicHeader, HEADER_OFFSET, UNALLOCATED, bat_bytes, bat_entries,
    bitmap_bytes, block_position,
};
use crate::vhd::footer::{DISK_DYNAMIC, DISK_FIXED, Footer, NO_DATA_OFFSET};
use crate::writer::{ImageWriter, for_each_block};

/// The largest disk a VHD holds.
pub const MAX_SIZE: u64 = 2040 << 30;

/// Checks that `size` can be a VHD's virtual size, up to `max` (MAX_SIZE by the
/// specification; Azure takes more).
pub fn check_size(size: u64, max: u64) -> Result<()> {
    if size == 0 {
        return Err(Error::OutputLimit(
            "the disk is empty (0 bytes); a VHD cannot hold it".into(),
        ));
    }
    if size % 512 != 0 {
        return Err(Error::OutputLimit(format!(
            "virtual size {size} bytes is not a multiple of 512; a VHD cannot hold it"
        )));
    }
    if size > max {
        return Err(Error::OutputLimit(format!(
            "virtual size {size} bytes exceeds the VHD limit of {} GiB; use VHDX",
            max >> 30
        )));
    }
    Ok(())
}

fn new_unique_id() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

/// A fixed VHD: the disk's bytes, then the footer.
pub struct FixedVhdWriter {
    out: Output,
    size: u64,
}

impl FixedVhdWriter {
    /// `size` must have passed `check_size`.
    pub fn new(out: Output, size: u64) -> Self {
        FixedVhdWriter { out, size }
    }
}

impl ImageWriter for FixedVhdWriter {
    fn place(&mut self, offset: u64, len: u64, out: &mut Vec<(u64, u64)>) -> Result<()> {
        out.push((offset, len));
        Ok(())
    }

    fn output(&self) -> &Output {
        &self.out
    }

    fn finish(self: Box<Self>) -> Result<Output> {
        // set_len first so zero tails are holes, then the footer right after the data.
        self.out.set_len(self.size)?;
        let footer = Footer::new(self.size, DISK_FIXED, NO_DATA_OFFSET, new_unique_id());
        self.out.write_at(footer.as_bytes(), self.size)?;
        Ok(self.out)
    }
}

/// A dynamic VHD: footer copy, header, BAT, allocated blocks, footer.
pub struct DynamicVhdWriter {
    out: Output,
    size: u64,
    block_size: u64,
    bat: Vec<u32>,
    bitmap: Vec<u8>,
    /// First free byte after the blocks written so far.
    free: u64,
}

impl DynamicVhdWriter {
    /// `size` must have passed `check_size`.
    pub fn new(out: Output, size: u64, block_size: u64) -> Result<Self> {
        if !block_size.is_power_of_two() || !(512 << 10..=256 << 20).contains(&block_size) {
            return Err(Error::Usage(format!(
                "VHD block size {block_size} is not a power of two from 512 KiB to 256 MiB"
            )));
        }
        let entries = bat_entries(size, block_size);
        Ok(DynamicVhdWriter {
            out,
            size,
            block_size,
            bat: vec![UNALLOCATED; entries as usize],
            bitmap: vec![0xFF; bitmap_bytes(block_size) as usize],
            free: BAT_OFFSET + bat_bytes(entries),
        })
    }

    /// File offset of block `index`'s data, allocating the block (bitmap first, data on a
    /// 4 KiB boundary) after the last one on its first write.
    fn block_data_offset(&mut self, index: u64) -> Result<u64> {
        let bitmap_len = self.bitmap.len() as u64;
        let entry = self.bat[index as usize];
        if entry != UNALLOCATED {
            return Ok(u64::from(entry) * 512 + bitmap_len);
        }
        let at = block_position(self.free, self.block_size);
        let bat_entry = u32::try_from(at / 512).map_err(|_| {
            Error::OutputLimit(format!(
                "block {index} would start past the 2 TiB reach of a VHD BAT entry"
            ))
        })?;
        self.fill_bitmap(index);
        self.out.write_at(&self.bitmap, at)?;
        self.bat[index as usize] = bat_entry;
        self.free = at + bitmap_len + self.block_size;
        Ok(at + bitmap_len)
    }

    /// The sector bitmap of block `index`: every sector inside the disk is present.
    fn fill_bitmap(&mut self, index: u64) {
        let start = index * self.block_size;
        let sectors = ((self.size - start).min(self.block_size) / 512) as usize;
        let full = sectors / 8;
        self.bitmap.fill(0);
        self.bitmap[..full].fill(0xFF);
        if sectors % 8 != 0 {
            self.bitmap[full] = 0xFFu8 << (8 - sectors % 8);
        }
    }
}

impl ImageWriter for DynamicVhdWriter {
    fn place(&mut self, offset: u64, len: u64, out: &mut Vec<(u64, u64)>) -> Result<()> {
        for_each_block(offset, len, self.block_size, |block, within, n| {
            out.push((self.block_data_offset(block)? + within, n));
            Ok(())
        })
    }

    fn output(&self) -> &Output {
        &self.out
    }

    fn finish(self: Box<Self>) -> Result<Output> {
        let mut bat = vec![0xFFu8; bat_bytes(self.bat.len() as u64) as usize];
        for (slot, entry) in bat.chunks_exact_mut(4).zip(&self.bat) {
            slot.copy_from_slice(&entry.to_be_bytes());
        }
        self.out.write_at(&bat, BAT_OFFSET)?;
        let header = DynamicHeader::new(self.block_size as u32, self.bat.len() as u32);
        self.out.write_at(header.as_bytes(), HEADER_OFFSET)?;
        let footer = Footer::new(
            self.size,
            DISK_DYNAMIC,
            dynamic::HEADER_OFFSET,
            new_unique_id(),
        );
        self.out.write_at(footer.as_bytes(), 0)?;
        self.out.set_len(self.free)?;
        self.out.write_at(footer.as_bytes(), self.free)?;
        Ok(self.out)
    }
}

//! Writing fixed and dynamic VHD files.

use zerocopy::IntoBytes;

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::sink::{ImageWriter, Sink, TableWriter, for_each_block};
use crate::vhd::dynamic::{
    self, BAT_OFFSET, DynamicHeader, HEADER_OFFSET, UNALLOCATED, bat_bytes, bat_entries,
    bitmap_bytes, block_position,
};
use crate::vhd::footer::{DISK_DYNAMIC, DISK_FIXED, Footer, NO_DATA_OFFSET};

/// The largest disk a VHD holds.
pub const MAX_SIZE: u64 = 2040 << 30;

/// Checks that `size` can be a VHD's virtual size, up to `max` (MAX_SIZE by the
/// specification; Azure takes more).
pub fn check_size(size: u64, max: u64) -> Result<()> {
    if size == 0 {
        return Err(Error::output_limit(
            "the disk is empty (0 bytes); a VHD cannot hold it",
        ));
    }
    if size % 512 != 0 {
        return Err(Error::output_limit(format!(
            "virtual size {size} bytes is not a multiple of 512; a VHD cannot hold it"
        )));
    }
    if size > max {
        return Err(Error::output_limit(format!(
            "virtual size {size} bytes exceeds the VHD limit of {} GiB; use VHDX",
            max >> 30
        )));
    }
    Ok(())
}

/// A fixed VHD: the disk's bytes, then the footer.
pub struct FixedVhdWriter<S: Sink> {
    out: S,
    size: u64,
}

impl<S: Sink> FixedVhdWriter<S> {
    /// `size` must have passed `check_size`.
    pub fn new(out: S, size: u64) -> Self {
        FixedVhdWriter { out, size }
    }
}

impl<S: Sink> ImageWriter for FixedVhdWriter<S> {
    fn place(&mut self, offset: u64, len: u64, out: &mut Vec<(u64, u64)>) -> Result<()> {
        out.push((offset, len));
        Ok(())
    }

    fn sink(&self) -> &dyn Sink {
        &self.out
    }

    fn finish(self: Box<Self>, identity: Identity) -> Result<()> {
        // set_len first so zero tails are holes, then the footer right after the data.
        self.out.set_len(self.size)?;
        let footer = Footer::new(self.size, DISK_FIXED, NO_DATA_OFFSET, identity);
        self.out.write_at(footer.as_bytes(), self.size)
    }
}

/// A dynamic VHD: footer copy, header, BAT, allocated blocks, footer.
pub struct DynamicVhdWriter<S: Sink> {
    out: S,
    size: u64,
    block_size: u64,
    entries: u64,
    /// The BAT, written into the file a window at a time as blocks are allocated.
    bat: TableWriter,
    bitmap: Vec<u8>,
    /// First free byte after the blocks written so far.
    free: u64,
}

/// Smallest and largest block sizes vdconv writes in a VHD.
pub const MIN_BLOCK_SIZE: u64 = 512 << 10;
pub const MAX_BLOCK_SIZE: u64 = 256 << 20;

impl<S: Sink> DynamicVhdWriter<S> {
    /// `size` must have passed `check_size` and `block_size` be a power of two from
    /// MIN_BLOCK_SIZE to MAX_BLOCK_SIZE (the plan validates both).
    pub fn new(out: S, size: u64, block_size: u64) -> Self {
        let entries = bat_entries(size, block_size);
        DynamicVhdWriter {
            out,
            size,
            block_size,
            entries,
            bat: TableWriter::new(BAT_OFFSET, entries, UNALLOCATED.to_be_bytes().to_vec()),
            bitmap: vec![0xFF; bitmap_bytes(block_size) as usize],
            free: BAT_OFFSET + bat_bytes(entries),
        }
    }

    /// File offset of block `index`'s data, allocating the block (bitmap first, data on a
    /// 4 KiB boundary) after the last one on its first write.
    fn block_data_offset(&mut self, index: u64) -> Result<u64> {
        let bitmap_len = self.bitmap.len() as u64;
        let entry = self.bat.get(&self.out, index)?;
        let entry = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
        if entry != UNALLOCATED {
            return Ok(u64::from(entry) * 512 + bitmap_len);
        }
        let at = block_position(self.free, self.block_size);
        let bat_entry = u32::try_from(at / 512).map_err(|_| {
            Error::output_limit(format!(
                "block {index} would start past the 2 TiB reach of a VHD BAT entry"
            ))
        })?;
        self.fill_bitmap(index);
        self.out.write_at(&self.bitmap, at)?;
        self.bat.set(&self.out, index, &bat_entry.to_be_bytes())?;
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

impl<S: Sink> ImageWriter for DynamicVhdWriter<S> {
    fn place(&mut self, offset: u64, len: u64, out: &mut Vec<(u64, u64)>) -> Result<()> {
        for_each_block(offset, len, self.block_size, |block, within, n| {
            out.push((self.block_data_offset(block)? + within, n));
            Ok(())
        })
    }

    fn sink(&self) -> &dyn Sink {
        &self.out
    }

    fn finish(self: Box<Self>, identity: Identity) -> Result<()> {
        let this = *self;
        this.bat.finish(&this.out)?;
        // The BAT's padding to a whole sector reads as unallocated entries too.
        let table_end = BAT_OFFSET + this.entries * 4;
        let padding = (BAT_OFFSET + bat_bytes(this.entries) - table_end) as usize;
        this.out.write_at(&vec![0xFF; padding], table_end)?;
        let header = DynamicHeader::new(this.block_size as u32, this.entries as u32);
        this.out.write_at(header.as_bytes(), HEADER_OFFSET)?;
        let footer = Footer::new(this.size, DISK_DYNAMIC, dynamic::HEADER_OFFSET, identity);
        this.out.write_at(footer.as_bytes(), 0)?;
        this.out.set_len(this.free)?;
        this.out.write_at(footer.as_bytes(), this.free)
    }
}

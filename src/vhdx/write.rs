//! Writing fixed and dynamic VHDX files that pass Windows-grade validation: two valid
//! headers, identical region tables with Required set, an empty log, the five required
//! metadata items with their flags, 1 MiB alignment, every present block inside the file.

use zerocopy::{FromZeros, IntoBytes};

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::sink::{ImageWriter, Sink, TableWriter, for_each_block};
use crate::vhdx::bat::{self, BatLayout};
use crate::vhdx::format::*;

pub const DEFAULT_BLOCK_SIZE: u64 = 32 * MIB;
pub const MIN_BLOCK_SIZE: u64 = MIB;
pub const MAX_BLOCK_SIZE: u64 = 256 * MIB;
pub const DEFAULT_PHYSICAL_SECTOR: u32 = 4096;

/// Shape of the VHDX to write.
#[derive(Debug, Clone, Copy)]
pub struct VhdxParams {
    pub size: u64,
    pub block_size: u64,
    pub logical_sector: u32,
    pub physical_sector: u32,
    pub fixed: bool,
}

impl VhdxParams {
    pub fn validate(&self) -> Result<()> {
        if !self.block_size.is_power_of_two() || !(MIB..=256 * MIB).contains(&self.block_size) {
            return Err(Error::usage(
                Some("--block-size"),
                format!(
                    "VHDX block size {} is not a power of two from 1 MiB to 256 MiB",
                    self.block_size
                ),
            ));
        }
        for (option, v) in [
            ("--logical-sector", self.logical_sector),
            ("--physical-sector", self.physical_sector),
        ] {
            if v != 512 && v != 4096 {
                return Err(Error::usage(
                    Some(option),
                    format!("sector size {v} is not 512 or 4096"),
                ));
            }
        }
        if self.size == 0 {
            return Err(Error::output_limit(
                "the disk is empty (0 bytes); a VHDX cannot hold it",
            ));
        }
        if self.size % u64::from(self.logical_sector) != 0 {
            return Err(Error::output_limit(format!(
                "virtual size {} bytes is not a multiple of the {}-byte logical sector; use --logical-sector 512",
                self.size, self.logical_sector
            )));
        }
        if self.size > MAX_SIZE {
            return Err(Error::output_limit(format!(
                "virtual size {} bytes exceeds the VHDX limit of 64 TiB",
                self.size
            )));
        }
        Ok(())
    }
}

pub struct VhdxWriter<S: Sink> {
    out: S,
    params: VhdxParams,
    layout: BatLayout,
    /// The BAT, written into the file a window at a time (dynamic images).
    bat: TableWriter,
    /// Where the data area starts (after the BAT region).
    data_start: u64,
    /// Next free block position (dynamic).
    free: u64,
}

impl<S: Sink> VhdxWriter<S> {
    /// `params` must have passed `validate`.
    pub fn new(out: S, params: VhdxParams) -> Self {
        let layout = BatLayout::new(
            params.size,
            params.block_size,
            u64::from(params.logical_sector),
        );
        let data_start = BAT_OFFSET + layout.region_bytes();
        VhdxWriter {
            out,
            params,
            layout,
            bat: TableWriter::new(BAT_OFFSET, layout.total_entries(), vec![0; 8]),
            data_start,
            free: data_start,
        }
    }

    fn write_metadata(&self, identity: &Identity) -> Result<()> {
        let flags = if self.params.fixed {
            LEAVE_BLOCK_ALLOCATED
        } else {
            0
        };
        let items = disk_metadata(&self.params, flags, identity.uuid("vhdx page 83"));
        write_metadata_region(&self.out, &items)
    }

    /// A fixed image's BAT: every payload block fully present at its place in one
    /// contiguous data area, computed and written a window at a time.
    fn write_fixed_bat(&mut self) -> Result<()> {
        for block in 0..self.layout.payload_blocks {
            let at = self.data_start + block * self.params.block_size;
            let entry = bat::encode(bat::FULLY_PRESENT, at);
            self.bat.set(
                &self.out,
                self.layout.payload_index(block),
                &entry.to_le_bytes(),
            )?;
        }
        Ok(())
    }

    /// File offset of payload block `block`, allocating it at the end when dynamic.
    fn block_offset(&mut self, block: u64) -> Result<u64> {
        if self.params.fixed {
            return Ok(self.data_start + block * self.params.block_size);
        }
        let slot = self.layout.payload_index(block);
        let entry = self.bat.get(&self.out, slot)?;
        let (state, offset, _) = bat::decode(u64::from_le_bytes(
            entry.try_into().expect("8-byte BAT entries"),
        ));
        if state == bat::FULLY_PRESENT {
            return Ok(offset);
        }
        let at = self.free;
        self.free += self.params.block_size;
        let entry = bat::encode(bat::FULLY_PRESENT, at);
        self.bat.set(&self.out, slot, &entry.to_le_bytes())?;
        Ok(at)
    }
}

impl<S: Sink> ImageWriter for VhdxWriter<S> {
    fn place(&mut self, offset: u64, len: u64, out: &mut Vec<(u64, u64)>) -> Result<()> {
        for_each_block(offset, len, self.params.block_size, |block, within, n| {
            out.push((self.block_offset(block)? + within, n));
            Ok(())
        })
    }

    fn sink(&self) -> &dyn Sink {
        &self.out
    }

    fn finish(self: Box<Self>, identity: Identity) -> Result<()> {
        let mut this = *self;
        write_file_identifier(&this.out)?;
        write_headers(&this.out, &identity)?;
        write_region_tables(&this.out, this.layout.region_bytes())?;
        // The log stays zeros (a hole): LogGuid zero says there is nothing to replay.
        this.write_metadata(&identity)?;
        if this.params.fixed {
            this.write_fixed_bat()?;
        }
        let end = if this.params.fixed {
            this.data_start + this.layout.payload_blocks * this.params.block_size
        } else {
            this.free
        };
        this.bat.finish(&this.out)?;
        // Every present block lies wholly inside the file, the last one included.
        this.out.set_len(end)
    }
}

/// The file identifier: signature and creator, in the first 64 KiB.
pub(crate) fn write_file_identifier(out: &dyn Sink) -> Result<()> {
    let mut id = vec![0u8; 64 * 1024];
    id[..8].copy_from_slice(FILE_SIGNATURE);
    let creator = format!("vdconv {}", env!("CARGO_PKG_VERSION"));
    for (i, unit) in creator.encode_utf16().take(255).enumerate() {
        id[8 + i * 2..10 + i * 2].copy_from_slice(&unit.to_le_bytes());
    }
    out.write_at(&id, 0)
}

/// Both headers, with `identity`'s FileWriteGuid and DataWriteGuid and an empty log.
pub(crate) fn write_headers(out: &dyn Sink, identity: &Identity) -> Result<()> {
    let file_write = identity.uuid("vhdx file write guid");
    let data_write = identity.uuid("vhdx data write guid");
    // Two valid headers with different sequence numbers: the second is current.
    for (seq, at) in [(0, HEADER1_OFFSET), (1, HEADER2_OFFSET)] {
        let h = Header::new(seq, file_write, data_write);
        out.write_at(h.as_bytes(), at)?;
    }
    Ok(())
}

/// Both region tables: the BAT (`bat_bytes` long) and the metadata, at vdconv's places.
pub(crate) fn write_region_tables(out: &dyn Sink, bat_bytes: u64) -> Result<()> {
    let mut table = vec![0u8; REGION_TABLE_SIZE];
    let mut head = RegionTableHeader::new_zeroed();
    head.signature = *REGION_SIGNATURE;
    head.entry_count.set(2);
    table[..16].copy_from_slice(head.as_bytes());
    let entries = [
        (BAT_REGION, BAT_OFFSET, bat_bytes as u32),
        (METADATA_REGION, METADATA_OFFSET, METADATA_LENGTH),
    ];
    for (i, (guid, offset, length)) in entries.into_iter().enumerate() {
        let mut e = RegionEntry::new_zeroed();
        e.guid = guid;
        e.file_offset.set(offset);
        e.length.set(length);
        e.required.set(1);
        table[16 + i * 32..48 + i * 32].copy_from_slice(e.as_bytes());
    }
    seal(&mut table);
    out.write_at(&table, REGION1_OFFSET)?;
    out.write_at(&table, REGION2_OFFSET)
}

/// The metadata region: the table, then each item (id, bytes, flags) after it in order.
/// The metadata items every VHDX carries (file parameters with `flags`, the disk's size,
/// its page 83 identifier and sector sizes), in the order Hyper-V writes them.
pub(crate) fn disk_metadata(
    p: &VhdxParams,
    flags: u32,
    page83: [u8; 16],
) -> Vec<([u8; 16], Vec<u8>, u32)> {
    let mut file_params = (p.block_size as u32).to_le_bytes().to_vec();
    file_params.extend_from_slice(&flags.to_le_bytes());
    let vd = META_IS_VIRTUAL_DISK | META_IS_REQUIRED;
    vec![
        (FILE_PARAMETERS, file_params, META_IS_REQUIRED),
        (VIRTUAL_DISK_SIZE, p.size.to_le_bytes().to_vec(), vd),
        (PAGE_83_DATA, page83.to_vec(), vd),
        (
            LOGICAL_SECTOR_SIZE,
            p.logical_sector.to_le_bytes().to_vec(),
            vd,
        ),
        (
            PHYSICAL_SECTOR_SIZE,
            p.physical_sector.to_le_bytes().to_vec(),
            vd,
        ),
    ]
}

pub(crate) fn write_metadata_region(
    out: &dyn Sink,
    items: &[([u8; 16], Vec<u8>, u32)],
) -> Result<()> {
    let bytes: usize = items.iter().map(|i| i.1.len()).sum();
    let mut region = vec![0u8; METADATA_TABLE_SIZE + bytes.next_multiple_of(4096)];
    let mut head = MetadataTableHeader::new_zeroed();
    head.signature = *METADATA_SIGNATURE;
    head.entry_count.set(items.len() as u16);
    region[..32].copy_from_slice(head.as_bytes());
    let mut offset = METADATA_TABLE_SIZE;
    for (i, (id, data, flags)) in items.iter().enumerate() {
        let mut e = MetadataEntry::new_zeroed();
        e.item_id = *id;
        e.offset.set(offset as u32);
        e.length.set(data.len() as u32);
        e.flags.set(*flags);
        region[32 + i * 32..64 + i * 32].copy_from_slice(e.as_bytes());
        region[offset..offset + data.len()].copy_from_slice(data);
        offset += data.len();
    }
    out.write_at(&region, METADATA_OFFSET)
}

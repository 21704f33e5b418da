//! Reading fixed and dynamic VHDX files. Images whose log must be replayed and
//! differencing images are recognised and refused.

use std::path::{Path, PathBuf};

use zerocopy::FromBytes;

use crate::cancel::Cancel;
use crate::disk::info::{ExtentInfo, ImageInfo, VhdxDetails};
use crate::disk::table::{Entry, Table};
use crate::disk::{Disk, InputFile, Run, RunKind, push_run};
use crate::error::{Error, Result};
use crate::rules;
use crate::vhdx::bat::{self, BatLayout, BlockFit};
use crate::vhdx::format::*;

/// What the headers, region table and metadata say.
#[derive(Debug, Clone)]
pub struct VhdxMeta {
    pub header_offset: u64,
    pub log_offset: u64,
    pub log_length: u64,
    pub sequence_number: u64,
    pub bat_offset: u64,
    pub bat_length: u64,
    pub metadata_offset: u64,
    pub metadata_length: u64,
    pub block_size: u64,
    pub leave_block_allocated: bool,
    pub virtual_size: u64,
    pub logical_sector: u32,
    pub physical_sector: u32,
}

pub struct VhdxDisk {
    file: InputFile,
    meta: VhdxMeta,
    layout: BatLayout,
    bat: Table,
    warnings: Vec<String>,
}

/// Reads the current header: the valid one with the larger sequence number.
pub fn current_header(file: &InputFile) -> Result<(u64, Header)> {
    let mut best: Option<(u64, Header)> = None;
    let mut first_error = None;
    for at in [HEADER1_OFFSET, HEADER2_OFFSET] {
        let mut bytes = vec![0u8; HEADER_SIZE];
        if let Err(e) = file.read_exact_at(&mut bytes, at, "VHDX header") {
            first_error.get_or_insert(e);
            continue;
        }
        let h = Header::read_from_bytes(&bytes).expect("4 KiB");
        let valid = &h.signature == HEADER_SIGNATURE
            && checksum_with_field_zeroed(&bytes, 4) == h.checksum.get();
        if !valid {
            first_error.get_or_insert(Error::corrupt(
                file.path(),
                "VHDX header",
                at,
                "signature or CRC-32C checksum is wrong",
            ));
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(_, b)| h.sequence_number.get() > b.sequence_number.get())
        {
            best = Some((at, h));
        }
    }
    best.ok_or_else(|| first_error.expect("an error for each header"))
}

/// Reads and checks a region table, returning (offset, length) of the BAT and metadata.
fn read_regions(file: &InputFile) -> Result<((u64, u64), (u64, u64))> {
    let mut last = None;
    for at in [REGION1_OFFSET, REGION2_OFFSET] {
        match read_region_table(file, at) {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("two attempts"))
}

fn read_region_table(file: &InputFile, at: u64) -> Result<((u64, u64), (u64, u64))> {
    let bad = |detail: String| Error::corrupt(file.path(), "VHDX region table", at, detail);
    let mut bytes = vec![0u8; REGION_TABLE_SIZE];
    file.read_exact_at(&mut bytes, at, "VHDX region table")?;
    let head = RegionTableHeader::read_from_bytes(&bytes[..16]).expect("16 bytes");
    if &head.signature != REGION_SIGNATURE {
        return Err(bad("signature is not 'regi'".into()));
    }
    if checksum_with_field_zeroed(&bytes, 4) != head.checksum.get() {
        return Err(bad("CRC-32C checksum is wrong".into()));
    }
    let count = head.entry_count.get();
    if count > MAX_REGION_ENTRIES {
        return Err(bad(format!(
            "{count} entries (at most {MAX_REGION_ENTRIES})"
        )));
    }
    let (mut bat, mut metadata) = (None, None);
    for i in 0..count as usize {
        let e = RegionEntry::read_from_bytes(&bytes[16 + i * 32..48 + i * 32]).expect("32 bytes");
        let place = (e.file_offset.get(), u64::from(e.length.get()));
        if e.guid == BAT_REGION {
            bat = Some(place);
        } else if e.guid == METADATA_REGION {
            metadata = Some(place);
        } else if e.required.get() & 1 != 0 {
            return Err(Error::unsupported(
                file.path(),
                format!(
                    "VHDX region table at offset {at}: unknown required region {}",
                    guid_string(&e.guid)
                ),
            ));
        }
    }
    match (bat, metadata) {
        (Some(b), Some(m)) => Ok((b, m)),
        _ => Err(bad("BAT or metadata region missing".into())),
    }
}

/// Reads the metadata items this reader needs, refusing unknown required ones.
fn read_metadata(file: &InputFile, offset: u64, length: u64) -> Result<(u32, u32, u64, u32, u32)> {
    let bad = |at: u64, detail: String| Error::corrupt(file.path(), "VHDX metadata", at, detail);
    if length < METADATA_TABLE_SIZE as u64 {
        return Err(bad(
            offset,
            format!("region of {length} bytes cannot hold the 64 KiB table"),
        ));
    }
    let mut table = vec![0u8; METADATA_TABLE_SIZE];
    file.read_exact_at(&mut table, offset, "VHDX metadata table")?;
    let head = MetadataTableHeader::read_from_bytes(&table[..32]).expect("32 bytes");
    if &head.signature != METADATA_SIGNATURE {
        return Err(bad(offset, "signature is not 'metadata'".into()));
    }
    let count = head.entry_count.get();
    if count > MAX_METADATA_ENTRIES {
        return Err(bad(
            offset,
            format!("{count} entries (at most {MAX_METADATA_ENTRIES})"),
        ));
    }
    let mut items: [Option<Vec<u8>>; 5] = Default::default();
    let ids = [
        FILE_PARAMETERS,
        VIRTUAL_DISK_SIZE,
        LOGICAL_SECTOR_SIZE,
        PHYSICAL_SECTOR_SIZE,
        PAGE_83_DATA,
    ];
    let sizes = [8usize, 8, 4, 4, 16];
    for i in 0..count as usize {
        let e = MetadataEntry::read_from_bytes(&table[32 + i * 32..64 + i * 32]).expect("32 bytes");
        let entry_at = offset + 32 + i as u64 * 32;
        let Some(k) = ids.iter().position(|id| *id == e.item_id) else {
            if e.flags.get() & META_IS_REQUIRED != 0 {
                let what = if e.item_id == PARENT_LOCATOR {
                    "a parent locator (this is a differencing image)".to_string()
                } else {
                    format!("unknown required item {}", guid_string(&e.item_id))
                };
                return Err(Error::unsupported(
                    file.path(),
                    format!("VHDX metadata entry at offset {entry_at}: {what}"),
                ));
            }
            continue;
        };
        let (item_off, item_len) = (u64::from(e.offset.get()), e.length.get() as usize);
        if item_len != sizes[k]
            || item_off < METADATA_TABLE_SIZE as u64
            || item_off + item_len as u64 > length
        {
            return Err(bad(
                entry_at,
                format!(
                    "item {} has offset {item_off} and length {item_len}",
                    guid_string(&e.item_id)
                ),
            ));
        }
        let mut data = vec![0u8; item_len];
        file.read_exact_at(&mut data, offset + item_off, "VHDX metadata item")?;
        items[k] = Some(data);
    }
    let u32_at = |d: &Vec<u8>, i: usize| u32::from_le_bytes(d[i..i + 4].try_into().unwrap());
    let missing = |name: &str| bad(offset, format!("required item {name} is missing"));
    let params = items[0]
        .as_ref()
        .ok_or_else(|| missing("File Parameters"))?;
    let size = items[1]
        .as_ref()
        .ok_or_else(|| missing("Virtual Disk Size"))?;
    let logical = items[2]
        .as_ref()
        .ok_or_else(|| missing("Logical Sector Size"))?;
    let physical = items[3]
        .as_ref()
        .ok_or_else(|| missing("Physical Sector Size"))?;
    Ok((
        u32_at(params, 0),
        u32_at(params, 4),
        u64::from_le_bytes(size[..8].try_into().unwrap()),
        u32_at(logical, 0),
        u32_at(physical, 0),
    ))
}

/// Parses everything but the BAT entries, checking what reading depends on.
pub fn read_meta(file: &InputFile) -> Result<VhdxMeta> {
    let mut sig = [0u8; 8];
    file.read_exact_at(&mut sig, 0, "VHDX file identifier")?;
    if &sig != FILE_SIGNATURE {
        return Err(Error::corrupt(
            file.path(),
            "VHDX file identifier",
            0,
            "signature is not 'vhdxfile'",
        ));
    }
    let (header_offset, header) = current_header(file)?;
    if header.log_guid != [0u8; 16] {
        return Err(Error::unsupported(
            file.path(),
            format!(
                "VHDX header at offset {header_offset}: the log (LogGuid {}) must be replayed first; attach the disk once in Windows or Hyper-V, or run `qemu-img check -r all` on a copy",
                guid_string(&header.log_guid)
            ),
        ));
    }
    let ((bat_offset, bat_length), (metadata_offset, metadata_length)) = read_regions(file)?;
    let (block_size, flags, virtual_size, logical, physical) =
        read_metadata(file, metadata_offset, metadata_length)?;
    let bad =
        |detail: String| Error::corrupt(file.path(), "VHDX metadata", metadata_offset, detail);
    let block_size = u64::from(block_size);
    if !block_size.is_power_of_two() || !(MIB..=256 * MIB).contains(&block_size) {
        return Err(bad(format!(
            "block size {block_size} is not a power of two from 1 MiB to 256 MiB"
        )));
    }
    if logical != 512 && logical != 4096 {
        return Err(bad(format!(
            "logical sector size {logical} is not 512 or 4096"
        )));
    }
    if virtual_size == 0 || virtual_size % u64::from(logical) != 0 || virtual_size > MAX_SIZE {
        return Err(bad(format!(
            "virtual disk size {virtual_size} is zero, not a multiple of the {logical}-byte sector, or above 64 TiB"
        )));
    }
    if flags & HAS_PARENT != 0 {
        return Err(Error::unsupported(
            file.path(),
            "is a differencing VHDX; differencing images are not supported yet",
        ));
    }
    Ok(VhdxMeta {
        header_offset,
        log_offset: header.log_offset.get(),
        log_length: u64::from(header.log_length.get()),
        sequence_number: header.sequence_number.get(),
        bat_offset,
        bat_length,
        metadata_offset,
        metadata_length,
        block_size,
        leave_block_allocated: flags & LEAVE_BLOCK_ALLOCATED != 0,
        virtual_size,
        logical_sector: logical,
        physical_sector: physical,
    })
}

impl VhdxMeta {
    /// (offset, length) of the log, BAT and metadata: no payload block may touch them.
    pub fn reserved_ranges(&self) -> [(u64, u64); 3] {
        [
            (self.log_offset, self.log_length),
            (self.bat_offset, self.bat_length),
            (self.metadata_offset, self.metadata_length),
        ]
    }
}

impl VhdxDisk {
    pub fn open(file: InputFile) -> Result<Self> {
        let meta = read_meta(&file)?;
        let layout = BatLayout::new(
            meta.virtual_size,
            meta.block_size,
            u64::from(meta.logical_sector),
        );
        let needed = layout.total_entries() * 8;
        if meta.bat_length < needed {
            return Err(Error::broken(
                file.path(),
                &rules::VHDX_BAT_REGION_TOO_SMALL,
                "VHDX BAT",
                meta.bat_offset,
                format!(
                    "{} entries do not fit the region of {} bytes",
                    layout.total_entries(),
                    meta.bat_length
                ),
            ));
        }
        // Entries are read a window at a time; the file must hold them all.
        let bat = Table::new(
            &file,
            meta.bat_offset,
            layout.total_entries(),
            Entry::U64Le,
            "VHDX BAT",
        )?;
        Ok(VhdxDisk {
            file,
            meta,
            layout,
            bat,
            warnings: Vec::new(),
        })
    }

    /// File offset of payload block `block`, or None when it reads as zeros.
    fn block(&mut self, block: u64) -> Result<Option<u64>> {
        let index = self.layout.payload_index(block);
        let entry = self.bat.get(&self.file, index)?;
        let (state, offset, _) = bat::decode(entry);
        let at = self.bat.entry_offset(index);
        match state {
            // Trimmed blocks (unmapped, undefined) may keep an offset: they read as zeros.
            bat::NOT_PRESENT | bat::UNDEFINED | bat::ZERO | bat::UNMAPPED => Ok(None),
            bat::FULLY_PRESENT => {
                let used = self.layout.used_bytes(block, self.meta.virtual_size);
                match bat::block_fit(
                    offset,
                    used,
                    self.meta.block_size,
                    self.file.len(),
                    &self.meta.reserved_ranges(),
                ) {
                    BlockFit::Inside | BlockFit::TailOutside => Ok(Some(offset)),
                    BlockFit::Outside => Err(Error::broken(
                        self.file.path(),
                        &rules::VHDX_BLOCK_BEYOND_EOF,
                        "VHDX BAT entry",
                        at,
                        format!(
                            "block {block} at file offset {offset} lies outside the file ({} bytes) or on its headers, log, BAT or metadata",
                            self.file.len()
                        ),
                    )),
                }
            }
            bat::PARTIALLY_PRESENT => Err(Error::broken(
                self.file.path(),
                &rules::VHDX_BAT_STATE,
                "VHDX BAT entry",
                at,
                format!(
                    "block {block} is partially present, which only differencing images may be"
                ),
            )),
            other => Err(Error::broken(
                self.file.path(),
                &rules::VHDX_BAT_STATE,
                "VHDX BAT entry",
                at,
                format!("block {block} has invalid state {other}"),
            )),
        }
    }
}

impl Disk for VhdxDisk {
    fn virtual_size(&self) -> u64 {
        self.meta.virtual_size
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    fn map_range(&mut self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
        let bs = self.meta.block_size;
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let block = pos / bs;
            let n = ((block + 1) * bs).min(end) - pos;
            let kind = if self.block(block)?.is_some() {
                RunKind::Data
            } else {
                RunKind::Zero
            };
            push_run(out, pos, n, kind);
            pos += n;
        }
        Ok(())
    }

    fn read_range(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let bs = self.meta.block_size;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let block = pos / bs;
            let within = pos % bs;
            let n = ((bs - within) as usize).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match self.block(block)? {
                Some(at) => self.file.read_exact_at(dst, at + within, "VHDX block")?,
                None => dst.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    fn describe(&mut self, cancel: &Cancel) -> Result<ImageInfo> {
        let allocated = crate::disk::allocated_bytes(self, cancel)?;
        let layout = if self.meta.leave_block_allocated {
            "fixed"
        } else {
            "dynamic"
        };
        Ok(ImageInfo {
            file: self.file.path().display().to_string(),
            format: "vhdx",
            layout: layout.to_string(),
            virtual_size: self.meta.virtual_size,
            allocated_bytes: allocated,
            extents: vec![ExtentInfo {
                access: "RW".into(),
                kind: layout.to_uppercase(),
                start: 0,
                size: self.meta.virtual_size,
                file: Some(self.file.path().display().to_string()),
                file_offset: 0,
            }],
            vmdk: None,
            vhd: None,
            vhdx: Some(VhdxDetails {
                block_size: self.meta.block_size,
                logical_sector_size: self.meta.logical_sector,
                physical_sector_size: self.meta.physical_sector,
                sequence_number: self.meta.sequence_number,
            }),
            warnings: self.warnings.clone(),
        })
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.file.path().to_path_buf()]
    }
}

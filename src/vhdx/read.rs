//! Reading fixed, dynamic and differencing VHDX files.
//!
//! A file whose header sets a LogGuid has its log replayed in memory first (MS-VHDX asks
//! that of read-only readers): the region tables, metadata, BAT and sector bitmaps are
//! read through the replay, and the file itself is never written. A differencing image
//! is a layer of a chain: blocks not present, and the sectors of partially present blocks
//! whose bit is clear in the sector bitmap, map as `Parent`.

use std::path::{Path, PathBuf};

use zerocopy::FromBytes;

use crate::cancel::Cancel;
use crate::disk::info::{ExtentInfo, ImageInfo, VhdxDetails};
use crate::disk::table::{Entry, Table};
use crate::disk::{Disk, InputFile, LinkId, ParentLink, ReadAt, Run, RunKind, push_run};
use crate::error::{Error, Result};
use crate::rules;
use crate::vhdx::bat::{self, BatLayout, BlockFit};
use crate::vhdx::format::*;
use crate::vhdx::locator::ParentLocator;
use crate::vhdx::log::LogOverlay;

/// The file as the reader sees it: its own bytes, or with its log replayed over them.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub file: &'a InputFile,
    pub overlay: Option<&'a LogOverlay>,
}

impl View<'_> {
    /// Bytes of the file (after replay, which may extend it).
    pub fn len(&self) -> u64 {
        self.overlay.map_or(self.file.len(), LogOverlay::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

impl ReadAt for View<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64, structure: &'static str) -> Result<()> {
        match self.overlay {
            Some(o)
                if o.touches(offset, buf.len() as u64)
                    || offset.saturating_add(buf.len() as u64) > self.file.len() =>
            {
                o.read_structure(self.file, offset, buf, structure)
            }
            _ => self.file.read_exact_at(buf, offset, structure),
        }
    }
}

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
    /// HasParent: a differencing image.
    pub has_parent: bool,
    /// The current header's DataWriteGuid (a child's parent_linkage names it).
    pub data_write_guid: [u8; 16],
    /// The Virtual Disk ID (page 83 data), when present.
    pub page83: Option<[u8; 16]>,
    /// The parent locator, for a differencing image.
    pub parent_locator: Option<ParentLocator>,
    /// Log entries replayed in memory (0 when LogGuid is zero).
    pub log_entries_replayed: usize,
}

pub struct VhdxDisk {
    file: InputFile,
    /// The log's replay, when the file had a log to replay.
    overlay: Option<LogOverlay>,
    meta: VhdxMeta,
    layout: BatLayout,
    bat: Table,
    /// The most recently read sector bitmap block and its chunk.
    bitmap: Option<(u64, Vec<u8>)>,
    /// Where the parent is, for a differencing image.
    parent: Option<ParentLink>,
    warnings: Vec<String>,
}

/// What a payload block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// Zeros (zero, unmapped, undefined; not present without a parent).
    Zero,
    /// Not present in a differencing image: the parent's.
    Parent,
    /// Every sector at this file offset.
    Full(u64),
    /// Sectors whose bitmap bit is set at this file offset, the others the parent's.
    Partial(u64),
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
fn read_regions(file: View) -> Result<((u64, u64), (u64, u64))> {
    let mut last = None;
    for at in [REGION1_OFFSET, REGION2_OFFSET] {
        match read_region_table(file, at) {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("two attempts"))
}

fn read_region_table(file: View, at: u64) -> Result<((u64, u64), (u64, u64))> {
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

/// The metadata items this reader needs.
struct Items {
    block_size: u32,
    flags: u32,
    virtual_size: u64,
    logical: u32,
    physical: u32,
    page83: Option<[u8; 16]>,
    parent_locator: Option<ParentLocator>,
}

/// Largest parent locator item read (MS-VHDX caps items at 1 MiB).
const MAX_LOCATOR_ITEM: usize = 1 << 20;

/// Reads the metadata items this reader needs, refusing unknown required ones.
fn read_metadata(file: View, offset: u64, length: u64) -> Result<Items> {
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
    let mut parent_locator = None;
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
        if e.item_id == PARENT_LOCATOR {
            let (item_off, item_len) = (u64::from(e.offset.get()), e.length.get() as usize);
            if item_len > MAX_LOCATOR_ITEM
                || item_off < METADATA_TABLE_SIZE as u64
                || item_off + item_len as u64 > length
            {
                return Err(Error::broken(
                    file.path(),
                    &rules::VHDX_PARENT_LOCATOR,
                    "VHDX metadata entry",
                    entry_at,
                    format!(
                        "parent locator at offset {item_off} length {item_len} lies outside the metadata region ({length} bytes)"
                    ),
                ));
            }
            let mut data = vec![0u8; item_len];
            file.read_exact_at(&mut data, offset + item_off, "VHDX parent locator")?;
            let locator = ParentLocator::parse(&data).map_err(|e| {
                Error::broken(
                    file.path(),
                    &rules::VHDX_PARENT_LOCATOR,
                    "VHDX parent locator",
                    offset + item_off + e.offset,
                    e.detail,
                )
            })?;
            parent_locator = Some((offset + item_off, locator));
            continue;
        }
        let Some(k) = ids.iter().position(|id| *id == e.item_id) else {
            if e.flags.get() & META_IS_REQUIRED != 0 {
                return Err(Error::unsupported(
                    file.path(),
                    format!(
                        "VHDX metadata entry at offset {entry_at}: unknown required item {}",
                        guid_string(&e.item_id)
                    ),
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
    let flags = u32_at(params, 4);
    let parent_locator = match parent_locator {
        Some((_, l)) if flags & HAS_PARENT != 0 => Some(l),
        Some(_) | None if flags & HAS_PARENT == 0 => None,
        _ => {
            return Err(Error::broken(
                file.path(),
                &rules::VHDX_PARENT_LOCATOR,
                "VHDX metadata",
                offset,
                "HasParent is set but there is no parent locator item",
            ));
        }
    };
    Ok(Items {
        block_size: u32_at(params, 0),
        flags,
        virtual_size: u64::from_le_bytes(size[..8].try_into().unwrap()),
        logical: u32_at(logical, 0),
        physical: u32_at(physical, 0),
        page83: items[4].as_ref().map(|d| d[..16].try_into().unwrap()),
        parent_locator,
    })
}

/// Parses everything but the BAT entries, checking what reading depends on (a pending
/// log is replayed in memory for it and dropped).
pub fn read_meta(file: &InputFile) -> Result<VhdxMeta> {
    read_meta_replayed(file).map(|(meta, _)| meta)
}

/// Parses everything but the BAT entries through the replay of the file's log, if it has
/// one to replay; returns the replay too, for reading the BAT and bitmaps.
pub fn read_meta_replayed(file: &InputFile) -> Result<(VhdxMeta, Option<LogOverlay>)> {
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
    let overlay = LogOverlay::replay(
        file,
        header.log_offset.get(),
        u64::from(header.log_length.get()),
        header.log_guid,
    )?;
    let view = View {
        file,
        overlay: overlay.as_ref(),
    };
    let ((bat_offset, bat_length), (metadata_offset, metadata_length)) = read_regions(view)?;
    let Items {
        block_size,
        flags,
        virtual_size,
        logical,
        physical,
        page83,
        parent_locator,
    } = read_metadata(view, metadata_offset, metadata_length)?;
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
    let meta = VhdxMeta {
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
        has_parent: flags & HAS_PARENT != 0,
        data_write_guid: header.data_write_guid,
        page83,
        parent_locator,
        log_entries_replayed: overlay.as_ref().map_or(0, LogOverlay::entries),
    };
    Ok((meta, overlay))
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
        let (meta, overlay) = read_meta_replayed(&file)?;
        let mut warnings = Vec::new();
        if let Some(o) = &overlay {
            warnings.push(format!(
                "{}: its log held {} entries not yet applied; replayed in memory (the file is left as it is)",
                file.path().display(),
                o.entries()
            ));
        }
        let layout = BatLayout::new(
            meta.virtual_size,
            meta.block_size,
            u64::from(meta.logical_sector),
        );
        let entries = layout.entries(meta.has_parent);
        if meta.bat_length < entries * 8 {
            return Err(Error::broken(
                file.path(),
                &rules::VHDX_BAT_REGION_TOO_SMALL,
                "VHDX BAT",
                meta.bat_offset,
                format!(
                    "{entries} entries do not fit the region of {} bytes",
                    meta.bat_length
                ),
            ));
        }
        // Entries are read a window at a time; the file (after replay) must hold them all.
        let len = overlay.as_ref().map_or(file.len(), LogOverlay::len);
        let bat = Table::within(
            file.path(),
            len,
            meta.bat_offset,
            entries,
            Entry::U64Le,
            "VHDX BAT",
        )?;
        let parent = match &meta.parent_locator {
            Some(l) => Some(parent_link(&file, meta.metadata_offset, l)?),
            None => None,
        };
        Ok(VhdxDisk {
            file,
            overlay,
            meta,
            layout,
            bat,
            bitmap: None,
            parent,
            warnings,
        })
    }

    fn view(&self) -> View<'_> {
        View {
            file: &self.file,
            overlay: self.overlay.as_ref(),
        }
    }

    /// What payload block `block` holds.
    fn block(&mut self, block: u64) -> Result<Block> {
        let index = self.layout.payload_index(block);
        let view = View {
            file: &self.file,
            overlay: self.overlay.as_ref(),
        };
        let entry = self.bat.get(&view, index)?;
        let (state, offset, _) = bat::decode(entry);
        let at = self.bat.entry_offset(index);
        let bad_state = |detail: String| {
            Error::broken(
                self.file.path(),
                &rules::VHDX_BAT_STATE,
                "VHDX BAT entry",
                at,
                detail,
            )
        };
        match state {
            bat::NOT_PRESENT if self.meta.has_parent => Ok(Block::Parent),
            // Trimmed blocks (unmapped, undefined) may keep an offset: they read as zeros.
            bat::NOT_PRESENT | bat::UNDEFINED | bat::ZERO | bat::UNMAPPED => Ok(Block::Zero),
            bat::FULLY_PRESENT | bat::PARTIALLY_PRESENT => {
                if state == bat::PARTIALLY_PRESENT && !self.meta.has_parent {
                    return Err(bad_state(format!(
                        "block {block} is partially present, which only differencing images may be"
                    )));
                }
                let used = self.layout.used_bytes(block, self.meta.virtual_size);
                let len = view.len();
                match bat::block_fit(
                    offset,
                    used,
                    self.meta.block_size,
                    len,
                    &self.meta.reserved_ranges(),
                ) {
                    BlockFit::Inside | BlockFit::TailOutside if state == bat::FULLY_PRESENT => {
                        Ok(Block::Full(offset))
                    }
                    BlockFit::Inside | BlockFit::TailOutside => Ok(Block::Partial(offset)),
                    BlockFit::Outside => Err(Error::broken(
                        self.file.path(),
                        &rules::VHDX_BLOCK_BEYOND_EOF,
                        "VHDX BAT entry",
                        at,
                        format!(
                            "block {block} at file offset {offset} lies outside the file ({len} bytes) or on its headers, log, BAT or metadata"
                        ),
                    )),
                }
            }
            other => Err(bad_state(format!(
                "block {block} has invalid state {other}"
            ))),
        }
    }

    /// The sector bitmap block of chunk `chunk` (1 MiB, one bit per logical sector of the
    /// chunk's blocks, LSB first), read through the log's replay.
    fn bitmap(&mut self, chunk: u64) -> Result<&[u8]> {
        if self.bitmap.as_ref().is_none_or(|(c, _)| *c != chunk) {
            let index = self.layout.bitmap_index(chunk);
            let view = View {
                file: &self.file,
                overlay: self.overlay.as_ref(),
            };
            let entry = self.bat.get(&view, index)?;
            let (state, offset, _) = bat::decode(entry);
            let at = self.bat.entry_offset(index);
            let inside =
                offset >= MIB && offset.checked_add(MIB).is_some_and(|end| end <= view.len());
            if state != bat::FULLY_PRESENT || !inside {
                return Err(Error::broken(
                    self.file.path(),
                    &rules::VHDX_BAT_BITMAP_STATE,
                    "VHDX BAT entry",
                    at,
                    format!(
                        "chunk {chunk} holds a partially present block, but its sector bitmap entry (state {state}, offset {offset}) is not a present block inside the file"
                    ),
                ));
            }
            let mut bytes = self.bitmap.take().map(|(_, b)| b).unwrap_or_default();
            bytes.resize(MIB as usize, 0);
            view.read_exact_at(&mut bytes, offset, "VHDX sector bitmap")?;
            self.bitmap = Some((chunk, bytes));
        }
        Ok(&self.bitmap.as_ref().expect("just read").1)
    }

    /// Calls `f(offset, len, present)` for the runs of `[pos, pos + n)` inside partially
    /// present block `block`: present sectors are in this file, the others the parent's.
    fn partial_runs(
        &mut self,
        block: u64,
        pos: u64,
        n: u64,
        mut f: impl FnMut(u64, u64, bool),
    ) -> Result<()> {
        let sector = u64::from(self.meta.logical_sector);
        let chunk = block / self.layout.chunk_ratio;
        let chunk_start = chunk * self.layout.chunk_ratio * self.meta.block_size;
        let map = self.bitmap(chunk)?;
        let end = pos + n;
        let mut at = pos;
        while at < end {
            let bit = (at - chunk_start) / sector;
            let byte = map[(bit / 8) as usize];
            let (present, upto) = if bit % 8 == 0 && (byte == 0 || byte == 0xFF) {
                (byte == 0xFF, at - (at - chunk_start) % sector + 8 * sector)
            } else {
                (
                    byte & (1 << (bit % 8)) != 0,
                    at - (at - chunk_start) % sector + sector,
                )
            };
            let upto = upto.min(end);
            f(at, upto - at, present);
            at = upto;
        }
        Ok(())
    }
}

/// How a differencing image names its parent: the locator's paths and linkage.
fn parent_link(file: &InputFile, metadata_offset: u64, l: &ParentLocator) -> Result<ParentLink> {
    let linkage = l.linkage().map_err(|e| {
        Error::broken(
            file.path(),
            &rules::VHDX_PARENT_LOCATOR,
            "VHDX parent locator",
            metadata_offset + e.offset,
            e.detail,
        )
    })?;
    let hints = l.hints();
    if hints.is_empty() {
        return Err(Error::broken(
            file.path(),
            &rules::VHDX_PARENT_LOCATOR,
            "VHDX parent locator",
            metadata_offset,
            "none of relative_path, volume_path and absolute_win32_path is present",
        ));
    }
    Ok(ParentLink {
        hints,
        expected: linkage.into_iter().map(LinkId::VhdxDataWrite).collect(),
        expected_key: "parent_linkage",
        format: "vhdx",
        same_size: false,
        rule: &rules::VHDX_PARENT_LOCATOR,
    })
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
            match self.block(block)? {
                Block::Full(_) => push_run(out, pos, n, RunKind::Data),
                Block::Zero => push_run(out, pos, n, RunKind::Zero),
                Block::Parent => push_run(out, pos, n, RunKind::Parent),
                Block::Partial(_) => self.partial_runs(block, pos, n, |at, len, present| {
                    let kind = if present {
                        RunKind::Data
                    } else {
                        RunKind::Parent
                    };
                    push_run(out, at, len, kind)
                })?,
            }
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
                // Payload is never logged, but a replay may extend the file past it.
                Block::Full(at) => self.view().read_exact_at(dst, at + within, "VHDX block")?,
                Block::Zero | Block::Parent => dst.fill(0),
                Block::Partial(at) => {
                    self.view().read_exact_at(dst, at + within, "VHDX block")?;
                    // Sectors the bitmap leaves to the parent read as zeros here; the
                    // chain fills them in.
                    self.partial_runs(block, pos, n as u64, |from, len, present| {
                        if !present {
                            let start = (from - pos) as usize;
                            dst[start..start + len as usize].fill(0);
                        }
                    })?;
                }
            }
            done += n;
        }
        Ok(())
    }

    fn describe(&mut self, cancel: &Cancel) -> Result<ImageInfo> {
        let allocated = crate::disk::allocated_bytes(self, cancel)?;
        let layout = if self.meta.has_parent {
            "differencing"
        } else if self.meta.leave_block_allocated {
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

    fn parent(&self) -> Option<&ParentLink> {
        self.parent.as_ref()
    }

    fn link_id(&self) -> Option<LinkId> {
        Some(LinkId::VhdxDataWrite(self.meta.data_write_guid))
    }
}

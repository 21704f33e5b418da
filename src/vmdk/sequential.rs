//! A streamOptimized VMDK read once, front to back: from a pipe, through a gzip decoder,
//! or across the chunks of an export. Nothing is seeked and memory does not grow with the
//! disk: the caller gets one compressed grain record at a time and places it by the
//! sector the record names.
//!
//! What a reader with random access sees is decided by the grain tables, which in the
//! ESXi/ovftool layout come after the grains they describe (and in the qemu layout before
//! them). So that one pass gives exactly what `SparseExtent` reads, every grain record is
//! folded into a checksum of (record position, grain number) pairs, and every grain table
//! entry into the same kind of checksum of (entry value, grain number) pairs once the
//! grain directory says which grains a table covers. The terms are keyed at random per
//! run, so the two sums agree only when every record is pointed at by exactly the table
//! entry for its own grain and every entry points at a record: a grain no table points at,
//! an entry pointing at no grain, a grain for the wrong place or a repeated one makes them
//! differ, and the stream is refused after the last record. Memory: one grain table at a
//! time, plus 24 bytes per table met before the directory that places it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::{Decompress, FlushDecompress, Status};

use crate::error::{Error, Result};
use crate::rules;
use crate::vmdk::descriptor::{Descriptor, ExtentType};
use crate::vmdk::header::{FLAG_MARKERS, GD_AT_END, SECTOR, SparseHeader};

/// Marker types.
const MARKER_EOS: u32 = 0;
const MARKER_GT: u32 = 1;
const MARKER_GD: u32 = 2;
const MARKER_FOOTER: u32 = 3;

/// Largest embedded descriptor read (2048 sectors), as the random-access reader.
const MAX_DESCRIPTOR_SECTORS: u64 = 2048;
/// At most this many directory entries wait for their table (8 bytes each): 2M tables
/// cover 64 TiB at the default grain size, the largest disk a VHDX holds (qemu's layout
/// places every table, empty or not, after the directory).
pub const MAX_PENDING_TABLES: usize = 1 << 21;
/// At most this many tables wait for the directory that places them (the footer layout,
/// where only tables holding grains are written): 1M tables cover 32 TiB of grains.
/// About 40 bytes each.
pub const MAX_UNPLACED_TABLES: usize = 1 << 20;

/// One compressed grain as it passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrainRecord {
    /// Byte offset on the virtual disk where the grain goes.
    pub offset: u64,
    /// Bytes of the disk it covers: a grain, or less for the disk's last grain.
    pub len: usize,
    /// Byte offset of the record in the VMDK (for messages).
    pub record: u64,
}

/// How much is read from the source at a time: records are read a sector, then a grain,
/// at a time, which from a pipe would be a system call each.
const READ_AHEAD: usize = 256 << 10;

/// A streamOptimized VMDK being read front to back.
pub struct SequentialVmdk<R> {
    src: BufReader<R>,
    path: PathBuf,
    /// Bytes consumed so far.
    pos: u64,
    header: SparseHeader,
    descriptor: Option<Descriptor>,
    size: u64,
    warnings: Vec<String>,
    check: TableCheck,
    /// Where the primary grain directory is, when the header says (the qemu and Workstation
    /// layout); None when the footer will (GD_AT_END).
    gd_sector: Option<u64>,
    /// The footer layout's directory, once its marker passed: its data sector.
    gd_seen: Option<u64>,
    footer_seen: bool,
    done: bool,
    sector: Vec<u8>,
}

impl<R: Read> SequentialVmdk<R> {
    /// Reads the header, the embedded descriptor and, in the tables-first layout, the
    /// grain directory and tables, up to the first grain. `path` names the disk in errors.
    pub fn open(src: R, path: &Path) -> Result<Self> {
        let mut s = SequentialVmdk {
            src: BufReader::with_capacity(READ_AHEAD, src),
            path: path.to_path_buf(),
            pos: 0,
            header: placeholder_header(),
            descriptor: None,
            size: 0,
            warnings: Vec::new(),
            check: TableCheck::new(),
            gd_sector: None,
            gd_seen: None,
            footer_seen: false,
            done: false,
            sector: vec![0u8; SECTOR as usize],
        };
        let mut bytes = [0u8; 512];
        s.read_exact(&mut bytes, "sparse header")?;
        let header = SparseHeader::parse(&bytes, path, 0)?;
        if !header.compressed() || header.flags & FLAG_MARKERS == 0 {
            return Err(Error::unsupported(
                path,
                "is a sparse VMDK without compressed grains and markers, not streamOptimized; only streamOptimized disks can be read front to back (from a pipe, or stored compressed or in chunks)",
            ));
        }
        s.check.per_gt = u64::from(header.num_gtes_per_gt);
        s.header = header;
        s.read_overhead()?;
        Ok(s)
    }

    /// The guest-visible size: the embedded descriptor's extent (or the capacity).
    pub fn virtual_size(&self) -> u64 {
        self.size
    }

    pub fn header(&self) -> &SparseHeader {
        &self.header
    }

    /// The embedded descriptor, when the file has one.
    pub fn descriptor(&self) -> Option<&Descriptor> {
        self.descriptor.as_ref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Anomalies tolerated (as the random-access reader reports them).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Bytes of the VMDK read so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The grain size in bytes: the most a record inflates to.
    pub fn grain_bytes(&self) -> usize {
        self.header.grain_bytes() as usize
    }

    /// The next grain inside the disk, its compressed bytes appended to `compressed` (so
    /// that several records can share one buffer). Markers and
    /// tables are read on the way. None at the end of the stream (an end-of-stream marker,
    /// or the end of the input at a record boundary), once every table has been checked
    /// against the grains.
    pub fn next_grain(&mut self, compressed: &mut Vec<u8>) -> Result<Option<GrainRecord>> {
        while !self.done {
            let at = self.pos;
            if !self.read_sector_or_end()? {
                self.end()?;
                break;
            }
            let word = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
            let half = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
            let (lba, size) = (word(&self.sector, 0), half(&self.sector, 8));
            if size != 0 {
                if let Some(record) = self.grain(at, lba, size, compressed)? {
                    return Ok(Some(record));
                }
                continue;
            }
            let kind = half(&self.sector, 12);
            self.marker(at, kind, lba)?;
        }
        Ok(None)
    }

    /// The reader, after `next_grain` returned None; what follows the end-of-stream marker
    /// (tar padding, a chunk's tail) is left unread, but for what was read ahead with it
    /// and dropped here (the caller only drains what follows).
    pub fn into_inner(self) -> R {
        self.src.into_inner()
    }

    // -----------------------------------------------------------------------------------
    // The metadata before the first grain.

    fn read_overhead(&mut self) -> Result<()> {
        let h = self.header.clone();
        let over_head = h.over_head.checked_mul(SECTOR).ok_or_else(|| {
            self.bad_header(56, format!("overHead {} sectors overflows", h.over_head))
        })?;
        // What lies in the metadata, in file order: the descriptor and (tables first) the
        // grain directory; the tables follow once the directory has said where they are.
        let mut items: Vec<(u64, u64, Item)> = Vec::new();
        if h.descriptor_offset != 0 {
            if h.descriptor_size == 0 || h.descriptor_size > MAX_DESCRIPTOR_SECTORS {
                return Err(self.bad_header(
                    36,
                    format!(
                        "embedded descriptor size {} sectors is outside 1..={MAX_DESCRIPTOR_SECTORS}",
                        h.descriptor_size
                    ),
                ));
            }
            items.push((h.descriptor_offset, h.descriptor_size, Item::Descriptor));
        }
        if h.gd_offset != GD_AT_END {
            let entries = self.gd_entries()?;
            let sectors = (entries * 4).div_ceil(SECTOR);
            self.gd_sector = Some(h.gd_offset);
            if h.gd_offset.saturating_add(sectors).saturating_mul(SECTOR) <= over_head {
                items.push((h.gd_offset, sectors, Item::Directory));
            }
        }
        items.sort_unstable_by_key(|i| i.0);
        for (sector, sectors, item) in items {
            let at = sector.checked_mul(SECTOR).filter(|&at| at >= self.pos);
            let Some(at) = at else {
                return Err(Error::unsupported(
                    &self.path,
                    format!(
                        "the {} at sector {sector} overlaps what comes before it; this layout cannot be read front to back",
                        item.name()
                    ),
                ));
            };
            self.skip_to(at, item.name())?;
            match item {
                Item::Descriptor => self.read_descriptor(sectors)?,
                Item::Directory => {
                    let entries = self.gd_entries()?;
                    self.read_directory(entries, sector)?;
                    self.check.directory_done();
                }
            }
        }
        if self.descriptor.is_none() {
            self.size = h.capacity * SECTOR;
            self.warnings.push(
                "no embedded descriptor: read as a single sparse extent (is this one piece of a split disk?)"
                    .to_string(),
            );
        }
        // Tables placed by a directory already read and lying in the metadata, in order.
        let gt_sectors = self.gt_sectors();
        while let Some(t) = self.check.next_pending(self.pos.div_ceil(SECTOR)) {
            if t.saturating_add(gt_sectors).saturating_mul(SECTOR) > over_head {
                break;
            }
            self.skip_to(t * SECTOR, "grain table")?;
            let table = self.read_table()?;
            let zeroed = self.header.has_zeroed_gte();
            self.check.table_read(t, &table, zeroed, &self.path)?;
        }
        if self.pos > over_head {
            return Err(self.bad_header(
                56,
                format!(
                    "overHead ends at byte {over_head}, before the metadata it should hold (to byte {})",
                    self.pos
                ),
            ));
        }
        self.skip_to(over_head, "metadata")
    }

    fn read_descriptor(&mut self, sectors: u64) -> Result<()> {
        let mut text = vec![0u8; (sectors * SECTOR) as usize];
        self.read_exact(&mut text, "embedded descriptor")?;
        let d = Descriptor::parse_bytes(&text)
            .map_err(|e| Error::descriptor(&self.path, e.line, e.detail))?;
        if d.has_parent() {
            return Err(Error::unsupported(
                &self.path,
                "is a delta (snapshot) disk; delta disks are not supported yet: convert the consolidated disk",
            ));
        }
        let [line] = d.extents.as_slice() else {
            return Err(Error::unsupported(
                &self.path,
                format!(
                    "embedded descriptor lists {} extents; a sparse file with its own descriptor holds exactly one",
                    d.extents.len()
                ),
            ));
        };
        if line.kind != ExtentType::Sparse {
            return Err(Error::descriptor(
                &self.path,
                line.line,
                format!(
                    "embedded descriptor's extent is {}, not SPARSE",
                    line.kind.name()
                ),
            ));
        }
        let len = line
            .sectors
            .checked_mul(SECTOR)
            .ok_or_else(|| Error::descriptor(&self.path, line.line, "extent size overflows"))?;
        let capacity = self.header.capacity * SECTOR;
        if len > capacity {
            return Err(self.bad_header(
                12,
                format!(
                    "capacity {capacity} bytes is smaller than the descriptor's extent of {len} bytes"
                ),
            ));
        }
        if len < capacity {
            self.warnings.push(format!(
                "{}: capacity {capacity} bytes exceeds the descriptor's extent of {len} bytes; using the descriptor",
                self.path.display()
            ));
        }
        self.warnings.extend(d.warnings.iter().cloned());
        self.size = len;
        self.descriptor = Some(d);
        Ok(())
    }

    fn gd_entries(&self) -> Result<u64> {
        let entries = self.header.gd_entries();
        if entries > crate::vmdk::sparse::MAX_GD_ENTRIES {
            return Err(Error::unsupported(
                &self.path,
                format!(
                    "grain directory: {entries} grain tables (at most {} are read); is the capacity in the header right?",
                    crate::vmdk::sparse::MAX_GD_ENTRIES
                ),
            ));
        }
        Ok(entries)
    }

    fn gt_sectors(&self) -> u64 {
        (u64::from(self.header.num_gtes_per_gt) * 4).div_ceil(SECTOR)
    }

    /// Reads `entries` directory entries here (the directory's data at `sector`) and
    /// hands each table they place to the check, a window at a time.
    fn read_directory(&mut self, entries: u64, sector: u64) -> Result<()> {
        let mut window = vec![0u8; 64 << 10];
        let mut k = 0u64;
        let start = self.pos;
        while k < entries {
            let n = ((entries - k) as usize * 4).min(window.len());
            self.read_exact(&mut window[..n], "grain directory")?;
            for e in window[..n].chunks_exact(4) {
                let t = u32::from_le_bytes(e.try_into().unwrap());
                if t != 0 {
                    self.check.directory_entry(k, t, &self.path, sector)?;
                }
                k += 1;
            }
        }
        // The directory's padding to a whole sector.
        let end = start + (entries * 4).div_ceil(SECTOR) * SECTOR;
        self.skip_to(end, "grain directory")
    }

    fn read_table(&mut self) -> Result<Vec<u32>> {
        let per_gt = self.header.num_gtes_per_gt as usize;
        let mut bytes = vec![0u8; (self.gt_sectors() * SECTOR) as usize];
        self.read_exact(&mut bytes, "grain table")?;
        Ok(bytes[..per_gt * 4]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }

    // -----------------------------------------------------------------------------------
    // Records after the metadata.

    /// A compressed grain record whose first sector (at byte `at`) is in hand.
    fn grain(
        &mut self,
        at: u64,
        lba: u64,
        size: u32,
        compressed: &mut Vec<u8>,
    ) -> Result<Option<GrainRecord>> {
        let h = self.header.clone();
        let bad = |detail: String| {
            Error::broken(
                &self.path,
                &rules::VMDK_STREAM,
                "compressed grain",
                at,
                detail,
            )
        };
        if lba % h.grain_size != 0 || lba >= h.capacity {
            return Err(bad(format!(
                "grain record for sector {lba}, which is not the start of a grain of the {}-sector disk",
                h.capacity
            )));
        }
        let size = u64::from(size);
        // Deflate expands incompressible input by a few bytes per 16 KiB block at most.
        let limit = h.grain_bytes() + h.grain_bytes() / 8 + 4096;
        if size > limit {
            return Err(bad(format!(
                "compressed size {size} exceeds the {limit}-byte bound for a {}-byte grain",
                h.grain_bytes()
            )));
        }
        let grain = lba / h.grain_size;
        let offset = lba * SECTOR;
        self.check.grain_seen(at / SECTOR, grain);
        let start = compressed.len();
        let first = (size as usize).min(SECTOR as usize - 12);
        compressed.extend_from_slice(&self.sector[12..12 + first]);
        let rest = size - first as u64;
        if rest > 0 {
            let old = compressed.len();
            compressed.resize(old + rest as usize, 0);
            self.read_exact(&mut compressed[old..], "compressed grain")?;
        }
        let record_end = at + (12 + size).div_ceil(SECTOR) * SECTOR;
        self.skip_to(record_end, "compressed grain")?;
        if offset >= self.size {
            // Past the descriptor's extent: part of the tables' check, never read.
            compressed.truncate(start);
            return Ok(None);
        }
        let len = (self.size - offset).min(h.grain_bytes()) as usize;
        Ok(Some(GrainRecord {
            offset,
            len,
            record: at,
        }))
    }

    /// A marker whose sector (at byte `at`) is in hand; `sectors` of data follow it.
    fn marker(&mut self, at: u64, kind: u32, sectors: u64) -> Result<()> {
        let data = at + SECTOR;
        let path = self.path.clone();
        let bad =
            |detail: String| Error::broken(&path, &rules::VMDK_STREAM, "stream marker", at, detail);
        // Where the marker's data ends (a footer marker may say 0 for its one sector).
        let data_sectors = if kind == MARKER_FOOTER {
            sectors.max(1)
        } else {
            sectors
        };
        let end = data_sectors
            .checked_add(1)
            .and_then(|n| n.checked_mul(SECTOR))
            .and_then(|n| n.checked_add(at))
            .ok_or_else(|| bad("marker length overflows".into()))?;
        match kind {
            MARKER_EOS => {
                self.end()?;
            }
            MARKER_GT => {
                if sectors != self.gt_sectors() {
                    return Err(bad(format!(
                        "grain table marker announces {sectors} sectors; a table of {} entries takes {}",
                        self.header.num_gtes_per_gt,
                        self.gt_sectors()
                    )));
                }
                let table = self.read_table()?;
                let zeroed = self.header.has_zeroed_gte();
                self.check
                    .table_read(data / SECTOR, &table, zeroed, &self.path)?;
            }
            MARKER_GD => {
                let entries = self.gd_entries()?;
                if sectors < (entries * 4).div_ceil(SECTOR) {
                    return Err(bad(format!(
                        "grain directory marker announces {sectors} sectors; {entries} entries need more"
                    )));
                }
                let ours = match self.gd_sector {
                    // Tables first: only the directory the header names counts.
                    Some(gd) => gd == data / SECTOR && self.check.directory_pending(),
                    None if self.gd_seen.is_some() => {
                        return Err(bad(
                            "a second grain directory; which one the footer names cannot be known in one pass".into(),
                        ));
                    }
                    None => true,
                };
                if ours {
                    self.read_directory(entries, data / SECTOR)?;
                    if self.gd_sector.is_none() {
                        self.gd_seen = Some(data / SECTOR);
                    } else {
                        self.check.directory_done();
                    }
                }
                self.skip_to(end, "grain directory")?;
            }
            MARKER_FOOTER => {
                let mut bytes = [0u8; 512];
                self.read_exact(&mut bytes, "stream footer")?;
                self.footer(data, &bytes)?;
                self.skip_to(end, "stream footer")?;
            }
            _ => self.skip_to(end, "stream marker")?,
        }
        Ok(())
    }

    fn footer(&mut self, at: u64, bytes: &[u8; 512]) -> Result<()> {
        if self.gd_sector.is_some() {
            // The header places the directory; the footer is not consulted, as with
            // random access.
            return Ok(());
        }
        let footer = SparseHeader::parse(bytes, &self.path, at)?;
        let h = &self.header;
        let bad = |detail: &str| {
            Error::broken(&self.path, &rules::VMDK_STREAM, "stream footer", at, detail)
        };
        if footer.capacity != h.capacity
            || footer.grain_size != h.grain_size
            || footer.num_gtes_per_gt != h.num_gtes_per_gt
        {
            return Err(bad(
                "capacity, grain size or table size differs from the header",
            ));
        }
        match self.gd_seen {
            Some(gd) if footer.gd_offset == gd => {
                self.footer_seen = true;
                self.check.directory_done();
                Ok(())
            }
            Some(gd) => Err(bad(&format!(
                "names the grain directory at sector {}, but the one in the stream is at sector {gd}",
                footer.gd_offset
            ))),
            None => Err(bad("comes before any grain directory")),
        }
    }

    /// The stream ended: every table must have been placed and agree with the grains.
    fn end(&mut self) -> Result<()> {
        self.done = true;
        let missing = match self.gd_sector {
            None if !self.footer_seen => Some(
                "the stream ended before its grain directory and footer (is it complete?)"
                    .to_string(),
            ),
            Some(gd) if self.check.directory_pending() => Some(format!(
                "the stream ended before the grain directory the header places at sector {gd}"
            )),
            _ => None,
        };
        if let Some(detail) = missing {
            return Err(Error::truncated(&self.path, "stream", self.pos, detail));
        }
        self.check.finish(&self.path, self.pos)
    }

    // -----------------------------------------------------------------------------------
    // Reading.

    fn bad_header(&self, offset: u64, detail: String) -> Error {
        Error::broken(
            &self.path,
            &rules::VMDK_HEADER,
            "sparse header",
            offset,
            detail,
        )
    }

    /// Reads the next sector into `self.sector`; false at the end of the input exactly
    /// here. A partial sector is an error.
    fn read_sector_or_end(&mut self) -> Result<bool> {
        let mut got = 0;
        while got < self.sector.len() {
            match self.src.read(&mut self.sector[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(e, "stream record")),
            }
        }
        self.pos += got as u64;
        match got {
            0 => Ok(false),
            512 => Ok(true),
            _ => Err(Error::truncated(
                &self.path,
                "stream record",
                self.pos - got as u64,
                format!("the input ends {got} bytes into a sector"),
            )),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], structure: &'static str) -> Result<()> {
        let at = self.pos;
        match self.src.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(Error::truncated(
                &self.path,
                structure,
                at,
                format!("the input ends within these {} bytes", buf.len()),
            )),
            Err(e) => Err(self.io_error(e, structure)),
        }
    }

    /// Reads and drops bytes up to `target` (never backwards).
    fn skip_to(&mut self, target: u64, structure: &'static str) -> Result<()> {
        if target < self.pos {
            return Err(Error::corrupt(
                &self.path,
                structure,
                target,
                format!("lies before byte {}, already read", self.pos),
            ));
        }
        let want = target - self.pos;
        let got = io::copy(&mut (&mut self.src).take(want), &mut io::sink())
            .map_err(|e| self.io_error(e, structure))?;
        self.pos += got;
        if got < want {
            return Err(Error::truncated(
                &self.path,
                structure,
                self.pos,
                format!("the input ends {} bytes before byte {target}", want - got),
            ));
        }
        Ok(())
    }

    /// A read failure: errors from the layers below (a corrupt gzip stream, an archive
    /// that ends early, a manifest's verdict) carry their own typed error, which is kept.
    fn io_error(&self, e: io::Error, structure: &'static str) -> Error {
        if e.get_ref().is_some_and(|i| i.is::<Error>()) {
            if let Some(Ok(inner)) = e.into_inner().map(|i| i.downcast::<Error>()) {
                return *inner;
            }
            return Error::input_io(&self.path, structure, io::Error::other("unreadable"));
        }
        Error::input_io(&self.path, format!("{structure} at offset {}", self.pos), e)
    }
}

#[derive(Debug, Clone, Copy)]
enum Item {
    Descriptor,
    Directory,
}

impl Item {
    fn name(self) -> &'static str {
        match self {
            Item::Descriptor => "embedded descriptor",
            Item::Directory => "grain directory",
        }
    }
}

/// A header that is replaced before use (SparseHeader has no Default).
fn placeholder_header() -> SparseHeader {
    SparseHeader {
        version: 1,
        flags: 0,
        capacity: 0,
        grain_size: 1,
        descriptor_offset: 0,
        descriptor_size: 0,
        num_gtes_per_gt: 1,
        rgd_offset: 0,
        gd_offset: 0,
        over_head: 0,
        compress_algorithm: 0,
    }
}

/// The checksums tying grain records to table entries (see the module comment).
struct TableCheck {
    keys: RandomState,
    /// Entries per grain table.
    per_gt: u64,
    /// Σ over grain records of term(record sector, grain number).
    grains: u64,
    /// Σ over placed table entries of term(entry, grain number).
    tables: u64,
    /// Tables read before a directory placed them: sector -> (Σ term(entry, index in
    /// table), Σ slope(entry)).
    unplaced: HashMap<u32, (u64, u64)>,
    /// Directory entries whose table had not been read when the directory was: (table
    /// sector, table number). Tables are read in file order, so once sorted these are
    /// taken from the front (`cursor`).
    pending: Vec<(u32, u32)>,
    cursor: usize,
    sorted: bool,
    /// The first pending entry whose table was passed without being read.
    missed: Option<(u32, u32)>,
    /// The directory has not been read yet.
    directory_pending: bool,
}

impl TableCheck {
    fn new() -> Self {
        TableCheck {
            keys: RandomState::new(),
            per_gt: 1,
            grains: 0,
            tables: 0,
            unplaced: HashMap::new(),
            pending: Vec::new(),
            cursor: 0,
            sorted: true,
            missed: None,
            directory_pending: true,
        }
    }

    /// The term of (position, grain number) is `base(position) + slope(position) × grain`:
    /// linear in the grain number, so a table's entries can be summed before the directory
    /// says which grains the table covers, and shifted into place afterwards.
    fn base(&self, sector: u64) -> u64 {
        self.keys.hash_one((0u8, sector))
    }

    fn slope(&self, sector: u64) -> u64 {
        self.keys.hash_one((1u8, sector))
    }

    fn grain_seen(&mut self, sector: u64, grain: u64) {
        let term = self
            .base(sector)
            .wrapping_add(self.slope(sector).wrapping_mul(grain));
        self.grains = self.grains.wrapping_add(term);
    }

    /// A table's entries summed relative to its first grain.
    fn summarise(&self, entries: &[u32], zeroed_gte: bool) -> (u64, u64) {
        let mut base = 0u64;
        let mut slope = 0u64;
        for (j, &e) in entries.iter().enumerate() {
            // 0: unallocated; 1 with the zeroed-grain flag: zeros. Neither is a record.
            if e == 0 || (e == 1 && zeroed_gte) {
                continue;
            }
            let s = u64::from(e);
            let b = self.slope(s);
            base = base
                .wrapping_add(self.base(s))
                .wrapping_add(b.wrapping_mul(j as u64));
            slope = slope.wrapping_add(b);
        }
        (base, slope)
    }

    fn place(&mut self, (base, slope): (u64, u64), table: u64) {
        let first = table.wrapping_mul(self.per_gt);
        self.tables = self
            .tables
            .wrapping_add(base)
            .wrapping_add(slope.wrapping_mul(first));
    }

    fn sort_pending(&mut self) {
        if !self.sorted {
            self.pending[self.cursor..].sort_unstable();
            self.sorted = true;
        }
    }

    /// A table read at `sector` (tables are read in file order): placed now when
    /// directory entries wait for it, else kept for the directory to come.
    fn table_read(
        &mut self,
        sector: u64,
        entries: &[u32],
        zeroed_gte: bool,
        path: &Path,
    ) -> Result<()> {
        let sum = self.summarise(entries, zeroed_gte);
        self.sort_pending();
        while let Some(&(t, k)) = self.pending.get(self.cursor) {
            if u64::from(t) >= sector {
                break;
            }
            self.missed.get_or_insert((t, k));
            self.cursor += 1;
        }
        let mut placed = false;
        while let Some(&(t, k)) = self.pending.get(self.cursor) {
            if u64::from(t) != sector {
                break;
            }
            self.place(sum, u64::from(k));
            self.cursor += 1;
            placed = true;
        }
        // A directory entry is 32 bits: a table further on can never be placed.
        if let (false, Ok(sector)) = (placed, u32::try_from(sector)) {
            if self.unplaced.len() >= MAX_UNPLACED_TABLES {
                return Err(Error::unsupported(
                    path,
                    format!(
                        "more than {MAX_UNPLACED_TABLES} grain tables before their directory; too many to check in one pass"
                    ),
                ));
            }
            self.unplaced.insert(sector, sum);
        }
        Ok(())
    }

    /// Directory entry `k` places the table at `sector`.
    fn directory_entry(&mut self, k: u64, sector: u32, path: &Path, gd: u64) -> Result<()> {
        if let Some(&sum) = self.unplaced.get(&sector) {
            // Kept, not removed: a second entry naming it must count it again.
            self.place(sum, k);
            return Ok(());
        }
        if self.pending.len() >= MAX_PENDING_TABLES {
            return Err(Error::unsupported(
                path,
                format!(
                    "grain directory at sector {gd} places more than {MAX_PENDING_TABLES} tables; too many to check in one pass"
                ),
            ));
        }
        if self.pending.last().is_some_and(|(t, _)| *t > sector) {
            self.sorted = false;
        }
        // Entries number at most MAX_GD_ENTRIES (2^24): k fits.
        self.pending.push((sector, k as u32));
        Ok(())
    }

    /// The lowest table sector still awaited at or after `from`.
    fn next_pending(&mut self, from: u64) -> Option<u64> {
        self.sort_pending();
        let rest = &self.pending[self.cursor..];
        let i = rest.partition_point(|(t, _)| u64::from(*t) < from);
        rest.get(i).map(|(t, _)| u64::from(*t))
    }

    fn directory_pending(&self) -> bool {
        self.directory_pending
    }

    fn directory_done(&mut self) {
        self.directory_pending = false;
    }

    fn finish(&mut self, path: &Path, at: u64) -> Result<()> {
        self.sort_pending();
        if let Some((t, k)) = self
            .missed
            .or_else(|| self.pending.get(self.cursor).copied())
        {
            return Err(Error::broken(
                path,
                &rules::VMDK_STREAM,
                "grain directory",
                at,
                format!(
                    "grain table {k} is placed at sector {t}, where no grain table was read in one pass (before the directory, or not at all)"
                ),
            ));
        }
        if self.grains != self.tables {
            return Err(Error::broken(
                path,
                &rules::VMDK_STREAM,
                "grain tables",
                at,
                "the grain tables do not describe the grains the stream holds (a grain no table points at, one repeated or out of place, or an entry pointing at no grain)",
            ));
        }
        Ok(())
    }
}

/// Inflates one record's compressed bytes into `out` (a grain's room) with `decoder`,
/// checking it fills at least `needed` bytes and no more than the grain; the rest of
/// `out` is zeroed. `path` and `record` name it in errors.
pub fn inflate_grain(
    decoder: &mut Decompress,
    compressed: &[u8],
    out: &mut [u8],
    needed: usize,
    path: &Path,
    record: u64,
) -> Result<()> {
    let bad = |detail: String| {
        Error::broken(
            path,
            &rules::VMDK_STREAM,
            "compressed grain",
            record,
            detail,
        )
    };
    decoder.reset(true);
    let status = decoder
        .decompress(compressed, out, FlushDecompress::Finish)
        .map_err(|e| bad(format!("deflate stream is corrupt: {e}")))?;
    let produced = decoder.total_out() as usize;
    match status {
        Status::StreamEnd if produced >= needed => {
            out[produced..].fill(0);
            Ok(())
        }
        Status::StreamEnd => Err(bad(format!(
            "inflates to {produced} bytes, expected {needed}"
        ))),
        _ if produced == out.len() => Err(bad(format!(
            "inflates to more than the grain size of {} bytes",
            out.len()
        ))),
        _ => Err(bad("deflate stream is truncated".into())),
    }
}

/// Reads `bytes` as a streamOptimized VMDK front to back, inflating every grain, bounded
/// to 4096 grains: the fuzz entry point. Errors are expected, panics are not.
pub fn fuzz_sequential(bytes: &[u8]) {
    let Ok(mut vmdk) = SequentialVmdk::open(bytes, Path::new("fuzz.vmdk")) else {
        return;
    };
    let mut compressed = Vec::new();
    let mut out = vec![0u8; vmdk.grain_bytes()];
    let mut decoder = Decompress::new(true);
    for _ in 0..4096 {
        compressed.clear();
        match vmdk.next_grain(&mut compressed) {
            Ok(Some(g)) => {
                let _ = inflate_grain(
                    &mut decoder,
                    &compressed,
                    &mut out,
                    g.len,
                    Path::new("fuzz.vmdk"),
                    g.record,
                );
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{Disk, OpenOptions};
    use crate::error::ErrorKind;

    fn fixture() -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/handmade/stream-footer-padded.vmdk");
        std::fs::read(p).unwrap()
    }

    /// Decodes `bytes` front to back into the disk's contents.
    fn decode(bytes: &[u8]) -> Result<Vec<u8>> {
        let path = Path::new("t.vmdk");
        let mut s = SequentialVmdk::open(bytes, path)?;
        let mut disk = vec![0u8; s.virtual_size() as usize];
        let mut compressed = Vec::new();
        let mut grain = vec![0u8; s.grain_bytes()];
        let mut decoder = Decompress::new(true);
        while let Some(r) = {
            compressed.clear();
            s.next_grain(&mut compressed)?
        } {
            inflate_grain(&mut decoder, &compressed, &mut grain, r.len, path, r.record)?;
            let at = r.offset as usize;
            disk[at..at + r.len].copy_from_slice(&grain[..r.len]);
        }
        Ok(disk)
    }

    /// The same disk through the random-access reader.
    fn read_in_place(bytes: &[u8]) -> Vec<u8> {
        let file = crate::disk::InputFile::from_memory(bytes).unwrap();
        let mut disk = crate::vmdk::VmdkDisk::open(
            file,
            crate::detect::Format::VmdkSparse,
            &OpenOptions::default(),
        )
        .unwrap();
        let d: &mut dyn Disk = &mut disk;
        let mut out = vec![0u8; d.virtual_size() as usize];
        d.read_at(0, &mut out).unwrap();
        out
    }

    #[test]
    fn one_pass_reads_what_random_access_reads() {
        let bytes = fixture();
        assert_eq!(decode(&bytes).unwrap(), read_in_place(&bytes));
    }

    /// The byte offsets of the grain records and of the grain table marker data.
    fn layout(bytes: &[u8]) -> (Vec<usize>, Vec<usize>) {
        let over_head = u64::from_le_bytes(bytes[64..72].try_into().unwrap()) as usize * 512;
        let (mut grains, mut tables) = (Vec::new(), Vec::new());
        let mut pos = over_head;
        while pos + 512 <= bytes.len() {
            let n = u64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap()) as usize;
            let size = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
            if size != 0 {
                grains.push(pos);
                pos += (12 + size).div_ceil(512) * 512;
                continue;
            }
            let kind = u32::from_le_bytes(bytes[pos + 12..pos + 16].try_into().unwrap());
            if kind == MARKER_GT {
                tables.push(pos + 512);
            }
            if kind == MARKER_EOS {
                break;
            }
            pos += (n + 1) * 512;
        }
        (grains, tables)
    }

    #[test]
    fn grains_the_tables_do_not_describe_are_refused() {
        let bytes = fixture();
        let (grains, tables) = layout(&bytes);
        assert!(grains.len() > 2 && !tables.is_empty());
        // A grain record moved to another grain's place: random access never reads it
        // there, so neither may one pass.
        let mut moved = bytes.clone();
        let lba = u64::from_le_bytes(moved[grains[1]..grains[1] + 8].try_into().unwrap());
        moved[grains[1]..grains[1] + 8].copy_from_slice(&(lba + 128).to_le_bytes());
        let e = decode(&moved).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert!(e.to_string().contains("do not describe"), "{e}");
        // A table entry cleared: its grain is then a grain no table points at.
        let mut cleared = bytes.clone();
        let t = tables[0];
        let j = (0..512)
            .find(|j| cleared[t + j * 4..t + j * 4 + 4] != [0; 4])
            .unwrap();
        cleared[t + j * 4..t + j * 4 + 4].fill(0);
        let e = decode(&cleared).unwrap_err();
        assert!(e.to_string().contains("do not describe"), "{e}");
        // The stream cut before its directory.
        let e = decode(&bytes[..tables[0]]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
    }

    #[test]
    fn sparse_disks_without_markers_are_not_streams() {
        let mut bytes = fixture();
        // Clear the compressed and markers flags.
        bytes[10] = 0;
        let e = SequentialVmdk::open(&bytes[..], Path::new("t.vmdk"))
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    }
}

//! The VHDX metadata log (MS-VHDX 2.3): finding the active sequence of entries and
//! replaying it in memory, never into the file.
//!
//! A writer logs every change to the region tables, metadata, BAT and sector bitmaps
//! before making it, and clears the header's LogGuid once the changes are in place. A
//! file whose LogGuid is set may hold metadata older than what the guest last saw; the
//! specification asks read-only readers to replay the log in memory first. `LogOverlay`
//! is that replay: the pages the active sequence writes, laid over the file's bytes.
//!
//! Validation follows the specification, with openvmm's extra rules (targets below the
//! region tables or inside the log are refused) and qemu's refusal of a file shorter
//! than an entry's FlushedFileOffset. An entry breaking a rule is not part of any
//! sequence; when no valid sequence remains the file is corrupt.

use std::collections::BTreeMap;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::disk::InputFile;
use crate::error::{Error, Result};
use crate::vhdx::format::{KIB, MIB, guid_string};

/// Log sectors and the pages they carry are 4 KiB.
pub const LOG_SECTOR: u64 = 4096;
const SECTOR: usize = LOG_SECTOR as usize;
/// Largest log accepted (openvmm's bound too); Hyper-V writes 1 MiB logs.
pub const MAX_LOG_LENGTH: u64 = 1 << 30;
/// Largest number of distinct 4 KiB pages a replay may hold in memory: 256 MiB.
pub const MAX_OVERLAY_PAGES: usize = 65536;
/// Largest number of descriptors a replay applies (each becomes a change held in
/// memory); a full 1 MiB log holds at most 32768.
pub const MAX_REPLAY_DESCRIPTORS: u64 = 1 << 20;
/// Entries may not write below the region tables: the file identifier and the headers
/// are updated by their own protocol, never through the log.
pub const LOGGABLE_OFFSET: u64 = 192 * KIB;
/// Largest file a replay may produce: 64 TiB of payload plus its bitmaps and metadata
/// fits well under it.
pub const MAX_REPLAYED_LENGTH: u64 = 128 << 40;

pub const ENTRY_SIGNATURE: &[u8; 4] = b"loge";
pub const ZERO_SIGNATURE: &[u8; 4] = b"zero";
pub const DATA_DESCRIPTOR_SIGNATURE: &[u8; 4] = b"desc";
pub const DATA_SECTOR_SIGNATURE: &[u8; 4] = b"data";

/// The 64 bytes at the start of every entry.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct EntryHeader {
    /// `loge`.
    pub signature: [u8; 4],
    /// CRC-32C over the whole entry with this field zero.
    pub checksum: U32,
    /// Bytes of the entry: descriptor sectors and data sectors, a multiple of 4 KiB.
    pub entry_length: U32,
    /// Log offset of the oldest entry still needed: where replay starts.
    pub tail: U32,
    /// One more than the previous entry's.
    pub sequence_number: U64,
    pub descriptor_count: U32,
    pub reserved: U32,
    /// Must equal the header's LogGuid.
    pub log_guid: [u8; 16],
    /// The file was at least this long when the entry was written.
    pub flushed_file_offset: U64,
    /// The file needs to be this long to hold every structure.
    pub last_file_offset: U64,
}

/// A descriptor asking for a range of zeros.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct ZeroDescriptor {
    /// `zero`.
    pub signature: [u8; 4],
    pub reserved: U32,
    /// A multiple of 4 KiB.
    pub zero_length: U64,
    /// A multiple of 4 KiB.
    pub file_offset: U64,
    pub sequence_number: U64,
}

/// A descriptor for one 4 KiB page, whose middle is in the entry's next data sector.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct DataDescriptor {
    /// `desc`.
    pub signature: [u8; 4],
    /// The page's last 4 bytes.
    pub trailing_bytes: [u8; 4],
    /// The page's first 8 bytes.
    pub leading_bytes: [u8; 8],
    /// A multiple of 4 KiB.
    pub file_offset: U64,
    pub sequence_number: U64,
}

/// A data sector: the page's bytes 8..4092, framed by the sequence number so that a torn
/// write shows.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct DataSector {
    /// `data`.
    pub signature: [u8; 4],
    pub sequence_high: U32,
    pub data: [u8; 4084],
    pub sequence_low: U32,
}

const HEADER_BYTES: u64 = size_of::<EntryHeader>() as u64;
const DESCRIPTOR_BYTES: u64 = 32;
const _: () = assert!(size_of::<EntryHeader>() == 64);
const _: () = assert!(size_of::<ZeroDescriptor>() == DESCRIPTOR_BYTES as usize);
const _: () = assert!(size_of::<DataDescriptor>() == DESCRIPTOR_BYTES as usize);
const _: () = assert!(size_of::<DataSector>() == SECTOR);

/// One change an entry makes.
enum Change {
    Zero {
        offset: u64,
        len: u64,
    },
    Page {
        offset: u64,
        page: Box<[u8; SECTOR]>,
    },
}

/// A descriptor read, before its data sector (if any) is.
enum Described {
    Zero {
        offset: u64,
        len: u64,
    },
    Page {
        offset: u64,
        leading: [u8; 8],
        trailing: [u8; 4],
    },
}

/// A valid entry's place and header fields.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Log-relative offset.
    at: u64,
    length: u64,
    tail: u64,
    sequence: u64,
    flushed_file_offset: u64,
    last_file_offset: u64,
    /// Data descriptors (pages the entry carries).
    pages: u64,
    /// All descriptors.
    descriptors: u64,
}

/// Why the bytes at a log offset are not a valid entry.
struct Rejection {
    /// The sector starts with `loge`: worth naming when nothing valid is found.
    looks_like_entry: bool,
    detail: String,
}

impl Rejection {
    fn entry(detail: impl Into<String>) -> Self {
        Rejection {
            looks_like_entry: true,
            detail: detail.into(),
        }
    }
}

/// The log region of one file, read as the circular buffer it is.
struct LogRegion<'a> {
    file: &'a InputFile,
    offset: u64,
    length: u64,
    guid: [u8; 16],
}

impl LogRegion<'_> {
    /// `at + n` around the circle (both below the log length).
    fn add(&self, at: u64, n: u64) -> u64 {
        (at + n) % self.length
    }

    /// Bytes from `tail` up to `head` around the circle; the whole log when they meet.
    fn span(&self, tail: u64, head: u64) -> u64 {
        if head > tail {
            head - tail
        } else {
            head + self.length - tail
        }
    }

    fn read_sector(&self, at: u64, buf: &mut [u8; SECTOR]) -> Result<()> {
        self.file
            .read_exact_at(buf, self.offset + at, "VHDX log sector")
    }

    /// Reads and checks the entry at `at`. With `changes`, also collects what it
    /// writes (replay); without, nothing is kept but the header (the search).
    fn entry(
        &self,
        at: u64,
        mut changes: Option<&mut Vec<Change>>,
    ) -> Result<std::result::Result<Entry, Rejection>> {
        let mut sector = [0u8; SECTOR];
        self.read_sector(at, &mut sector)?;
        let h = EntryHeader::read_from_bytes(&sector[..HEADER_BYTES as usize]).expect("64 bytes");
        if &h.signature != ENTRY_SIGNATURE {
            return Ok(Err(Rejection {
                looks_like_entry: false,
                detail: "no entry signature".into(),
            }));
        }
        let reject = |detail: String| Ok(Err(Rejection::entry(detail)));
        if h.log_guid != self.guid {
            return reject(format!(
                "LogGuid {} is not the header's {}",
                guid_string(&h.log_guid),
                guid_string(&self.guid)
            ));
        }
        let length = u64::from(h.entry_length.get());
        if length == 0 || length % LOG_SECTOR != 0 || length >= self.length {
            return reject(format!(
                "entry length {length} is not a non-zero multiple of 4 KiB smaller than the log ({} bytes)",
                self.length
            ));
        }
        let tail = u64::from(h.tail.get());
        if tail % LOG_SECTOR != 0 || tail >= self.length {
            return reject(format!("tail {tail} is not a 4 KiB sector of the log"));
        }
        let sequence = h.sequence_number.get();
        if sequence == 0 {
            return reject("sequence number is 0".into());
        }
        let last_file_offset = h.last_file_offset.get();
        if last_file_offset > MAX_REPLAYED_LENGTH {
            return reject(format!(
                "last file offset {last_file_offset} is past the {MAX_REPLAYED_LENGTH} bytes accepted"
            ));
        }
        let count = u64::from(h.descriptor_count.get());
        let descriptor_area =
            (HEADER_BYTES + count * DESCRIPTOR_BYTES).next_multiple_of(LOG_SECTOR);
        if descriptor_area > length {
            return reject(format!(
                "{count} descriptors do not fit in an entry of {length} bytes"
            ));
        }
        // The checksum covers the whole entry with its own field taken as zero.
        let mut crc = crc32c::crc32c(&sector[..4]);
        crc = crc32c::crc32c_append(crc, &[0; 4]);
        crc = crc32c::crc32c_append(crc, &sector[8..]);
        // When replaying, the descriptors in order (replay applies them so); data ones
        // wait for their data sectors, which follow in the same order. The search keeps
        // nothing: an entry may hold millions of descriptors.
        let collect = changes.is_some();
        let mut descriptors: Vec<Described> = Vec::new();
        let mut pages = 0u64;
        for i in 0..count {
            let pos = HEADER_BYTES + i * DESCRIPTOR_BYTES;
            if pos % LOG_SECTOR == 0 {
                self.read_sector(self.add(at, pos), &mut sector)?;
                crc = crc32c::crc32c_append(crc, &sector);
            }
            let d = &sector[(pos % LOG_SECTOR) as usize..][..DESCRIPTOR_BYTES as usize];
            let (kind, offset, len, seq) = match &d[..4] {
                s if s == ZERO_SIGNATURE => {
                    let z = ZeroDescriptor::read_from_bytes(d).expect("32 bytes");
                    let (offset, len) = (z.file_offset.get(), z.zero_length.get());
                    if collect {
                        descriptors.push(Described::Zero { offset, len });
                    }
                    ("zero", offset, len, z.sequence_number.get())
                }
                s if s == DATA_DESCRIPTOR_SIGNATURE => {
                    let p = DataDescriptor::read_from_bytes(d).expect("32 bytes");
                    if collect {
                        descriptors.push(Described::Page {
                            offset: p.file_offset.get(),
                            leading: p.leading_bytes,
                            trailing: p.trailing_bytes,
                        });
                    }
                    pages += 1;
                    (
                        "data",
                        p.file_offset.get(),
                        LOG_SECTOR,
                        p.sequence_number.get(),
                    )
                }
                other => return reject(format!("descriptor {i} has the signature {other:02x?}")),
            };
            if seq != sequence {
                return reject(format!(
                    "{kind} descriptor {i} has sequence number {seq}, not the entry's {sequence}"
                ));
            }
            if let Err(detail) = self.check_target(offset, len) {
                return reject(format!("{kind} descriptor {i}: {detail}"));
            }
        }
        let expected = descriptor_area + pages * LOG_SECTOR;
        if expected != length {
            return reject(format!(
                "entry length {length} is not the {expected} bytes its {count} descriptors need"
            ));
        }
        // The data sectors, one per data descriptor, in order.
        let mut described = descriptors.into_iter();
        for k in 0..pages {
            // Zero descriptors before this page's keep their place among the changes.
            let mut page_of = None;
            for d in described.by_ref() {
                match d {
                    Described::Zero { offset, len } => {
                        if let Some(out) = changes.as_deref_mut() {
                            out.push(Change::Zero { offset, len });
                        }
                    }
                    Described::Page {
                        offset,
                        leading,
                        trailing,
                    } => {
                        page_of = Some((offset, leading, trailing));
                        break;
                    }
                }
            }
            let pos = descriptor_area + k * LOG_SECTOR;
            self.read_sector(self.add(at, pos), &mut sector)?;
            crc = crc32c::crc32c_append(crc, &sector);
            let s = DataSector::read_from_bytes(&sector).expect("4 KiB");
            if &s.signature != DATA_SECTOR_SIGNATURE {
                return reject(format!("data sector {k} has no data signature"));
            }
            let seq = (u64::from(s.sequence_high.get()) << 32) | u64::from(s.sequence_low.get());
            if seq != sequence {
                return reject(format!(
                    "data sector {k} carries sequence number {seq}, not the entry's {sequence} (a torn write)"
                ));
            }
            if let (Some(out), Some((offset, leading, trailing))) =
                (changes.as_deref_mut(), page_of)
            {
                let mut page = Box::new([0u8; SECTOR]);
                page[..8].copy_from_slice(&leading);
                page[8..SECTOR - 4].copy_from_slice(&s.data);
                page[SECTOR - 4..].copy_from_slice(&trailing);
                out.push(Change::Page { offset, page });
            }
        }
        for d in described {
            if let (Described::Zero { offset, len }, Some(out)) = (d, changes.as_deref_mut()) {
                out.push(Change::Zero { offset, len });
            }
        }
        if crc != h.checksum.get() {
            return reject(format!(
                "CRC-32C is {crc:#010x}, the entry says {:#010x}",
                h.checksum.get()
            ));
        }
        Ok(Ok(Entry {
            at,
            length,
            tail,
            sequence,
            flushed_file_offset: h.flushed_file_offset.get(),
            last_file_offset,
            pages,
            descriptors: count,
        }))
    }

    /// Where a descriptor may write: 4 KiB-aligned, at or above the region tables, not
    /// into the log itself, and below the largest file accepted.
    fn check_target(&self, offset: u64, len: u64) -> std::result::Result<(), String> {
        if offset % LOG_SECTOR != 0 || len % LOG_SECTOR != 0 {
            return Err(format!("target {offset} (+{len}) is not aligned to 4 KiB"));
        }
        if offset < LOGGABLE_OFFSET {
            return Err(format!(
                "target {offset} lies below {LOGGABLE_OFFSET}, in the file identifier or headers"
            ));
        }
        let end = match offset.checked_add(len) {
            Some(end) if end <= MAX_REPLAYED_LENGTH => end,
            _ => {
                return Err(format!(
                    "target {offset} (+{len}) reaches past the {MAX_REPLAYED_LENGTH} bytes accepted"
                ));
            }
        };
        if offset < self.offset + self.length && end > self.offset {
            return Err(format!(
                "target {offset} (+{len}) overlaps the log at {}",
                self.offset
            ));
        }
        Ok(())
    }

    /// Grows a sequence from the valid entry `first`: each next entry must be valid,
    /// carry the next sequence number, fit in the space the sequence leaves, and name a
    /// tail inside the grown sequence.
    fn grow(&self, first: Entry) -> Result<Vec<Entry>> {
        let mut entries = vec![first];
        let mut head = self.add(first.at, first.length);
        let mut used = first.length;
        loop {
            let last = *entries.last().expect("one entry");
            if used >= self.length {
                break;
            }
            let Ok(next) = self.entry(head, None)? else {
                break;
            };
            let free = self.length - self.span(last.tail, head).min(self.length);
            let new_head = self.add(head, next.length);
            let tail_inside = self.span(next.tail, new_head) <= self.span(last.tail, new_head);
            if next.sequence != last.sequence.wrapping_add(1) || next.length > free || !tail_inside
            {
                break;
            }
            entries.push(next);
            head = new_head;
            used += next.length;
        }
        Ok(entries)
    }

    /// The specification's search: from log offset 0, grow a sequence at each place; a
    /// sequence is valid when its newest entry's tail lies inside it; the valid one with
    /// the highest sequence number is active. Returns the entries from the tail on.
    fn active_sequence(&self) -> Result<Vec<Entry>> {
        // The best sequence so far, and where in it its tail entry is (None: the tail
        // falls inside an entry, which makes the file corrupt if this sequence wins).
        let mut best: Option<(Vec<Entry>, Option<usize>)> = None;
        let mut first_rejection: Option<(u64, String)> = None;
        let mut at = 0;
        while at < self.length {
            let first = match self.entry(at, None)? {
                Ok(e) => e,
                Err(r) => {
                    if r.looks_like_entry && first_rejection.is_none() {
                        first_rejection = Some((at, r.detail));
                    }
                    at += LOG_SECTOR;
                    continue;
                }
            };
            let entries = self.grow(first)?;
            let span: u64 = entries.iter().map(|e| e.length).sum();
            let head = entries.last().expect("one entry");
            let head_at = self.add(head.at, head.length);
            if self.span(head.tail, head_at) <= span {
                let is_better = best
                    .as_ref()
                    .is_none_or(|(b, _)| b.last().expect("one entry").sequence < head.sequence);
                if is_better {
                    // Replay starts at the tail, which must begin an entry.
                    let k = entries.iter().position(|e| e.at == head.tail);
                    best = Some((entries, k));
                }
            } else if first_rejection.is_none() {
                first_rejection = Some((
                    head.at,
                    format!(
                        "tail {} of entry {} lies outside its sequence",
                        head.tail, head.sequence
                    ),
                ));
            }
            // Every later start inside this sequence would grow to the same head and fail
            // or lose the same way, so the search goes on from there.
            if at + span >= self.length {
                break;
            }
            at += span;
        }
        match best {
            Some((entries, Some(k))) => return Ok(entries[k..].to_vec()),
            Some((entries, None)) => {
                let head = entries.last().expect("one entry");
                return Err(self.corrupt(
                    head.at,
                    format!(
                        "tail {} of the active sequence's newest entry ({}) is not the start of one of its entries",
                        head.tail, head.sequence
                    ),
                ));
            }
            None => {}
        }
        Err(match first_rejection {
            Some((at, detail)) => self.corrupt(
                at,
                format!("LogGuid is set but the log holds no valid sequence: {detail}"),
            ),
            None => Error::corrupt(
                self.file.path(),
                "VHDX log",
                self.offset,
                format!(
                    "LogGuid {} is set but the log holds no entry",
                    guid_string(&self.guid)
                ),
            ),
        })
    }

    fn corrupt(&self, at: u64, detail: String) -> Error {
        Error::corrupt(self.file.path(), "VHDX log entry", self.offset + at, detail)
    }
}

/// One stretch of the replayed file that differs from the file's own bytes.
#[derive(Debug, Clone)]
enum Piece {
    /// Zeros up to this file offset.
    Zero { end: u64 },
    /// One 4 KiB page.
    Page(Box<[u8; SECTOR]>),
}

impl Piece {
    fn end(&self, start: u64) -> u64 {
        match self {
            Piece::Zero { end } => *end,
            Piece::Page(_) => start + LOG_SECTOR,
        }
    }
}

/// The file as it reads once its log is replayed: the file's bytes with the logged pages
/// and zero ranges laid over them, and its length after replay. Never writes the file.
#[derive(Debug, Clone)]
pub struct LogOverlay {
    /// Pieces by start offset, none overlapping another.
    pieces: BTreeMap<u64, Piece>,
    pages: usize,
    len: u64,
    sequence_number: u64,
    entries: usize,
}

impl LogOverlay {
    /// Replays the log of `file` in memory. `log_offset`, `log_length` and `log_guid` are
    /// the current header's. None when LogGuid is zero: nothing to replay.
    pub fn replay(
        file: &InputFile,
        log_offset: u64,
        log_length: u64,
        log_guid: [u8; 16],
    ) -> Result<Option<LogOverlay>> {
        if log_guid == [0; 16] {
            return Ok(None);
        }
        let bad = |detail: String| Error::corrupt(file.path(), "VHDX log", log_offset, detail);
        if log_offset < MIB || log_offset % MIB != 0 {
            return Err(bad(format!(
                "log offset {log_offset} is not a multiple of 1 MiB from 1 MiB on"
            )));
        }
        if log_length == 0 || log_length % MIB != 0 || log_length > MAX_LOG_LENGTH {
            return Err(bad(format!(
                "LogGuid is set but the log length {log_length} is not a multiple of 1 MiB from 1 MiB to {MAX_LOG_LENGTH}"
            )));
        }
        if log_offset
            .checked_add(log_length)
            .is_none_or(|end| end > file.len())
        {
            return Err(bad(format!(
                "log of {log_length} bytes extends past the end of the file ({} bytes)",
                file.len()
            )));
        }
        let region = LogRegion {
            file,
            offset: log_offset,
            length: log_length,
            guid: log_guid,
        };
        let entries = region.active_sequence()?;
        let head = *entries.last().expect("a sequence has entries");
        let pages: u64 = entries.iter().map(|e| e.pages).sum();
        let descriptors: u64 = entries.iter().map(|e| e.descriptors).sum();
        if descriptors > MAX_REPLAY_DESCRIPTORS {
            return Err(Error::unsupported(
                file.path(),
                format!(
                    "VHDX log at offset {log_offset}: its active sequence has {descriptors} descriptors (at most {MAX_REPLAY_DESCRIPTORS} are replayed)"
                ),
            ));
        }
        if pages > MAX_OVERLAY_PAGES as u64 {
            return Err(Error::unsupported(
                file.path(),
                format!(
                    "VHDX log at offset {log_offset}: replaying it would hold {pages} pages in memory (at most {MAX_OVERLAY_PAGES}, {} MiB)",
                    (MAX_OVERLAY_PAGES * SECTOR) >> 20
                ),
            ));
        }
        let mut overlay = LogOverlay {
            pieces: BTreeMap::new(),
            pages: 0,
            len: file.len().max(head.last_file_offset),
            sequence_number: head.sequence,
            entries: entries.len(),
        };
        let mut changes = Vec::new();
        for e in &entries {
            if e.flushed_file_offset > file.len() {
                return Err(region.corrupt(
                    e.at,
                    format!(
                        "flushed file offset {} is past the end of the file ({} bytes): the file is truncated",
                        e.flushed_file_offset,
                        file.len()
                    ),
                ));
            }
            changes.clear();
            // Read again, keeping the pages this time; the file may not change between.
            if let Err(r) = region.entry(e.at, Some(&mut changes))? {
                return Err(region.corrupt(e.at, format!("changed while read: {}", r.detail)));
            }
            for change in changes.drain(..) {
                overlay.apply(change);
            }
        }
        Ok(Some(overlay))
    }

    /// Lays one change over the file, replacing whatever earlier changes said there.
    fn apply(&mut self, change: Change) {
        let (start, end) = match &change {
            Change::Zero { offset, len } => (*offset, offset + len),
            Change::Page { offset, .. } => (*offset, offset + LOG_SECTOR),
        };
        if start == end {
            return;
        }
        self.clear(start, end);
        match change {
            Change::Zero { .. } => {
                self.pieces.insert(start, Piece::Zero { end });
            }
            Change::Page { page, .. } => {
                // Bounded by the check on the sequence's pages before replay.
                self.pages += 1;
                self.pieces.insert(start, Piece::Page(page));
            }
        }
        self.len = self.len.max(end);
    }

    /// Removes what earlier changes laid over `[start, end)`, keeping the parts of zero
    /// ranges outside it. Pages are 4 KiB-aligned like every range, so a page is either
    /// wholly inside or wholly outside.
    fn clear(&mut self, start: u64, end: u64) {
        let hit: Vec<u64> = self
            .pieces
            .range(..end)
            .rev()
            .take_while(|(s, p)| p.end(**s) > start)
            .map(|(s, _)| *s)
            .collect();
        for s in hit {
            match self.pieces.remove(&s).expect("listed above") {
                Piece::Zero { end: e } => {
                    if s < start {
                        self.pieces.insert(s, Piece::Zero { end: start });
                    }
                    if e > end {
                        self.pieces.insert(end, Piece::Zero { end: e });
                    }
                }
                Piece::Page(_) => self.pages -= 1,
            }
        }
    }

    /// Bytes of the file after replay: the file's, or more where the log extends it.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sequence number of the active sequence's newest entry.
    pub fn sequence_number(&self) -> u64 {
        self.sequence_number
    }

    /// Entries replayed (from the tail to the head).
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Distinct 4 KiB pages the replay holds.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Whether the log changes any byte of `[offset, offset + len)`.
    pub fn touches(&self, offset: u64, len: u64) -> bool {
        let end = offset.saturating_add(len);
        self.pieces
            .range(..end)
            .next_back()
            .is_some_and(|(s, p)| p.end(*s) > offset)
    }

    /// Reads the replayed file: see `read_structure`.
    pub fn read(&self, file: &InputFile, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_structure(file, offset, buf, "VHDX file (log replayed)")
    }

    /// Fills `buf` with the replayed file's bytes at `offset`: the file's own, zeros
    /// where the replay extends it, and the logged pages and zero ranges on top. Fails
    /// naming `structure` when the range lies past the replayed file's end.
    pub fn read_structure(
        &self,
        file: &InputFile,
        offset: u64,
        buf: &mut [u8],
        structure: &'static str,
    ) -> Result<()> {
        let end = match offset.checked_add(buf.len() as u64) {
            Some(end) if end <= self.len => end,
            _ => {
                return Err(Error::corrupt(
                    file.path(),
                    structure,
                    offset,
                    format!(
                        "{} bytes extend past the end of the file with its log replayed ({} bytes)",
                        buf.len(),
                        self.len
                    ),
                ));
            }
        };
        let in_file = end.min(file.len()).saturating_sub(offset) as usize;
        if in_file > 0 {
            file.read_exact_at(&mut buf[..in_file], offset, structure)?;
        }
        buf[in_file..].fill(0);
        // Pieces are sorted and apart, so walking back from the end meets every one that
        // overlaps and stops at the first that ends before the range.
        for (&s, piece) in self.pieces.range(..end).rev() {
            let e = piece.end(s);
            if e <= offset {
                break;
            }
            let (from, to) = (s.max(offset), e.min(end));
            let dst = &mut buf[(from - offset) as usize..(to - offset) as usize];
            match piece {
                Piece::Zero { .. } => dst.fill(0),
                Piece::Page(page) => {
                    dst.copy_from_slice(&page[(from - s) as usize..(to - s) as usize]);
                }
            }
        }
        Ok(())
    }
}

/// Replays `bytes` as a VHDX log, for fuzzing: must never panic, whatever the bytes. A
/// whole VHDX file (starting `vhdxfile`) is replayed as its current header says;
/// anything else is taken as a LogGuid (16 bytes) and a log region, placed at 1 MiB of
/// an otherwise empty file and padded to whole MiB.
pub fn fuzz_vhdx_log(bytes: &[u8]) {
    let (image, guid, offset, length) = if bytes.starts_with(b"vhdxfile") {
        (bytes.to_vec(), None, 0, 0)
    } else {
        let guid: [u8; 16] = match bytes.get(..16).and_then(|g| g.try_into().ok()) {
            Some(g) => g,
            None => return,
        };
        let log = &bytes[16..];
        let length = (log.len() as u64)
            .max(1)
            .next_multiple_of(MIB)
            .min(MAX_LOG_LENGTH);
        let mut image = vec![0u8; (MIB + length) as usize];
        let n = log.len().min(length as usize);
        image[MIB as usize..MIB as usize + n].copy_from_slice(&log[..n]);
        (image, Some(guid), MIB, length)
    };
    let Some(file) = crate::disk::InputFile::from_memory(&image) else {
        return;
    };
    let (guid, offset, length) = match guid {
        Some(g) => (g, offset, length),
        None => match crate::vhdx::read::current_header(&file) {
            Ok((_, h)) => (
                h.log_guid,
                h.log_offset.get(),
                u64::from(h.log_length.get()),
            ),
            Err(_) => return,
        },
    };
    let Ok(Some(overlay)) = LogOverlay::replay(&file, offset, length, guid) else {
        return;
    };
    let mut buf = vec![0u8; 64 << 10];
    let mut at = 0;
    while at < overlay.len().min(4 << 20) {
        let n = (overlay.len() - at).min(buf.len() as u64) as usize;
        if overlay.read(&file, at, &mut buf[..n]).is_err() {
            return;
        }
        at += n as u64;
    }
}

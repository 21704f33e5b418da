//! ESXi seSparse redo logs (`*-sesparse.vmdk`): a constant header, a volatile header, a
//! grain directory and preallocated grain tables of u64 entries, grains addressed by
//! index.
//!
//! The format is undocumented; the rules here are qemu's (block/vmdk.c), which are strict
//! on purpose: anything else in the header is refused rather than guessed at. The file
//! carries no magic a reader could detect it by: only the descriptor's SESPARSE extent
//! type says what it is.

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::disk::InputFile;
use crate::disk::Run;
use crate::error::{Error, Result};
use crate::vmdk::grain::{self, GrainState, GrainTables, ParentRead};

pub const SECTOR: u64 = 512;
pub const CONST_MAGIC: u64 = 0xCAFE_BABE;
pub const VOLATILE_MAGIC: u64 = 0xCAFE_CAFE;
/// The only version qemu (and every sample seen) knows.
pub const VERSION: u64 = 0x0000_0002_0000_0001;
/// 4 KiB grains.
pub const GRAIN_SECTORS: u64 = 8;
/// 32 KiB tables of 4096 u64 entries.
pub const GT_SECTORS: u64 = 64;
pub const GT_ENTRIES: u64 = GT_SECTORS * SECTOR / 8;
pub const GRAIN_BYTES: u64 = GRAIN_SECTORS * SECTOR;
const GT_BYTES: u64 = GT_SECTORS * SECTOR;
/// Largest capacity accepted: 64 TiB. seSparse tops out just below it (grain table
/// indexes are 32-bit and a table covers 16 MiB); qemu caps the directory likewise.
pub const MAX_CAPACITY_SECTORS: u64 = (64 << 40) / SECTOR;

/// Directory entry: the top 32 bits of an allocated entry; the low 32 are the table index.
const GDE_ALLOCATED: u64 = 0x1000_0000;
/// Grain table entry types (top nibble).
const GTE_UNALLOCATED: u64 = 0x0;
const GTE_UNMAPPED: u64 = 0x1;
const GTE_ZERO: u64 = 0x2;
const GTE_ALLOCATED: u64 = 0x3;

/// Constant header (sector 0), every field a little-endian u64; offsets and sizes in
/// sectors.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct RawConstHeader {
    pub magic: U64,
    pub version: U64,
    pub capacity: U64,
    pub grain_size: U64,
    pub grain_table_size: U64,
    pub flags: U64,
    pub reserved: [U64; 4],
    pub volatile_header_offset: U64,
    pub volatile_header_size: U64,
    pub journal_header_offset: U64,
    pub journal_header_size: U64,
    pub journal_offset: U64,
    pub journal_size: U64,
    pub grain_dir_offset: U64,
    pub grain_dir_size: U64,
    pub grain_tables_offset: U64,
    pub grain_tables_size: U64,
    pub free_bitmap_offset: U64,
    pub free_bitmap_size: U64,
    pub backmap_offset: U64,
    pub backmap_size: U64,
    pub grains_offset: U64,
    pub grains_size: U64,
    pub pad: [u8; 304],
}

/// Volatile header (at volatile_header_offset), one sector.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct RawVolatileHeader {
    pub magic: U64,
    pub free_gt_number: U64,
    pub next_txn_seq_number: U64,
    /// Non-zero: the journal holds changes not yet in the tables.
    pub replay_journal: U64,
    pub pad: [u8; 480],
}

const _: () = assert!(size_of::<RawConstHeader>() == SECTOR as usize);
const _: () = assert!(size_of::<RawVolatileHeader>() == SECTOR as usize);

/// A region of the file, in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    pub size: u64,
}

impl Region {
    /// Byte range, or None when it overflows.
    fn bytes(self) -> Option<(u64, u64)> {
        let start = self.offset.checked_mul(SECTOR)?;
        let end = self.offset.checked_add(self.size)?.checked_mul(SECTOR)?;
        Some((start, end))
    }
}

/// The constant header's values, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeSparseHeader {
    pub capacity: u64,
    pub volatile_header: Region,
    pub grain_dir: Region,
    pub grain_tables: Region,
    pub grains: Region,
}

impl SeSparseHeader {
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity * SECTOR
    }

    /// Directory entries the capacity needs.
    pub fn tables_needed(&self) -> u64 {
        self.capacity.div_ceil(GT_ENTRIES * GRAIN_SECTORS)
    }

    /// Parses sector 0 with qemu's requirements, and checks that the regions a reader
    /// uses lie inside the file and apart from each other.
    pub fn parse(bytes: &[u8; SECTOR as usize], file: &InputFile) -> Result<Self> {
        let path = file.path();
        let bad = |detail: String| Error::corrupt(path, "seSparse constant header", 0, detail);
        let unsupported = |detail: String| {
            Error::unsupported(
                path,
                format!("seSparse constant header at offset 0: {detail}"),
            )
        };
        let raw = RawConstHeader::read_from_bytes(bytes).expect("512 bytes");
        if raw.magic.get() != CONST_MAGIC {
            return Err(bad(format!(
                "magic is {:#x}, not {CONST_MAGIC:#x}",
                raw.magic.get()
            )));
        }
        let fields = [
            ("version", raw.version.get(), VERSION),
            ("grain size", raw.grain_size.get(), GRAIN_SECTORS),
            ("grain table size", raw.grain_table_size.get(), GT_SECTORS),
            ("flags", raw.flags.get(), 0),
        ];
        for (name, value, want) in fields {
            if value != want {
                return Err(unsupported(format!(
                    "{name} is {value:#x} (only {want:#x} is known)"
                )));
            }
        }
        if raw.reserved.iter().any(|r| r.get() != 0) || raw.pad.iter().any(|&b| b != 0) {
            return Err(unsupported("reserved fields are not zero".into()));
        }
        let capacity = raw.capacity.get();
        if capacity == 0 || capacity > MAX_CAPACITY_SECTORS {
            return Err(bad(format!(
                "capacity {capacity} sectors is not between 1 and {MAX_CAPACITY_SECTORS}"
            )));
        }
        let region = |o: &U64, s: &U64| Region {
            offset: o.get(),
            size: s.get(),
        };
        let h = SeSparseHeader {
            capacity,
            volatile_header: region(&raw.volatile_header_offset, &raw.volatile_header_size),
            grain_dir: region(&raw.grain_dir_offset, &raw.grain_dir_size),
            grain_tables: region(&raw.grain_tables_offset, &raw.grain_tables_size),
            grains: region(&raw.grains_offset, &raw.grains_size),
        };
        // The grains region is where the file grows, so only its start must be inside the
        // file; the others are written when the file is made.
        let named = [
            ("volatile header", h.volatile_header, 1),
            (
                "grain directory",
                h.grain_dir,
                h.tables_needed().div_ceil(SECTOR / 8),
            ),
            ("grain tables", h.grain_tables, GT_SECTORS),
            ("grains", h.grains, GRAIN_SECTORS),
        ];
        let mut spans = vec![("constant header", 0, SECTOR)];
        for (name, r, least) in named {
            let Some((start, end)) = r.bytes() else {
                return Err(bad(format!(
                    "{name} region at sector {} of {} sectors overflows",
                    r.offset, r.size
                )));
            };
            if r.size < least {
                return Err(bad(format!(
                    "{name} region of {} sectors is smaller than the {least} it needs",
                    r.size
                )));
            }
            let used_end = if name == "grains" { start } else { end };
            if used_end > file.len() {
                return Err(bad(format!(
                    "{name} region (bytes {start} to {end}) extends past the end of the file ({} bytes)",
                    file.len()
                )));
            }
            if let Some((other, _, _)) = spans.iter().find(|(_, s, e)| start < *e && *s < end) {
                return Err(bad(format!(
                    "{name} region (bytes {start} to {end}) overlaps the {other}"
                )));
            }
            spans.push((name, start, end));
        }
        Ok(h)
    }
}

/// Reads and checks the volatile header: the journal must hold nothing to replay.
fn check_volatile_header(file: &InputFile, h: &SeSparseHeader) -> Result<()> {
    let at = h.volatile_header.offset * SECTOR;
    let mut bytes = [0u8; SECTOR as usize];
    file.read_exact_at(&mut bytes, at, "seSparse volatile header")?;
    let raw = RawVolatileHeader::read_from_bytes(&bytes).expect("512 bytes");
    if raw.magic.get() != VOLATILE_MAGIC {
        return Err(Error::corrupt(
            file.path(),
            "seSparse volatile header",
            at,
            format!("magic is {:#x}, not {VOLATILE_MAGIC:#x}", raw.magic.get()),
        ));
    }
    if raw.replay_journal.get() != 0 {
        return Err(Error::unsupported(
            file.path(),
            format!(
                "seSparse volatile header at offset {at}: the journal must be replayed first \
                 (the delta was not closed cleanly; let ESXi open it, or consolidate the snapshot)"
            ),
        ));
    }
    if raw.pad.iter().any(|&b| b != 0) {
        return Err(Error::unsupported(
            file.path(),
            format!("seSparse volatile header at offset {at}: reserved bytes are not zero"),
        ));
    }
    Ok(())
}

pub struct SeSparseExtent {
    file: InputFile,
    header: SeSparseHeader,
    /// Bytes of the extent that the disk uses (the descriptor's sector count).
    len: u64,
    /// Per directory entry the capacity needs: the table's byte offset, or None.
    tables: Vec<Option<u64>>,
    /// The most recently used grain table and its directory index.
    gt: Option<(u64, Vec<u64>)>,
    pub warnings: Vec<String>,
}

impl SeSparseExtent {
    /// Opens an seSparse extent. `len` is the extent's size in bytes as the descriptor
    /// declares it; it may not exceed the header's capacity (a smaller one is used, with a
    /// warning).
    pub fn open(file: InputFile, len: u64) -> Result<Self> {
        let mut bytes = [0u8; SECTOR as usize];
        file.read_exact_at(&mut bytes, 0, "seSparse constant header")?;
        let header = SeSparseHeader::parse(&bytes, &file)?;
        check_volatile_header(&file, &header)?;
        let path = file.path();
        let mut warnings = Vec::new();
        let capacity = header.capacity_bytes();
        if len > capacity {
            return Err(Error::corrupt(
                path,
                "seSparse constant header",
                0,
                format!(
                    "capacity {capacity} bytes is smaller than the descriptor's extent of {len} bytes"
                ),
            ));
        }
        if len < capacity {
            warnings.push(format!(
                "{}: capacity {capacity} bytes exceeds the descriptor's extent of {len} bytes; using the descriptor",
                path.display()
            ));
        }
        let tables = read_directory(&file, &header)?;
        Ok(SeSparseExtent {
            file,
            header,
            len,
            tables,
            gt: None,
            warnings,
        })
    }

    pub fn header(&self) -> &SeSparseHeader {
        &self.header
    }

    pub fn file(&self) -> &InputFile {
        &self.file
    }

    /// Bytes of the extent the disk uses.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where grain `index` (4 KiB units, extent-relative) is.
    pub fn grain(&mut self, index: u64) -> Result<GrainState> {
        if index >= self.len.div_ceil(GRAIN_BYTES) {
            return Err(Error::corrupt(
                self.file.path(),
                "read request",
                index.saturating_mul(GRAIN_BYTES),
                format!("grain {index} lies past the extent"),
            ));
        }
        let table = index / GT_ENTRIES;
        let Some(gt_at) = self.tables[table as usize] else {
            return Ok(GrainState::Unallocated);
        };
        if self.gt.as_ref().is_none_or(|(t, _)| *t != table) {
            let mut bytes = vec![0u8; GT_BYTES as usize];
            self.file
                .read_exact_at(&mut bytes, gt_at, "seSparse grain table")?;
            let entries: Vec<u64> = bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            self.check_table(table, gt_at, &entries)?;
            self.gt = Some((table, entries));
        }
        let within = index % GT_ENTRIES;
        let entry = self.gt.as_ref().expect("loaded above").1[within as usize];
        // Every entry the disk uses was checked when the table was loaded.
        self.decode(entry).map_err(|detail| {
            Error::corrupt(
                self.file.path(),
                "seSparse grain table entry",
                gt_at + within * 8,
                format!("grain {index}: {detail}"),
            )
        })
    }

    /// What one grain table entry says, or why it is invalid.
    fn decode(&self, entry: u64) -> std::result::Result<GrainState, String> {
        match entry >> 60 {
            GTE_UNALLOCATED if entry == 0 => Ok(GrainState::Unallocated),
            GTE_UNALLOCATED => Err(format!(
                "unallocated entry {entry:#018x} has bits set below its type"
            )),
            // SCSI-unmapped. qemu reads these as zeros, like a zero grain; dissect lets
            // them fall through to the parent. We follow qemu, the reader tests check
            // against: the guest unmapped the range in this link, so the parent's old
            // bytes there are stale.
            GTE_UNMAPPED => Ok(GrainState::Zero),
            GTE_ZERO => Ok(GrainState::Zero),
            GTE_ALLOCATED => {
                // The 12 bits under the type are the index's low bits, the low 48 bits
                // its high bits (qemu's get_cluster_offset; dissect agrees).
                let index = ((entry & 0x0FFF_0000_0000_0000) >> 48)
                    | ((entry & 0x0000_FFFF_FFFF_FFFF) << 12);
                let grains = self.header.grains;
                let inside = index
                    .checked_add(1)
                    .and_then(|n| n.checked_mul(GRAIN_SECTORS))
                    .is_some_and(|end| end <= grains.size);
                if !inside {
                    return Err(format!(
                        "allocated entry {entry:#018x} names grain {index}, past the grains region of {} sectors",
                        grains.size
                    ));
                }
                // Inside the region, whose end was checked not to overflow.
                let at = (grains.offset + index * GRAIN_SECTORS) * SECTOR;
                if at >= self.file.len() {
                    return Err(format!(
                        "allocated entry {entry:#018x} names grain {index} at byte {at}, past the end of the file ({} bytes)",
                        self.file.len()
                    ));
                }
                Ok(GrainState::At(at))
            }
            t => Err(format!("entry {entry:#018x} has the unknown type {t:#x}")),
        }
    }

    /// Checks every entry of a freshly read table that the disk uses, and that no two
    /// allocated entries name the same grain.
    fn check_table(&self, table: u64, gt_at: u64, entries: &[u64]) -> Result<()> {
        let grains = self.len.div_ceil(GRAIN_BYTES);
        let mut used = Vec::new();
        for (j, &entry) in entries.iter().enumerate() {
            let index = table * GT_ENTRIES + j as u64;
            if index >= grains {
                break;
            }
            let entry_at = gt_at + j as u64 * 8;
            match self.decode(entry) {
                Ok(GrainState::At(at)) => used.push((at, (index, entry_at))),
                Ok(_) => {}
                Err(detail) => {
                    return Err(Error::corrupt(
                        self.file.path(),
                        "seSparse grain table entry",
                        entry_at,
                        format!("grain {index}: {detail}"),
                    ));
                }
            }
        }
        used.sort_unstable();
        grain::refuse_shared_grains(
            self.file.path(),
            "seSparse grain table entry",
            &used,
            GRAIN_BYTES,
        )
    }

    /// Appends the runs of `[offset, offset + len)` (extent-relative), shifted by `base`.
    pub fn map(&mut self, offset: u64, len: u64, base: u64, out: &mut Vec<Run>) -> Result<()> {
        grain::map(self, offset, len, base, out)
    }

    /// Fills `buf` with this link's view of `[offset, offset + buf.len())`
    /// (extent-relative): stored grains from the file, zero and unmapped grains as zeros,
    /// absent ones from `parent`, which is given extent-relative offsets.
    pub fn read_at(
        &mut self,
        offset: u64,
        buf: &mut [u8],
        parent: &mut ParentRead<'_>,
    ) -> Result<()> {
        grain::read(self, offset, buf, parent)
    }
}

impl GrainTables for SeSparseExtent {
    fn file(&self) -> &InputFile {
        &self.file
    }
    fn extent_len(&self) -> u64 {
        self.len
    }
    fn grain_bytes(&self) -> u64 {
        GRAIN_BYTES
    }
    fn grains_per_table(&self) -> u64 {
        GT_ENTRIES
    }
    fn table_present(&self, table: u64) -> bool {
        self.tables.get(table as usize).is_some_and(Option::is_some)
    }
    fn grain(&mut self, index: u64) -> Result<GrainState> {
        SeSparseExtent::grain(self, index)
    }
}

/// Reads the directory entries the capacity needs and turns each into its table's byte
/// offset, refusing entries of another type, tables outside the grain tables region and
/// two entries naming one table.
fn read_directory(file: &InputFile, h: &SeSparseHeader) -> Result<Vec<Option<u64>>> {
    let needed = h.tables_needed();
    let gd_at = h.grain_dir.offset * SECTOR;
    // Inside the file and the directory region: checked by parse. At most 4 M entries
    // (64 TiB / 16 MiB), 32 MiB.
    let mut raw = vec![0u8; needed as usize * 8];
    file.read_exact_at(&mut raw, gd_at, "seSparse grain directory")?;
    let slots = h.grain_tables.size / GT_SECTORS;
    let mut tables = Vec::with_capacity(needed as usize);
    let mut named = Vec::new();
    for (i, c) in raw.chunks_exact(8).enumerate() {
        let entry = u64::from_le_bytes(c.try_into().unwrap());
        let entry_at = gd_at + i as u64 * 8;
        let bad = |detail: String| {
            Error::corrupt(
                file.path(),
                "seSparse grain directory entry",
                entry_at,
                detail,
            )
        };
        if entry == 0 {
            tables.push(None);
            continue;
        }
        if entry >> 32 != GDE_ALLOCATED {
            return Err(bad(format!(
                "entry {entry:#018x} for grain table {i} is neither 0 nor an allocated table (top half {GDE_ALLOCATED:#x})"
            )));
        }
        let slot = entry & 0xFFFF_FFFF;
        if slot >= slots {
            return Err(bad(format!(
                "grain table {i} is table {slot} of a region holding {slots}"
            )));
        }
        named.push((slot, entry_at, i));
        tables.push(Some((h.grain_tables.offset + slot * GT_SECTORS) * SECTOR));
    }
    named.sort_unstable();
    for w in named.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(Error::corrupt(
                file.path(),
                "seSparse grain directory entry",
                w[1].1,
                format!(
                    "grain tables {} and {} are both table {}",
                    w[0].2, w[1].2, w[0].0
                ),
            ));
        }
    }
    Ok(tables)
}

/// Opens `bytes` as an seSparse extent (the header's capacity standing in for the
/// descriptor's size) and maps and reads it: must never panic, whatever the bytes.
pub fn fuzz_sesparse(bytes: &[u8]) {
    let Some(file) = crate::disk::InputFile::from_memory(bytes) else {
        return;
    };
    let mut head = [0u8; SECTOR as usize];
    if file
        .read_exact_at(&mut head, 0, "seSparse constant header")
        .is_err()
    {
        return;
    }
    let Ok(header) = SeSparseHeader::parse(&head, &file) else {
        return;
    };
    let Ok(mut extent) = SeSparseExtent::open(file, header.capacity_bytes()) else {
        return;
    };
    grain::fuzz_walk(&mut extent);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::RunKind;
    use std::time::{Duration, Instant};

    const S: usize = SECTOR as usize;
    /// Layout (sectors): header 0, volatile 1, directory 2 (64 entries), grain tables
    /// 4..260 (4 slots), grains from 512.
    const GD: u64 = 2;
    const GTS: u64 = 4;
    const GRAINS: u64 = 512;
    /// Three tables: 48 MiB.
    const CAPACITY: u64 = 3 * GT_ENTRIES * GRAIN_SECTORS;

    fn alloc(index: u64) -> u64 {
        0x3000_0000_0000_0000 | ((index & 0xFFF) << 48) | (index >> 12)
    }

    /// Directory: table 0 in slot 3, table 1 absent, table 2 in slot 0. Table 0: grain 0
    /// allocated (index 1), 1 unmapped, 2 zero, 3 unallocated, 4 allocated (index 0x1002,
    /// using the entry's high part), 5 allocated (index 2, right after index 1). Table 2:
    /// its first grain allocated (index 0).
    fn sample() -> Vec<u8> {
        let grains_size = 0x2000 * GRAIN_SECTORS;
        let mut h = [0u64; 26];
        h[..6].copy_from_slice(&[CONST_MAGIC, VERSION, CAPACITY, GRAIN_SECTORS, GT_SECTORS, 0]);
        h[10..].copy_from_slice(&[
            1,
            1,
            0,
            0,
            0,
            0,
            GD,
            1,
            GTS,
            4 * GT_SECTORS,
            0,
            0,
            0,
            0,
            GRAINS,
            grains_size,
        ]);
        let end = (GRAINS + 0x1003 * GRAIN_SECTORS) as usize * S;
        let mut out = vec![0u8; end];
        for (i, v) in h.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        out[S..S + 8].copy_from_slice(&VOLATILE_MAGIC.to_le_bytes());
        let mut put =
            |at: u64, v: u64| out[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
        put(GD * SECTOR, 0x1000_0000_0000_0003);
        put(GD * SECTOR + 16, 0x1000_0000_0000_0000);
        let t0 = (GTS + 3 * GT_SECTORS) * SECTOR;
        for (j, e) in [
            alloc(1),
            0x1000_0000_0000_0000,
            0x2000_0000_0000_0000,
            0,
            alloc(0x1002),
            alloc(2),
        ]
        .into_iter()
        .enumerate()
        {
            put(t0 + j as u64 * 8, e);
        }
        put(GTS * SECTOR, alloc(0));
        for (index, byte) in [(0u64, 0x40u8), (1, 0x41), (2, 0x42), (0x1002, 0x43)] {
            let at = ((GRAINS + index * GRAIN_SECTORS) * SECTOR) as usize;
            out[at..at + GRAIN_BYTES as usize].fill(byte);
        }
        out
    }

    fn open(bytes: &[u8]) -> Result<SeSparseExtent> {
        let file = InputFile::from_memory(bytes).expect("memfd");
        SeSparseExtent::open(file, CAPACITY * SECTOR)
    }

    fn set(mut bytes: Vec<u8>, at: u64, value: u64) -> Vec<u8> {
        bytes[at as usize..at as usize + 8].copy_from_slice(&value.to_le_bytes());
        bytes
    }

    fn corrupt_at(e: Error) -> (&'static str, u64, String) {
        assert_eq!(
            e.kind(),
            crate::error::ErrorKind::Corrupt,
            "not a corruption error: {e}"
        );
        let path = e.path().expect("a file");
        assert!(path.starts_with("/proc/self/fd/"), "{}", path.display());
        (
            e.structure().expect("a structure"),
            e.offset().expect("an offset"),
            e.detail().to_string(),
        )
    }

    const T0: u64 = (GTS + 3 * GT_SECTORS) * SECTOR;

    #[test]
    fn every_entry_type_maps_and_reads() {
        let mut x = open(&sample()).unwrap();
        let g = GRAIN_BYTES;
        let at = |index: u64| (GRAINS + index * GRAIN_SECTORS) * SECTOR;
        assert_eq!(x.grain(0).unwrap(), GrainState::At(at(1)));
        // Unmapped reads as zeros, as qemu reads it.
        assert_eq!(x.grain(1).unwrap(), GrainState::Zero);
        assert_eq!(x.grain(2).unwrap(), GrainState::Zero);
        assert_eq!(x.grain(3).unwrap(), GrainState::Unallocated);
        assert_eq!(x.grain(4).unwrap(), GrainState::At(at(0x1002)));
        assert_eq!(x.grain(GT_ENTRIES).unwrap(), GrainState::Unallocated);
        assert_eq!(x.grain(2 * GT_ENTRIES).unwrap(), GrainState::At(at(0)));
        let mut runs = Vec::new();
        x.map(0, x.len(), 0, &mut runs).unwrap();
        let got: Vec<_> = runs.iter().map(|r| (r.offset, r.len, r.kind)).collect();
        let table = GT_ENTRIES * g;
        assert_eq!(
            got,
            [
                (0, g, RunKind::Data),
                (g, 2 * g, RunKind::Zero),
                (3 * g, g, RunKind::Parent),
                (4 * g, 2 * g, RunKind::Data),
                // Table 0's rest and the table-less 16 MiB in one run.
                (6 * g, 2 * table - 6 * g, RunKind::Parent),
                (2 * table, g, RunKind::Data),
                (2 * table + g, table - g, RunKind::Parent),
            ]
        );
        let mut buf = vec![0u8; 7 * g as usize];
        x.read_at(0, &mut buf, &mut |_, b| {
            b.fill(0xEE);
            Ok(())
        })
        .unwrap();
        let want: Vec<u8> = [0x41, 0, 0, 0xEE, 0x43, 0x42, 0xEE]
            .iter()
            .flat_map(|&b| vec![b; g as usize])
            .collect();
        assert_eq!(buf, want);
    }

    fn refused(bytes: Vec<u8>, structure: &str, offset: u64, needle: &str) {
        let started = Instant::now();
        let e = open(&bytes)
            .err()
            .unwrap_or_else(|| panic!("not refused: {structure} {needle}"));
        let (s, o, detail) = corrupt_at(e);
        assert_eq!((s, o), (structure, offset), "{detail}");
        assert!(detail.contains(needle), "{detail:?} should say {needle:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    fn refused_on_read(bytes: Vec<u8>, grain: u64, offset: u64, needle: &str) {
        let mut x = open(&bytes).unwrap();
        let (s, o, d) = corrupt_at(x.grain(grain).expect_err("refused"));
        assert_eq!((s, o), ("seSparse grain table entry", offset), "{d}");
        assert!(d.contains(needle), "{d:?} should say {needle:?}");
    }

    #[test]
    fn hostile_headers_are_refused() {
        let h = "seSparse constant header";
        refused(set(sample(), 0, 0xCAFE_BABF), h, 0, "magic");
        refused(set(sample(), 16, 0), h, 0, "capacity");
        refused(set(sample(), 16, u64::MAX / 4), h, 0, "capacity");
        // Directory of 2^61 sectors.
        refused(set(sample(), 136, 1 << 61), h, 0, "overflows");
        refused(set(sample(), 128, 1 << 40), h, 0, "past the end");
        refused(set(sample(), 144, 1), h, 0, "overlaps the volatile header");
        refused(set(sample(), 152, 10), h, 0, "smaller");
        refused(
            set(sample(), 88 - 8, 0),
            h,
            0,
            "overlaps the constant header",
        );
        refused(
            set(sample(), S as u64, 0xCAFE_BABE),
            "seSparse volatile header",
            512,
            "magic",
        );
        for (at, value) in [
            (8, VERSION + 1),
            (24, 16),
            (32, 128),
            (40, 1),
            (48, 1),
            (300, 1),
        ] {
            let e = open(&set(sample(), at, value)).err().unwrap();
            assert!(e.kind() == crate::error::ErrorKind::Unsupported, "{e}");
        }
        let e = open(&set(sample(), S as u64 + 24, 1)).err().unwrap();
        assert!(e.kind() == crate::error::ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("journal must be replayed"), "{e}");
    }

    #[test]
    fn hostile_directory_and_table_entries_name_the_entry() {
        let gd = "seSparse grain directory entry";
        let at = GD * SECTOR;
        refused(
            set(sample(), at, 0x2000_0000_0000_0001),
            gd,
            at,
            "neither 0 nor",
        );
        refused(
            set(sample(), at, 0x1000_0001_0000_0000),
            gd,
            at,
            "neither 0 nor",
        );
        refused(
            set(sample(), at, 0x1000_0000_0000_0004),
            gd,
            at,
            "region holding 4",
        );
        refused(
            set(sample(), at, 0x1000_0000_0000_0000),
            gd,
            at + 16,
            "both table 0",
        );
        // Type nibbles 4 to F, and type 0 with bits below it.
        for t in 4..16u64 {
            refused_on_read(set(sample(), T0 + 24, t << 60), 3, T0 + 24, "unknown type");
        }
        refused_on_read(set(sample(), T0 + 24, 7), 3, T0 + 24, "bits set below");
        refused_on_read(
            set(sample(), T0 + 24, alloc(0x2000)),
            3,
            T0 + 24,
            "past the grains region",
        );
        refused_on_read(
            set(sample(), T0 + 24, alloc(0x1003)),
            3,
            T0 + 24,
            "past the end of the file",
        );
        refused_on_read(
            set(sample(), T0 + 24, alloc(2)),
            3,
            T0 + 40,
            "share file space",
        );
        // A problem in a table is found whichever of its grains is asked for.
        refused_on_read(
            set(sample(), T0 + 24, 0xF << 60),
            0,
            T0 + 24,
            "unknown type",
        );
    }

    #[test]
    fn fuzz_entry_point_survives_damage() {
        let good = sample();
        fuzz_sesparse(&good);
        fuzz_sesparse(&[]);
        fuzz_sesparse(&good[..512]);
        fuzz_sesparse(&good[..100_000]);
        let mut rng = 0x0fed_cba9_8765_4321u64;
        for _ in 0..100 {
            let mut b = good.clone();
            for _ in 0..8 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                // Mostly the metadata (first 132 KiB), sometimes anywhere.
                let span = if rng % 4 == 0 { b.len() } else { 132 << 10 };
                let at = (rng % span as u64) as usize;
                b[at] = (rng >> 32) as u8;
            }
            fuzz_sesparse(&b);
        }
    }
}

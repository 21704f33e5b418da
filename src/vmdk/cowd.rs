//! ESXi vmfsSparse redo logs (COWD, `*-delta.vmdk`): a 2048-byte header, a grain
//! directory of u32 sector offsets, grain tables of 4096 u32 sector offsets, grains.
//!
//! An entry of 0 (in the directory or a table) means "not in this link": the grain falls
//! through to the parent. COWD has no zeroed-grain marker (qemu never enables one for
//! these extents), so every other entry is a sector of this file.

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::disk::InputFile;
use crate::error::{Error, Result};
use crate::vmdk::grain::{self, DeltaRun, GrainState, GrainTables, ParentRead};

pub const MAGIC: &[u8; 4] = b"COWD";
pub const SECTOR: u64 = 512;
/// The header fills the first four sectors.
pub const HEADER_BYTES: u64 = 2048;
/// Entries per grain table (fixed by the format; 16 KiB per table).
pub const GT_ENTRIES: u64 = 4096;
const GT_BYTES: u64 = GT_ENTRIES * 4;
/// Largest grain the format allows: 1 MiB.
pub const MAX_GRAIN_SECTORS: u32 = 2048;

/// On-disk layout of the header, little-endian.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct RawCowdHeader {
    /// `COWD`.
    pub magic: [u8; 4],
    /// 1.
    pub version: U32,
    /// 3 in every known file; no flag changes how grains are read.
    pub flags: U32,
    /// Capacity of the disk, in sectors.
    pub num_sectors: U32,
    /// Sectors per grain.
    pub grain_size: U32,
    /// Sector of the grain directory (4: right after this header).
    pub gd_offset: U32,
    /// Directory entries: numSectors / (4096 * grainSize), rounded up.
    pub num_gd_entries: U32,
    /// Next sector the writer would allocate.
    pub free_sector: U32,
    /// Root disks: geometry; children: the parent's file name (often left empty).
    pub root_or_parent: [u8; 1024],
    pub parent_generation: U32,
    pub generation: U32,
    pub name: [u8; 60],
    pub description: [u8; 512],
    pub saved_generation: U32,
    pub reserved: [u8; 8],
    /// Non-zero when the writer did not close the file cleanly.
    pub unclean_shutdown: U32,
    pub padding: [u8; 396],
}

const _: () = assert!(size_of::<RawCowdHeader>() == HEADER_BYTES as usize);

/// The header's values that matter for reading, validated against the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CowdHeader {
    pub version: u32,
    pub flags: u32,
    pub num_sectors: u32,
    pub grain_size: u32,
    pub gd_offset: u32,
    pub num_gd_entries: u32,
    pub free_sector: u32,
    pub unclean_shutdown: bool,
}

impl CowdHeader {
    pub fn grain_bytes(&self) -> u64 {
        u64::from(self.grain_size) * SECTOR
    }

    pub fn capacity(&self) -> u64 {
        u64::from(self.num_sectors) * SECTOR
    }

    /// Directory entries the capacity needs (at most 2^20: 32-bit sector counts).
    pub fn tables_needed(&self) -> u64 {
        u64::from(self.num_sectors).div_ceil(GT_ENTRIES * u64::from(self.grain_size))
    }

    /// Parses the first 2048 bytes of `file` and checks every size and offset in it
    /// against the file, so nothing is allocated from a claim the file cannot back.
    pub fn parse(bytes: &[u8; HEADER_BYTES as usize], file: &InputFile) -> Result<Self> {
        let path = file.path();
        let bad = |detail: String| Error::corrupt(path, "COWD header", 0, detail);
        let raw = RawCowdHeader::read_from_bytes(bytes).expect("2048 bytes");
        if &raw.magic != MAGIC {
            return Err(bad(format!("magic is {:02x?}, not COWD", raw.magic)));
        }
        let h = CowdHeader {
            version: raw.version.get(),
            flags: raw.flags.get(),
            num_sectors: raw.num_sectors.get(),
            grain_size: raw.grain_size.get(),
            gd_offset: raw.gd_offset.get(),
            num_gd_entries: raw.num_gd_entries.get(),
            free_sector: raw.free_sector.get(),
            unclean_shutdown: raw.unclean_shutdown.get() != 0,
        };
        if h.version != 1 {
            return Err(Error::unsupported(
                path,
                format!(
                    "COWD header at offset 0: version {} (only version 1 is known)",
                    h.version
                ),
            ));
        }
        if h.grain_size == 0 || !h.grain_size.is_power_of_two() || h.grain_size > MAX_GRAIN_SECTORS
        {
            return Err(bad(format!(
                "grain size {} sectors is not a power of two from 1 to {MAX_GRAIN_SECTORS}",
                h.grain_size
            )));
        }
        if h.num_sectors == 0 {
            return Err(bad("capacity is 0 sectors".into()));
        }
        let needed = h.tables_needed();
        if u64::from(h.num_gd_entries) < needed {
            return Err(bad(format!(
                "{} grain directory entries cannot cover {} sectors ({needed} needed)",
                h.num_gd_entries, h.num_sectors
            )));
        }
        if u64::from(h.gd_offset) < HEADER_BYTES / SECTOR {
            return Err(bad(format!(
                "grain directory at sector {} lies inside the header",
                h.gd_offset
            )));
        }
        // u32 sectors times 512 and u32 entries times 4 cannot overflow a u64.
        let gd_end = u64::from(h.gd_offset) * SECTOR + u64::from(h.num_gd_entries) * 4;
        if gd_end > file.len() {
            return Err(bad(format!(
                "grain directory of {} entries at sector {} extends past the end of the file ({} bytes)",
                h.num_gd_entries,
                h.gd_offset,
                file.len()
            )));
        }
        let free = u64::from(h.free_sector) * SECTOR;
        if free < gd_end {
            return Err(bad(format!(
                "free sector {} lies inside the header or grain directory (which end at byte {gd_end})",
                h.free_sector
            )));
        }
        if free > file.len() {
            return Err(bad(format!(
                "free sector {} lies past the end of the file ({} bytes): the file is truncated",
                h.free_sector,
                file.len()
            )));
        }
        Ok(h)
    }
}

pub struct CowdExtent {
    file: InputFile,
    header: CowdHeader,
    /// Bytes of the extent that the disk uses (the descriptor's sector count).
    len: u64,
    /// The directory entries the capacity needs (entries past them are never used).
    gd: Vec<u32>,
    /// Byte offset where the header and directory end: nothing may point below it.
    metadata_end: u64,
    /// Byte offsets of every present grain table, sorted, to refuse grains inside them.
    tables: Vec<u64>,
    /// The most recently used grain table and its directory index.
    gt: Option<(u64, Vec<u32>)>,
    pub warnings: Vec<String>,
}

impl CowdExtent {
    /// Opens a COWD extent. `len` is the extent's size in bytes as the descriptor declares
    /// it; it may not exceed the header's capacity (a smaller one is used, with a warning).
    pub fn open(file: InputFile, len: u64) -> Result<Self> {
        let mut bytes = [0u8; HEADER_BYTES as usize];
        file.read_exact_at(&mut bytes, 0, "COWD header")?;
        let header = CowdHeader::parse(&bytes, &file)?;
        let path = file.path();
        let mut warnings = Vec::new();
        let capacity = header.capacity();
        if len > capacity {
            return Err(Error::corrupt(
                path,
                "COWD header",
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
        let needed = header.tables_needed();
        if u64::from(header.num_gd_entries) > needed {
            warnings.push(format!(
                "{}: COWD header lists {} grain directory entries where {needed} cover the disk; the rest are ignored",
                path.display(),
                header.num_gd_entries
            ));
        }
        if header.unclean_shutdown {
            warnings.push(format!(
                "{}: the COWD delta was not closed cleanly; its tables are read as they are",
                path.display()
            ));
        }
        let gd_at = u64::from(header.gd_offset) * SECTOR;
        // At most 2^20 entries (4 MiB), and inside the file: checked by parse.
        let mut raw = vec![0u8; needed as usize * 4];
        file.read_exact_at(&mut raw, gd_at, "COWD grain directory")?;
        let gd: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let metadata_end = (gd_at + u64::from(header.num_gd_entries) * 4).next_multiple_of(SECTOR);
        let tables = check_directory(&file, gd_at, &gd, metadata_end)?;
        Ok(CowdExtent {
            file,
            header,
            len,
            gd,
            metadata_end,
            tables,
            gt: None,
            warnings,
        })
    }

    pub fn header(&self) -> &CowdHeader {
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

    /// Where grain `index` (extent-relative, grain-sized units) is.
    pub fn grain(&mut self, index: u64) -> Result<GrainState> {
        if index >= self.len.div_ceil(self.header.grain_bytes()) {
            return Err(Error::corrupt(
                self.file.path(),
                "read request",
                index.saturating_mul(self.header.grain_bytes()),
                format!("grain {index} lies past the extent"),
            ));
        }
        let table = index / GT_ENTRIES;
        let gt_sector = self.gd[table as usize];
        if gt_sector == 0 {
            return Ok(GrainState::Unallocated);
        }
        let gt_at = u64::from(gt_sector) * SECTOR;
        if self.gt.as_ref().is_none_or(|(t, _)| *t != table) {
            let mut bytes = vec![0u8; GT_BYTES as usize];
            self.file
                .read_exact_at(&mut bytes, gt_at, "COWD grain table")?;
            let entries: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            self.check_table(table, gt_at, &entries)?;
            self.gt = Some((table, entries));
        }
        let within = index % GT_ENTRIES;
        let entry = self.gt.as_ref().expect("loaded above").1[within as usize];
        Ok(match entry {
            0 => GrainState::Unallocated,
            sector => GrainState::At(u64::from(sector) * SECTOR),
        })
    }

    /// Checks every entry of a freshly read table that the disk uses: grains must lie
    /// after the metadata, start inside the file, stay out of every grain table, and not
    /// share file space with each other.
    fn check_table(&self, table: u64, gt_at: u64, entries: &[u32]) -> Result<()> {
        let path = self.file.path();
        let grain_bytes = self.header.grain_bytes();
        let grains = self.len.div_ceil(grain_bytes);
        let mut used = Vec::new();
        for (j, &sector) in entries.iter().enumerate() {
            let index = table * GT_ENTRIES + j as u64;
            if sector == 0 || index >= grains {
                continue;
            }
            let at = u64::from(sector) * SECTOR;
            let entry_at = gt_at + j as u64 * 4;
            let bad =
                |detail: String| Error::corrupt(path, "COWD grain table entry", entry_at, detail);
            if at < self.metadata_end {
                return Err(bad(format!(
                    "grain {index} points at sector {sector}, inside the header or grain directory (which end at byte {})",
                    self.metadata_end
                )));
            }
            if at >= self.file.len() {
                return Err(bad(format!(
                    "grain {index} points at sector {sector}, past the end of the file ({} bytes)",
                    self.file.len()
                )));
            }
            if let Some(t) = table_overlapping(&self.tables, at, grain_bytes) {
                return Err(bad(format!(
                    "grain {index} at sector {sector} overlaps the grain table at byte {t}"
                )));
            }
            used.push((at, (index, entry_at)));
        }
        used.sort_unstable();
        grain::refuse_shared_grains(path, &used, grain_bytes)
    }

    /// Appends the runs of `[offset, offset + len)` (extent-relative), shifted by `base`:
    /// `Parent` where this link has nothing, `Data` where it stores the grain.
    pub fn map(&mut self, offset: u64, len: u64, base: u64, out: &mut Vec<DeltaRun>) -> Result<()> {
        grain::map(self, offset, len, base, out)
    }

    /// Fills `buf` with this link's view of `[offset, offset + buf.len())`
    /// (extent-relative): stored grains from the file, absent ones from `parent`, which is
    /// given extent-relative offsets.
    pub fn read_at(
        &mut self,
        offset: u64,
        buf: &mut [u8],
        parent: &mut ParentRead<'_>,
    ) -> Result<()> {
        grain::read(self, offset, buf, parent)
    }
}

impl GrainTables for CowdExtent {
    fn file(&self) -> &InputFile {
        &self.file
    }
    fn extent_len(&self) -> u64 {
        self.len
    }
    fn grain_bytes(&self) -> u64 {
        self.header.grain_bytes()
    }
    fn grains_per_table(&self) -> u64 {
        GT_ENTRIES
    }
    fn table_present(&self, table: u64) -> bool {
        self.gd.get(table as usize).is_some_and(|&e| e != 0)
    }
    fn grain(&mut self, index: u64) -> Result<GrainState> {
        CowdExtent::grain(self, index)
    }
}

/// Checks the directory's tables: each after the metadata, inside the file, and apart
/// from every other (two entries naming one table would show its grains twice). Returns
/// their byte offsets, sorted.
fn check_directory(
    file: &InputFile,
    gd_at: u64,
    gd: &[u32],
    metadata_end: u64,
) -> Result<Vec<u64>> {
    let mut tables = Vec::new();
    for (i, &sector) in gd.iter().enumerate() {
        if sector == 0 {
            continue;
        }
        let at = u64::from(sector) * SECTOR;
        let entry_at = gd_at + i as u64 * 4;
        let bad = |detail: String| {
            Error::corrupt(file.path(), "COWD grain directory entry", entry_at, detail)
        };
        if at < metadata_end {
            return Err(bad(format!(
                "grain table {i} at sector {sector} lies inside the header or grain directory (which end at byte {metadata_end})"
            )));
        }
        if at + GT_BYTES > file.len() {
            return Err(bad(format!(
                "grain table {i} at sector {sector} extends past the end of the file ({} bytes)",
                file.len()
            )));
        }
        tables.push((at, entry_at, i));
    }
    tables.sort_unstable();
    for w in tables.windows(2) {
        let ((a, _, i), (b, entry_at, j)) = (w[0], w[1]);
        if b < a + GT_BYTES {
            return Err(Error::corrupt(
                file.path(),
                "COWD grain directory entry",
                entry_at,
                format!("grain tables {i} and {j} overlap (bytes {a} and {b})"),
            ));
        }
    }
    Ok(tables.into_iter().map(|(at, _, _)| at).collect())
}

/// The start of a table in `sorted` that `[at, at + len)` overlaps, if any.
fn table_overlapping(sorted: &[u64], at: u64, len: u64) -> Option<u64> {
    // The last table starting before the grain ends is the only one that can overlap it.
    let i = sorted.partition_point(|&t| t < at + len);
    let t = *sorted[..i].last()?;
    (t + GT_BYTES > at).then_some(t)
}

/// Opens `bytes` as a COWD extent (the header's capacity standing in for the
/// descriptor's size) and maps and reads it: must never panic, whatever the bytes.
pub fn fuzz_cowd(bytes: &[u8]) {
    let Some(file) = grain::memory_input(bytes) else {
        return;
    };
    let mut head = [0u8; HEADER_BYTES as usize];
    if file.read_exact_at(&mut head, 0, "COWD header").is_err() {
        return;
    }
    let Ok(header) = CowdHeader::parse(&head, &file) else {
        return;
    };
    let Ok(mut extent) = CowdExtent::open(file, header.capacity()) else {
        return;
    };
    grain::fuzz_walk(&mut extent);
}

//! ESXi vmfsSparse redo logs (COWD, `*-delta.vmdk`): a 2048-byte header, a grain
//! directory of u32 sector offsets, grain tables of 4096 u32 sector offsets, grains.
//!
//! An entry of 0 (in the directory or a table) means "not in this link": the grain falls
//! through to the parent. COWD has no zeroed-grain marker (qemu never enables one for
//! these extents), so every other entry is a sector of this file.

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::disk::InputFile;
use crate::disk::Run;
use crate::error::{Error, Result};
use crate::vmdk::grain::{self, GrainState, GrainTables, ParentRead};

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
        grain::refuse_shared_grains(path, "COWD grain table entry", &used, grain_bytes)
    }

    /// Appends the runs of `[offset, offset + len)` (extent-relative), shifted by `base`:
    /// `Parent` where this link has nothing, `Data` where it stores the grain.
    pub fn map(&mut self, offset: u64, len: u64, base: u64, out: &mut Vec<Run>) -> Result<()> {
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
    let Some(file) = crate::disk::InputFile::from_memory(bytes) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::RunKind;
    use std::time::{Duration, Instant};
    use zerocopy::FromZeros;

    const S: usize = SECTOR as usize;

    /// A COWD image: header, directory at sector 4, then whatever `place` puts at which
    /// sector; freeSector = the end.
    fn image(
        num_sectors: u32,
        grain: u32,
        gd: &[u32],
        place: &[(u32, Vec<u8>)],
        len_sectors: u32,
    ) -> Vec<u8> {
        let mut h = RawCowdHeader::new_zeroed();
        h.magic = *MAGIC;
        h.version.set(1);
        h.flags.set(3);
        h.num_sectors.set(num_sectors);
        h.grain_size.set(grain);
        h.gd_offset.set(4);
        h.num_gd_entries.set(gd.len() as u32);
        h.free_sector.set(len_sectors);
        let mut out = vec![0u8; len_sectors as usize * S];
        out[..2048].copy_from_slice(h.as_bytes());
        for (i, e) in gd.iter().enumerate() {
            out[4 * S + i * 4..][..4].copy_from_slice(&e.to_le_bytes());
        }
        for (sector, bytes) in place {
            out[*sector as usize * S..][..bytes.len()].copy_from_slice(bytes);
        }
        out
    }

    fn table(entries: &[(usize, u32)]) -> Vec<u8> {
        let mut t = vec![0u8; GT_BYTES as usize];
        for &(j, sector) in entries {
            t[j * 4..j * 4 + 4].copy_from_slice(&sector.to_le_bytes());
        }
        t
    }

    /// Three tables of 512-byte grains (6 MiB); table 1 absent. Table 0 at sector 8
    /// stores grains 0 and 2 back to back at sectors 40-41, grain 4095 at 43; table 2 at
    /// sector 44 stores grain 8192 at 76.
    fn sample() -> Vec<u8> {
        image(
            3 * 4096,
            1,
            &[8, 0, 44],
            &[
                (8, table(&[(0, 40), (2, 41), (4095, 43)])),
                (40, vec![0x11; S]),
                (41, vec![0x22; S]),
                (43, vec![0x33; S]),
                (44, table(&[(0, 76)])),
                (76, vec![0x44; S]),
            ],
            77,
        )
    }

    fn open(bytes: &[u8]) -> Result<CowdExtent> {
        let file = InputFile::from_memory(bytes).expect("memfd");
        let mut head = [0u8; HEADER_BYTES as usize];
        file.read_exact_at(&mut head, 0, "COWD header")?;
        let cap = CowdHeader::parse(&head, &file)?.capacity();
        CowdExtent::open(file, cap)
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

    #[test]
    fn maps_whole_tables_and_merges_equal_states() {
        let mut x = open(&sample()).unwrap();
        let mut runs = Vec::new();
        x.map(0, x.len(), 1 << 40, &mut runs).unwrap();
        let want = [
            (0, 512, RunKind::Data),
            (512, 512, RunKind::Parent),
            (1024, 512, RunKind::Data),
            // The rest of table 0 up to its last grain, and all of absent table 1.
            (1536, 4095 * 512 - 1536, RunKind::Parent),
            (4095 * 512, 512, RunKind::Data),
            (4096 * 512, 4096 * 512, RunKind::Parent),
            (8192 * 512, 512, RunKind::Data),
            (8193 * 512, 4095 * 512, RunKind::Parent),
        ];
        let got: Vec<_> = runs
            .iter()
            .map(|r| (r.offset - (1 << 40), r.len, r.kind))
            .collect();
        assert_eq!(got, want);
        assert_eq!(x.grain(1).unwrap(), GrainState::Unallocated);
        assert_eq!(x.grain(2).unwrap(), GrainState::At(41 * SECTOR));
        assert_eq!(x.grain(5000).unwrap(), GrainState::Unallocated);
    }

    #[test]
    fn reads_fall_through_once_per_parent_range() {
        let mut x = open(&sample()).unwrap();
        let mut calls = Vec::new();
        let mut buf = vec![0u8; 3 * 4096 * S];
        x.read_at(0, &mut buf, &mut |at, b| {
            calls.push((at, b.len()));
            b.fill(0xEE);
            Ok(())
        })
        .unwrap();
        // Absent table 1 and the absent grains around it are one parent read.
        assert_eq!(
            calls,
            [
                (512, 512),
                (1536, 4095 * 512 - 1536),
                (4096 * 512, 4096 * 512),
                (8193 * 512, 4095 * 512)
            ]
        );
        assert!(buf[..S].iter().all(|&b| b == 0x11));
        assert!(buf[S..2 * S].iter().all(|&b| b == 0xEE));
        assert!(buf[2 * S..3 * S].iter().all(|&b| b == 0x22));
        assert!(buf[4095 * S..4096 * S].iter().all(|&b| b == 0x33));
        assert!(buf[8192 * S..8193 * S].iter().all(|&b| b == 0x44));
        // A read starting inside a grain and ending inside another.
        let mut small = [0u8; 700];
        x.read_at(300, &mut small, &mut |_, b| {
            b.fill(0xEE);
            Ok(())
        })
        .unwrap();
        assert!(small[..212].iter().all(|&b| b == 0x11));
        assert!(small[212..].iter().all(|&b| b == 0xEE));
    }

    #[test]
    fn a_descriptor_extent_smaller_than_the_capacity_is_used_with_a_warning() {
        let file = InputFile::from_memory(&sample()).unwrap();
        let x = CowdExtent::open(file, 4096 * 512).unwrap();
        assert_eq!(x.warnings.len(), 1, "{:?}", x.warnings);
        let file = InputFile::from_memory(&sample()).unwrap();
        let e = CowdExtent::open(file, 4 * 4096 * 512).err().unwrap();
        assert_eq!(corrupt_at(e).0, "COWD header");
    }

    /// Each case: the bytes, then the structure and offset the error must name.
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

    fn set(mut bytes: Vec<u8>, at: usize, value: u32) -> Vec<u8> {
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        bytes
    }

    #[test]
    fn hostile_headers_are_refused_before_anything_is_allocated() {
        // 2^32 - 1 directory entries: 16 GiB of directory in a 38 KiB file.
        refused(
            set(sample(), 24, u32::MAX),
            "COWD header",
            0,
            "past the end",
        );
        // Fewer entries than the capacity needs.
        refused(set(sample(), 24, 2), "COWD header", 0, "cannot cover");
        refused(set(sample(), 16, 3), "COWD header", 0, "power of two");
        refused(set(sample(), 16, 4096), "COWD header", 0, "power of two");
        refused(set(sample(), 12, 0), "COWD header", 0, "capacity is 0");
        refused(set(sample(), 20, 2), "COWD header", 0, "inside the header");
        refused(
            set(sample(), 28, 4),
            "COWD header",
            0,
            "inside the header or grain directory",
        );
        refused(set(sample(), 28, 78), "COWD header", 0, "truncated");
        refused(set(sample(), 0, 0x4457_4F44), "COWD header", 0, "magic");
        let e = open(&set(sample(), 4, 2)).err().unwrap();
        assert!(e.kind() == crate::error::ErrorKind::Unsupported, "{e}");
    }

    #[test]
    fn hostile_tables_name_the_entry() {
        let gd = 4 * SECTOR;
        refused(
            set(sample(), gd as usize, 4),
            "COWD grain directory entry",
            gd,
            "inside the header",
        );
        refused(
            set(sample(), gd as usize + 8, 70),
            "COWD grain directory entry",
            gd + 8,
            "past the end",
        );
        // Table 2 placed over table 0's second half.
        refused(
            set(sample(), gd as usize + 8, 24),
            "COWD grain directory entry",
            gd + 8,
            "overlap",
        );
        let gte = |j: u64| 8 * SECTOR + j * 4;
        let mut x = open(&set(sample(), gte(1) as usize, 2)).unwrap();
        let (s, o, d) = corrupt_at(x.grain(1).err().unwrap());
        assert_eq!((s, o), ("COWD grain table entry", gte(1)), "{d}");
        assert!(d.contains("inside the header"), "{d}");
        for (value, needle) in [
            (77, "past the end"),
            (9, "grain table at byte 4096"),
            (40, "share file space"),
        ] {
            let mut x = open(&set(sample(), gte(1) as usize, value)).unwrap();
            let (s, o, d) = corrupt_at(x.grain(0).err().unwrap());
            assert_eq!((s, o), ("COWD grain table entry", gte(1)), "{d}");
            assert!(d.contains(needle), "{d:?} should say {needle:?}");
        }
    }

    #[test]
    fn fuzz_entry_point_survives_damage() {
        let good = sample();
        fuzz_cowd(&good);
        fuzz_cowd(&[]);
        fuzz_cowd(&good[..2048]);
        fuzz_cowd(&good[..3000]);
        let mut rng = 0x1234_5678_9abc_def0u64;
        for _ in 0..200 {
            let mut b = good.clone();
            for _ in 0..8 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let at = (rng % b.len() as u64) as usize;
                b[at] = (rng >> 32) as u8;
            }
            fuzz_cowd(&b);
        }
    }
}

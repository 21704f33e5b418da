//! A hosted sparse extent (KDMV): grain directory, grain tables, plain or compressed grains.
//!
//! The grain directory is read a window at a time and grain tables are loaded on use into
//! a small cache, each with its entries summarised as runs of one state, so memory stays
//! bounded whatever the header claims and a map walks whole tables and runs at once.

use crate::disk::table::{Entry, Table};
use crate::disk::{InputFile, Run, RunKind, push_run};
use crate::error::{Error, Result};
use crate::rules;
use crate::vmdk::header::{GD_AT_END, SECTOR, SparseHeader};
use crate::vmdk::stream::{self, Inflater};

/// Most grain directory entries accepted: 16M tables (512 TiB at the default grain and
/// table sizes, 4 TiB at one-sector grains). Bounds the time any walk of the map takes.
pub const MAX_GD_ENTRIES: u64 = 1 << 24;
/// Grain tables kept in memory at once.
const TABLE_CACHE: usize = 8;

/// Where a grain's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grain {
    /// Not in this extent: zeros, or the parent's data in a delta.
    Unallocated,
    /// Explicitly zeroed (GTE 1 with the zeroed-grain flag): zeros, hiding any parent.
    Zero,
    /// Stored at this byte offset of the file (a compressed record when the extent is
    /// compressed).
    At(u64),
}

/// The state of a run of grain table entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Unallocated,
    Zero,
    Data,
    /// Points inside the metadata or past the end of the file.
    Bad,
}

/// A grain table as loaded: its entries, and the same entries as runs of one state.
struct GrainTable {
    /// Sector of the table in the file (the cache key).
    sector: u64,
    entries: Vec<u32>,
    /// (first entry, entry count, state).
    runs: Vec<(u32, u32, Slot)>,
}

pub struct SparseExtent {
    file: InputFile,
    header: SparseHeader,
    /// Bytes of the extent that the disk uses (the descriptor's sector count).
    len: u64,
    /// Whether unallocated grains fall through to a parent (a delta's extent).
    has_parent: bool,
    gd: Table,
    /// Recently used grain tables, most recent first.
    tables: Vec<GrainTable>,
    /// The most recently inflated grain (compressed extents only).
    grain: Option<(u64, Vec<u8>)>,
    /// One decoder per inflating worker; the first also serves single grains.
    inflaters: Vec<Inflater>,
    pub warnings: Vec<String>,
}

impl SparseExtent {
    /// Opens a sparse extent whose header has been parsed. `len` is the extent's size in
    /// bytes as the descriptor declares it; it may not exceed the header's capacity.
    /// `has_parent`: the extent belongs to a delta, whose unallocated grains read the
    /// parent's data.
    pub fn open(
        file: InputFile,
        mut header: SparseHeader,
        len: u64,
        has_parent: bool,
    ) -> Result<Self> {
        let mut warnings = Vec::new();
        if header.gd_offset == GD_AT_END {
            header.gd_offset = footer_gd_offset(&file, &header)?;
        }
        let capacity = header.capacity * SECTOR;
        if len > capacity {
            return Err(Error::broken(
                file.path(),
                &rules::VMDK_HEADER,
                "sparse header",
                12,
                format!(
                    "capacity {capacity} bytes is smaller than the descriptor's extent of {len} bytes"
                ),
            ));
        }
        if len < capacity {
            warnings.push(format!(
                "{}: capacity {capacity} bytes exceeds the descriptor's extent of {len} bytes; using the descriptor",
                file.path().display()
            ));
        }
        let gd = directory(&file, &header, header.gd_offset, "grain directory")?;
        Ok(SparseExtent {
            file,
            header,
            len,
            has_parent,
            gd,
            tables: Vec::new(),
            grain: None,
            inflaters: vec![Inflater::default()],
            warnings,
        })
    }

    pub fn header(&self) -> &SparseHeader {
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

    /// Sectors a stored grain surely occupies: a whole grain when plain; compressed
    /// records vary in length, so only identical starts surely collide.
    fn occupied_sectors(&self) -> u64 {
        if self.header.compressed() {
            1
        } else {
            self.header.grain_size
        }
    }

    /// The state of a grain table entry.
    fn classify(&self, entry: u32) -> Slot {
        let e = u64::from(entry);
        match entry {
            0 => Slot::Unallocated,
            1 if self.header.has_zeroed_gte() => Slot::Zero,
            _ if e < self.header.over_head || e * SECTOR >= self.file.len() => Slot::Bad,
            _ => Slot::Data,
        }
    }

    /// Makes the grain table at `sector` the first in the cache, reading it when absent.
    /// A table whose grains share file space is refused: a crafted table could otherwise
    /// make one stored grain appear at many places of the disk (`check` also looks across
    /// tables).
    fn load_table(&mut self, sector: u64) -> Result<&GrainTable> {
        if let Some(i) = self.tables.iter().position(|t| t.sector == sector) {
            let t = self.tables.remove(i);
            self.tables.insert(0, t);
            return Ok(&self.tables[0]);
        }
        let per_gt = self.header.num_gtes_per_gt as usize;
        let offset = sector * SECTOR;
        let mut bytes = vec![0u8; per_gt * 4];
        self.file.read_exact_at(&mut bytes, offset, "grain table")?;
        let entries: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut used: Vec<(u64, usize)> = entries
            .iter()
            .enumerate()
            .filter(|&(_, &e)| self.classify(e) == Slot::Data)
            .map(|(i, &e)| (u64::from(e), i))
            .collect();
        used.sort_unstable();
        if let Some(((a, i), (b, j))) = overlapping(&used, self.occupied_sectors()).next() {
            return Err(Error::broken(
                self.file.path(),
                &rules::VMDK_GRAIN_OVERLAP,
                "grain table entry",
                offset + j as u64 * 4,
                format!("entries {i} and {j} place grains at overlapping sectors {a} and {b}"),
            ));
        }
        let mut runs: Vec<(u32, u32, Slot)> = Vec::new();
        for (i, &e) in entries.iter().enumerate() {
            let slot = self.classify(e);
            match runs.last_mut() {
                Some(last) if last.2 == slot => last.1 += 1,
                _ => runs.push((i as u32, 1, slot)),
            }
        }
        if self.tables.len() >= TABLE_CACHE {
            self.tables.pop();
        }
        self.tables.insert(
            0,
            GrainTable {
                sector,
                entries,
                runs,
            },
        );
        Ok(&self.tables[0])
    }

    fn grain(&mut self, index: u64) -> Result<Grain> {
        let per_gt = u64::from(self.header.num_gtes_per_gt);
        let gd_index = index / per_gt;
        let gt_sector = self.gd.get(&self.file, gd_index)?;
        if gt_sector == 0 {
            return Ok(Grain::Unallocated);
        }
        let entry = self.load_table(gt_sector)?.entries[(index % per_gt) as usize];
        let gte_offset = gt_sector * SECTOR + (index % per_gt) * 4;
        match self.classify(entry) {
            Slot::Unallocated => Ok(Grain::Unallocated),
            Slot::Zero => Ok(Grain::Zero),
            Slot::Data => Ok(Grain::At(u64::from(entry) * SECTOR)),
            Slot::Bad if u64::from(entry) < self.header.over_head => Err(Error::broken(
                self.file.path(),
                &rules::VMDK_GTE_IN_METADATA,
                "grain table entry",
                gte_offset,
                format!(
                    "grain {index} points at sector {entry}, inside the metadata (which ends at sector {})",
                    self.header.over_head
                ),
            )),
            Slot::Bad => Err(Error::truncated(
                self.file.path(),
                "grain table entry",
                gte_offset,
                format!(
                    "grain {index} points at sector {entry}, past the end of the file ({} bytes)",
                    self.file.len()
                ),
            )
            .with_rule(&rules::VMDK_TRUNCATED)),
        }
    }

    fn unallocated(&self) -> RunKind {
        if self.has_parent {
            RunKind::Parent
        } else {
            RunKind::Zero
        }
    }

    /// Appends the allocation runs of `[offset, offset + len)` (extent-relative) to `out`,
    /// shifted by `base`: a whole table's range at once when its directory entry is empty,
    /// and a table's runs of equal entries at once otherwise.
    pub fn map(&mut self, offset: u64, len: u64, base: u64, out: &mut Vec<Run>) -> Result<()> {
        let grain_bytes = self.header.grain_bytes();
        let coverage = self.header.gt_coverage();
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let gd_index = pos / coverage;
            let table_start = gd_index * coverage;
            let table_end = (table_start + coverage).min(end);
            let gt_sector = self.gd.get(&self.file, gd_index)?;
            if gt_sector == 0 {
                push_run(out, base + pos, table_end - pos, self.unallocated());
                pos = table_end;
                continue;
            }
            let unallocated = self.unallocated();
            let first = (pos - table_start) / grain_bytes;
            let mut bad = None;
            let table = self.load_table(gt_sector)?;
            for &(run_first, count, slot) in &table.runs {
                let (run_first, run_end) = (
                    u64::from(run_first),
                    u64::from(run_first) + u64::from(count),
                );
                if run_end <= first {
                    continue;
                }
                let from = (table_start + run_first * grain_bytes).max(pos);
                let to = (table_start + run_end * grain_bytes).min(table_end);
                if from >= to {
                    break;
                }
                let kind = match slot {
                    Slot::Unallocated => unallocated,
                    Slot::Zero => RunKind::Zero,
                    Slot::Data => RunKind::Data,
                    Slot::Bad => {
                        bad = Some(from / grain_bytes);
                        break;
                    }
                };
                push_run(out, base + from, to - from, kind);
            }
            if let Some(index) = bad {
                // Let the lookup name the entry and what is wrong with it.
                self.grain(index)?;
            }
            pos = table_end;
        }
        Ok(())
    }

    /// Reads extent-relative bytes.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let grain_bytes = self.header.grain_bytes();
        let mut done = 0usize;
        if self.header.compressed() && offset % grain_bytes == 0 {
            done = self.inflate_whole_grains(offset, buf)?;
        }
        while done < buf.len() {
            let pos = offset + done as u64;
            let index = pos / grain_bytes;
            let within = pos % grain_bytes;
            let n = ((grain_bytes - within) as usize).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match self.grain(index)? {
                Grain::Zero | Grain::Unallocated => dst.fill(0),
                Grain::At(at) if !self.header.compressed() => {
                    self.file.read_exact_at(dst, at + within, "grain")?;
                }
                Grain::At(at) => {
                    let grain = self.inflate(index, at)?;
                    dst.copy_from_slice(&grain[within as usize..within as usize + n]);
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Inflates the whole grains at the start of an aligned read on all cores (this thread
    /// and helpers), each with its own decoder, straight into `buf`. Returns the bytes
    /// done; the rest (a partial grain, the extent's partial last grain) is left to the
    /// caller.
    fn inflate_whole_grains(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        const MIN_GRAINS_PER_WORKER: usize = 4;
        let grain_bytes = self.header.grain_bytes() as usize;
        let first = offset / grain_bytes as u64;
        // Whole grains in the buffer that are also whole in the extent.
        let in_extent = ((self.len - offset) / grain_bytes as u64) as usize;
        let count = (buf.len() / grain_bytes).min(in_extent);
        if count < 2 * MIN_GRAINS_PER_WORKER {
            return Ok(0);
        }
        let mut places = Vec::with_capacity(count);
        for i in 0..count as u64 {
            places.push(self.grain(first + i)?);
        }
        // The process's budget per conversion (every core, or a batch's share of them).
        let workers = crate::threads::per_conversion().min(count / MIN_GRAINS_PER_WORKER);
        if self.inflaters.len() < workers {
            self.inflaters.resize_with(workers, Inflater::default);
        }
        let (file, header) = (&self.file, &self.header);
        let grains = buf[..count * grain_bytes].chunks_mut(grain_bytes);
        // Grains differ in how long they take to inflate, so each thread claims the next
        // one in turn rather than a fixed share: no core idles while the other finishes.
        let jobs: Vec<GrainSlot> = (first..)
            .zip(places)
            .zip(grains)
            .map(|((i, p), g)| std::sync::Mutex::new(Some((i, p, g))))
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (jobs, next) = (&jobs, &next);
        let work = move |inflater: &mut Inflater| -> Result<()> {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(slot) = jobs.get(i) else {
                    return Ok(());
                };
                let (index, place, out) = slot
                    .lock()
                    .expect("a grain slot")
                    .take()
                    .expect("each grain claimed once");
                match place {
                    Grain::Zero | Grain::Unallocated => out.fill(0),
                    Grain::At(at) => {
                        let needed = out.len();
                        stream::read_compressed_grain(
                            file,
                            header,
                            at,
                            index * header.grain_size,
                            out,
                            needed,
                            inflater,
                        )?;
                    }
                }
            }
        };
        std::thread::scope(|scope| {
            let (own, helpers) = self.inflaters[..workers]
                .split_first_mut()
                .expect("at least one inflater");
            let handles: Vec<_> = helpers
                .iter_mut()
                .map(|inflater| scope.spawn(move || work(inflater)))
                .collect();
            // This thread inflates too rather than waiting idle for its helpers.
            let own_result = work(own);
            handles
                .into_iter()
                .map(|h| h.join().expect("inflate worker panicked"))
                .fold(own_result, Result::and)
        })?;
        Ok(count * grain_bytes)
    }

    fn inflate(&mut self, index: u64, at: u64) -> Result<&[u8]> {
        if self.grain.as_ref().is_none_or(|(i, _)| *i != index) {
            let grain_bytes = self.header.grain_bytes();
            let mut data = self
                .grain
                .take()
                .map(|(_, d)| d)
                .unwrap_or_else(|| vec![0u8; grain_bytes as usize]);
            let start = index * grain_bytes;
            let needed = grain_bytes.min(self.len - start) as usize;
            let produced = stream::read_compressed_grain(
                &self.file,
                &self.header,
                at,
                index * self.header.grain_size,
                &mut data,
                needed,
                &mut self.inflaters[0],
            )?;
            data[produced..].fill(0);
            self.grain = Some((index, data));
        }
        Ok(&self.grain.as_ref().unwrap().1)
    }
}

/// One grain for an inflate worker to claim: its index, where it is stored, and its
/// place in the chunk; taken (None) once claimed.
type GrainSlot<'a> = std::sync::Mutex<Option<(u64, Grain, &'a mut [u8])>>;

/// Neighbouring pairs of `sorted` grain starts (in sectors) closer than `span` sectors.
pub(crate) fn overlapping<T: Copy>(
    sorted: &[(u64, T)],
    span: u64,
) -> impl Iterator<Item = ((u64, T), (u64, T))> + '_ {
    sorted
        .windows(2)
        .filter(move |w| w[1].0 < w[0].0 + span)
        .map(|w| (w[0], w[1]))
}

/// The grain directory at `sector` as a windowed table, checked to lie inside the file
/// and to be no larger than MAX_GD_ENTRIES before anything is read.
pub fn directory(
    file: &InputFile,
    header: &SparseHeader,
    sector: u64,
    structure: &'static str,
) -> Result<Table> {
    let entries = header.gd_entries();
    if entries > MAX_GD_ENTRIES {
        return Err(Error::unsupported(
            file.path(),
            format!(
                "{structure}: {entries} grain tables (at most {MAX_GD_ENTRIES} are read); is the capacity in the header right?"
            ),
        ));
    }
    let offset = sector.checked_mul(SECTOR).filter(|_| sector != 0);
    let Some(offset) = offset else {
        return Err(Error::broken(
            file.path(),
            &rules::VMDK_GD_BEYOND_EOF,
            structure,
            0,
            format!("sector {sector} cannot hold a grain directory"),
        ));
    };
    Table::new(file, offset, entries, Entry::U32Le, structure)
}

/// The grain directory position a streamOptimized footer gives (ESXi/ovftool layout).
fn footer_gd_offset(file: &InputFile, header: &SparseHeader) -> Result<u64> {
    let footer_at = stream::find_footer(file, header.over_head)?;
    let mut bytes = [0u8; 512];
    file.read_exact_at(&mut bytes, footer_at, "stream footer")?;
    let footer = SparseHeader::parse(&bytes, file.path(), footer_at)?;
    let bad = |detail: &str| {
        Error::broken(
            file.path(),
            &rules::VMDK_STREAM,
            "stream footer",
            footer_at,
            detail,
        )
    };
    if footer.capacity != header.capacity
        || footer.grain_size != header.grain_size
        || footer.num_gtes_per_gt != header.num_gtes_per_gt
    {
        return Err(bad(
            "capacity, grain size or table size differs from the header",
        ));
    }
    if footer.gd_offset == GD_AT_END {
        return Err(bad("footer does not give the grain directory's position"));
    }
    tracing::debug!(
        "{}: stream footer at byte {footer_at}, grain directory at sector {}",
        file.path().display(),
        footer.gd_offset
    );
    Ok(footer.gd_offset)
}

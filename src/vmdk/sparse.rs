//! A hosted sparse extent (KDMV): grain directory, grain tables, plain or compressed grains.

use crate::disk::{InputFile, Run, RunKind, push_run};
use crate::error::{Error, Result};
use crate::vmdk::header::{FLAG_REDUNDANT_GD, GD_AT_END, SECTOR, SparseHeader};
use crate::vmdk::stream::{self, Inflater};

/// Where a grain's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grain {
    /// Unallocated or explicitly zeroed: reads as zeros.
    Zero,
    /// Stored at this byte offset of the file (a compressed record when the extent is
    /// compressed).
    At(u64),
}

pub struct SparseExtent {
    file: InputFile,
    header: SparseHeader,
    /// Bytes of the extent that the disk uses (the descriptor's sector count).
    len: u64,
    gd: Vec<u32>,
    /// The most recently used grain table and its directory index.
    gt: Option<(usize, Vec<u32>)>,
    /// The most recently inflated grain (compressed extents only).
    grain: Option<(u64, Vec<u8>)>,
    /// One decoder per inflating worker; the first also serves single grains.
    inflaters: Vec<Inflater>,
    pub warnings: Vec<String>,
}

impl SparseExtent {
    /// Opens a sparse extent whose header has been parsed. `len` is the extent's size in
    /// bytes as the descriptor declares it; it may not exceed the header's capacity.
    pub fn open(file: InputFile, mut header: SparseHeader, len: u64) -> Result<Self> {
        let mut warnings = Vec::new();
        if header.gd_offset == GD_AT_END {
            let footer_at = stream::find_footer(&file, header.over_head)?;
            let mut bytes = [0u8; 512];
            file.read_exact_at(&mut bytes, footer_at, "stream footer")?;
            let footer = SparseHeader::parse(&bytes, file.path(), footer_at)?;
            if footer.capacity != header.capacity
                || footer.grain_size != header.grain_size
                || footer.num_gtes_per_gt != header.num_gtes_per_gt
            {
                return Err(Error::corrupt(
                    file.path(),
                    "stream footer",
                    footer_at,
                    "capacity, grain size or table size differs from the header",
                ));
            }
            if footer.gd_offset == GD_AT_END {
                return Err(Error::corrupt(
                    file.path(),
                    "stream footer",
                    footer_at,
                    "footer does not give the grain directory's position",
                ));
            }
            tracing::debug!(
                "{}: stream footer at byte {footer_at}, grain directory at sector {}",
                file.path().display(),
                footer.gd_offset
            );
            header.gd_offset = footer.gd_offset;
        }
        let capacity = header.capacity * SECTOR;
        if len > capacity {
            return Err(Error::corrupt(
                file.path(),
                "sparse header",
                0,
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
        let gd = read_directory(&file, &header, header.gd_offset, "grain directory")?;
        if header.flags & FLAG_REDUNDANT_GD != 0 && header.rgd_offset != 0 {
            match read_directory(
                &file,
                &header,
                header.rgd_offset,
                "redundant grain directory",
            ) {
                Ok(rgd) => {
                    let differ = gd
                        .iter()
                        .zip(&rgd)
                        .filter(|(a, b)| (**a == 0) != (**b == 0))
                        .count();
                    if differ > 0 {
                        warnings.push(format!(
                            "{}: primary and redundant grain directories disagree in {differ} entries; using the primary",
                            file.path().display()
                        ));
                    }
                }
                Err(e) => warnings.push(format!("redundant grain directory unreadable: {e}")),
            }
        }
        Ok(SparseExtent {
            file,
            header,
            len,
            gd,
            gt: None,
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

    /// Refuses a grain table whose grains share file space: a crafted table could
    /// otherwise make one stored grain appear at many places of the disk. (`check`
    /// also looks across tables.)
    fn refuse_overlaps(&self, table: &[u32], table_offset: u64) -> Result<()> {
        let zeroed = self.header.has_zeroed_gte();
        let mut used: Vec<(u64, usize)> = table
            .iter()
            .enumerate()
            // Entries inside the metadata are refused, with their own message, when read.
            .filter(|&(_, &e)| {
                e != 0 && !(e == 1 && zeroed) && u64::from(e) >= self.header.over_head
            })
            .map(|(i, &e)| (u64::from(e), i))
            .collect();
        used.sort_unstable();
        match overlapping(&used, self.occupied_sectors()).next() {
            Some(((a, i), (b, j))) => Err(Error::corrupt(
                self.file.path(),
                "grain table entry",
                table_offset + j as u64 * 4,
                format!("entries {i} and {j} place grains at overlapping sectors {a} and {b}"),
            )),
            None => Ok(()),
        }
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

    /// Structural problems of the tables as (rule, file offset, message), at most `limit`:
    /// grain tables outside the file, entries inside the metadata or past the end of the
    /// file, grains used twice, and primary and redundant tables that disagree.
    pub fn check(&self, limit: usize) -> Result<Vec<(&'static str, u64, String)>> {
        let mut out = Vec::new();
        let h = &self.header;
        let per_gt = u64::from(h.num_gtes_per_gt);
        let grains = self.len.div_ceil(h.grain_bytes());
        let gt_bytes = per_gt * 4;
        let rgd = if h.flags & FLAG_REDUNDANT_GD != 0 && h.rgd_offset != 0 {
            read_directory(&self.file, h, h.rgd_offset, "redundant grain directory").ok()
        } else {
            None
        };
        let mut starts = Vec::new();
        for (i, &gt_sector) in self.gd.iter().enumerate() {
            if out.len() >= limit {
                break;
            }
            let gd_entry_at = h.gd_offset * SECTOR + i as u64 * 4;
            if gt_sector == 0 {
                continue;
            }
            let gt_at = u64::from(gt_sector) * SECTOR;
            if gt_at + gt_bytes > self.file.len() {
                out.push((
                    "vmdk-gt-beyond-eof",
                    gd_entry_at,
                    format!("grain table {i} at {gt_at} extends past the end of the file"),
                ));
                continue;
            }
            let mut bytes = vec![0u8; gt_bytes as usize];
            self.file.read_exact_at(&mut bytes, gt_at, "grain table")?;
            if let Some(rgd) = &rgd
                && let Some(&r) = rgd.get(i)
            {
                let r_at = u64::from(r) * SECTOR;
                let mut copy = vec![0u8; gt_bytes as usize];
                if r == 0 || r_at + gt_bytes > self.file.len() {
                    out.push((
                        "vmdk-redundant-differs",
                        gt_at,
                        format!("grain table {i} has no usable redundant copy"),
                    ));
                } else {
                    self.file
                        .read_exact_at(&mut copy, r_at, "redundant grain table")?;
                    if copy != bytes {
                        out.push((
                            "vmdk-redundant-differs",
                            r_at,
                            format!("redundant grain table {i} differs from the primary"),
                        ));
                    }
                }
            }
            for (j, c) in bytes.chunks_exact(4).enumerate() {
                let grain = i as u64 * per_gt + j as u64;
                let entry = u64::from(u32::from_le_bytes(c.try_into().unwrap()));
                let at = gt_at + j as u64 * 4;
                if entry == 0 || (entry == 1 && h.has_zeroed_gte()) || grain >= grains {
                    continue;
                }
                if entry < h.over_head {
                    out.push(("vmdk-gte-in-metadata", at, format!("grain {grain} points at sector {entry}, inside the metadata (ends at sector {})", h.over_head)));
                } else if entry * SECTOR >= self.file.len() {
                    out.push((
                        "vmdk-gte-beyond-eof",
                        at,
                        format!("grain {grain} points at sector {entry}, past the end of the file"),
                    ));
                } else {
                    starts.push((entry, (grain, at)));
                }
            }
        }
        starts.sort_unstable();
        for ((a, (ga, _)), (b, (gb, at))) in overlapping(&starts, self.occupied_sectors()) {
            if out.len() >= limit {
                break;
            }
            out.push((
                "vmdk-grain-overlap",
                at,
                format!("grain {gb} at sector {b} overlaps grain {ga} at sector {a}"),
            ));
        }
        out.truncate(limit);
        Ok(out)
    }

    fn grain(&mut self, index: u64) -> Result<Grain> {
        let per_gt = u64::from(self.header.num_gtes_per_gt);
        let gd_index = (index / per_gt) as usize;
        let gt_sector = self.gd[gd_index];
        if gt_sector == 0 {
            return Ok(Grain::Zero);
        }
        if self.gt.as_ref().is_none_or(|(i, _)| *i != gd_index) {
            let offset = u64::from(gt_sector) * SECTOR;
            let mut bytes = vec![0u8; per_gt as usize * 4];
            self.file.read_exact_at(&mut bytes, offset, "grain table")?;
            let table: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            self.refuse_overlaps(&table, offset)?;
            self.gt = Some((gd_index, table));
        }
        let entry = self.gt.as_ref().unwrap().1[(index % per_gt) as usize];
        let gte_offset = u64::from(gt_sector) * SECTOR + (index % per_gt) * 4;
        match entry {
            0 => Ok(Grain::Zero),
            1 if self.header.has_zeroed_gte() => Ok(Grain::Zero),
            sector if u64::from(sector) < self.header.over_head => Err(Error::corrupt(
                self.file.path(),
                "grain table entry",
                gte_offset,
                format!(
                    "grain {index} points at sector {sector}, inside the metadata (which ends at sector {})",
                    self.header.over_head
                ),
            )),
            sector if u64::from(sector) * SECTOR >= self.file.len() => Err(Error::corrupt(
                self.file.path(),
                "grain table entry",
                gte_offset,
                format!(
                    "grain {index} points at sector {sector}, past the end of the file ({} bytes)",
                    self.file.len()
                ),
            )),
            sector => Ok(Grain::At(u64::from(sector) * SECTOR)),
        }
    }

    /// Appends the allocation runs of `[offset, offset + len)` (extent-relative) to `out`,
    /// shifted by `base`.
    pub fn map(&mut self, offset: u64, len: u64, base: u64, out: &mut Vec<Run>) -> Result<()> {
        let grain_bytes = self.header.grain_bytes();
        let coverage = self.header.gt_coverage();
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let gd_index = (pos / coverage) as usize;
            if self.gd[gd_index] == 0 {
                // A whole table's range is unallocated: skip it without looking at grains.
                let table_end = ((gd_index as u64 + 1) * coverage).min(end);
                push_run(out, base + pos, table_end - pos, RunKind::Zero);
                pos = table_end;
                continue;
            }
            let index = pos / grain_bytes;
            let grain_end = ((index + 1) * grain_bytes).min(end);
            let kind = match self.grain(index)? {
                Grain::Zero => RunKind::Zero,
                Grain::At(_) => RunKind::Data,
            };
            push_run(out, base + pos, grain_end - pos, kind);
            pos = grain_end;
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
                Grain::Zero => dst.fill(0),
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
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(count / MIN_GRAINS_PER_WORKER);
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
                    Grain::Zero => out.fill(0),
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
fn overlapping<T: Copy>(
    sorted: &[(u64, T)],
    span: u64,
) -> impl Iterator<Item = ((u64, T), (u64, T))> + '_ {
    sorted
        .windows(2)
        .filter(move |w| w[1].0 < w[0].0 + span)
        .map(|w| (w[0], w[1]))
}

/// Reads a grain directory, checking it lies inside the file before allocating it.
fn read_directory(
    file: &InputFile,
    header: &SparseHeader,
    sector: u64,
    structure: &'static str,
) -> Result<Vec<u32>> {
    let entries = header.gd_entries();
    let offset = sector.checked_mul(SECTOR);
    let bytes_len = entries.checked_mul(4);
    match (offset, bytes_len) {
        (Some(offset), Some(bytes_len))
            if sector != 0
                && offset
                    .checked_add(bytes_len)
                    .is_some_and(|e| e <= file.len()) =>
        {
            let mut bytes = vec![0u8; bytes_len as usize];
            file.read_exact_at(&mut bytes, offset, structure)?;
            Ok(bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect())
        }
        _ => Err(Error::corrupt(
            file.path(),
            structure,
            offset.unwrap_or(u64::MAX),
            format!(
                "{entries} entries at sector {sector} do not fit in the file ({} bytes)",
                file.len()
            ),
        )),
    }
}

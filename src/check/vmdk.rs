//! VMDK rules: the descriptor, each extent's header, grain directory and tables, grain
//! placement and overlap, redundant copies and stream records. Every extent is checked
//! and every broken rule reported; a damaged piece stops only the checks that depend on it.

use std::path::Path;

use super::{Findings, as_finding};
use crate::detect::Format;
use crate::disk::{Folder, InputFile, OpenError, OpenOptions};
use crate::error::Result;
use crate::rules::{self, *};
use crate::vmdk::descriptor::{Access, Descriptor, ExtentType};
use crate::vmdk::header::{FLAG_REDUNDANT_GD, GD_AT_END, SECTOR, SparseHeader};
use crate::vmdk::sparse::{directory, overlapping};
use crate::vmdk::stream;

/// Largest text descriptor read.
const MAX_TEXT_DESCRIPTOR: u64 = 1 << 20;
/// Grain starts collected for the overlap check (16 bytes each).
const MAX_GRAINS_TRACKED: usize = 4 << 20;

pub fn check(
    file: InputFile,
    format: Format,
    options: &OpenOptions,
    f: &mut Findings,
) -> Result<()> {
    if format == Format::VmdkSparse {
        return check_sparse_file(&file, f, options);
    }
    if file.len() > MAX_TEXT_DESCRIPTOR {
        f.add(
            &VMDK_DESCRIPTOR,
            0,
            format!(
                "text descriptor is {} bytes; at most {MAX_TEXT_DESCRIPTOR} are read",
                file.len()
            ),
        );
        return Ok(());
    }
    let mut text = vec![0u8; file.len() as usize];
    file.read_exact_at(&mut text, 0, "descriptor")?;
    let descriptor = match Descriptor::parse_bytes(&text) {
        Ok(d) => d,
        Err(e) => {
            f.add(
                &VMDK_DESCRIPTOR,
                None,
                format!("descriptor line {}: {}", e.line, e.detail),
            );
            return Ok(());
        }
    };
    let dir = Folder::of(file.path())?;
    for line in &descriptor.extents {
        options.cancel.check()?;
        if line.access == Access::Noaccess || line.kind == ExtentType::Zero {
            continue;
        }
        let name = line.file.as_deref().unwrap_or_default();
        let extent = match dir.open(Path::new(name), !options.allow_outside_paths) {
            Ok(x) => x,
            Err(e) => {
                let why = match e {
                    OpenError::Escapes => "leads outside the descriptor's folder".to_string(),
                    OpenError::NotRegular(what) => format!("is {what}"),
                    OpenError::Io(e) => format!("cannot be opened: {e}"),
                };
                f.add(
                    &VMDK_EXTENT,
                    None,
                    format!("descriptor line {}: extent file {name:?} {why}", line.line),
                );
                continue;
            }
        };
        let shown = extent.path().display().to_string();
        let Some(len) = line.sectors.checked_mul(SECTOR) else {
            f.add(
                &VMDK_DESCRIPTOR,
                None,
                format!("descriptor line {}: extent size overflows", line.line),
            );
            continue;
        };
        match line.kind {
            ExtentType::Flat | ExtentType::Vmfs => {
                let needed = line
                    .offset
                    .checked_mul(SECTOR)
                    .and_then(|b| b.checked_add(len));
                if needed.is_none_or(|n| n > extent.len()) {
                    f.add_in(
                        &VMDK_TRUNCATED,
                        shown,
                        extent.len(),
                        format!(
                            "descriptor line {} needs {} sectors from sector {}; the file is {} bytes",
                            line.line, line.sectors, line.offset, extent.len()
                        ),
                    );
                }
            }
            ExtentType::Sparse | ExtentType::Vmfssparse | ExtentType::Sesparse => {
                let mut sub = Findings::new(extent.path());
                let mut magic = [0u8; 4];
                let cowd = extent.read_exact_at(&mut magic, 0, "sparse header").is_ok()
                    && &magic == crate::vmdk::cowd::MAGIC;
                if line.kind == ExtentType::Sesparse {
                    check_redo_log(RedoLog::SeSparse, extent, len, &mut sub, options)?;
                } else if cowd || line.kind == ExtentType::Vmfssparse {
                    check_redo_log(RedoLog::Cowd, extent, len, &mut sub, options)?;
                } else if let Some((header, _)) = sparse_header(&extent, &mut sub)? {
                    check_tables(&extent, &header, len, &mut sub, options)?;
                }
                f.0.extend(sub.0);
            }
            other => f.add(
                &VMDK_EXTENT,
                None,
                format!(
                    "descriptor line {}: {} extents are not checked (snapshot deltas or devices)",
                    line.line,
                    other.name()
                ),
            ),
        }
    }
    Ok(())
}

/// The ESXi redo log formats.
#[derive(Clone, Copy)]
enum RedoLog {
    Cowd,
    SeSparse,
}

/// An ESXi redo log: its reader refuses every broken header, directory and table entry
/// (naming the structure and offset) when it opens the file and walks its whole map;
/// the first refusal becomes a finding.
fn check_redo_log(
    kind: RedoLog,
    file: InputFile,
    len: u64,
    f: &mut Findings,
    options: &OpenOptions,
) -> Result<()> {
    use crate::vmdk::{cowd::CowdExtent, sesparse::SeSparseExtent};
    const STEP: u64 = 1 << 30;
    let mut runs = Vec::new();
    let mut walk = |map: &mut dyn FnMut(u64, u64, &mut Vec<_>) -> Result<()>| -> Result<()> {
        let mut at = 0;
        while at < len {
            options.cancel.check()?;
            let n = STEP.min(len - at);
            runs.clear();
            map(at, n, &mut runs)?;
            at += n;
        }
        Ok(())
    };
    let result = match kind {
        RedoLog::Cowd => {
            CowdExtent::open(file, len).and_then(|mut x| walk(&mut |a, n, r| x.map(a, n, 0, r)))
        }
        RedoLog::SeSparse => {
            SeSparseExtent::open(file, len).and_then(|mut x| walk(&mut |a, n, r| x.map(a, n, 0, r)))
        }
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) => as_finding(e, &VMDK_HEADER, f),
    }
}

/// A single sparse file: its header, its embedded descriptor if any, its tables.
fn check_sparse_file(file: &InputFile, f: &mut Findings, options: &OpenOptions) -> Result<()> {
    let Some((header, descriptor)) = sparse_header(file, f)? else {
        return Ok(());
    };
    let mut len = header.capacity * SECTOR;
    if let Some(d) = descriptor {
        match d.extents.as_slice() {
            [one] if one.kind == ExtentType::Sparse => {
                len = one.sectors.saturating_mul(SECTOR);
                if len > header.capacity * SECTOR {
                    f.add(&VMDK_HEADER, 12u64, format!("capacity {} sectors is smaller than the descriptor's extent of {} sectors", header.capacity, one.sectors));
                    len = header.capacity * SECTOR;
                }
            }
            other => f.add(
                &VMDK_DESCRIPTOR,
                header.descriptor_offset * SECTOR,
                format!(
                    "embedded descriptor lists {} extents; it must list this one SPARSE extent",
                    other.len()
                ),
            ),
        }
    }
    check_tables(file, &header, len, f, options)
}

/// The sparse header and the embedded descriptor, each a finding when broken.
fn sparse_header(
    file: &InputFile,
    f: &mut Findings,
) -> Result<Option<(SparseHeader, Option<Descriptor>)>> {
    let mut bytes = [0u8; 512];
    if let Err(e) = file.read_exact_at(&mut bytes, 0, "sparse header") {
        as_finding(e, &VMDK_TRUNCATED, f)?;
        return Ok(None);
    }
    let header = match SparseHeader::parse(&bytes, file.path(), 0) {
        Ok(h) => h,
        Err(e) => {
            as_finding(e, &VMDK_HEADER, f)?;
            return Ok(None);
        }
    };
    if header.descriptor_offset == 0 {
        return Ok(Some((header, None)));
    }
    let at = header.descriptor_offset.checked_mul(SECTOR);
    let size = header
        .descriptor_size
        .checked_mul(SECTOR)
        .filter(|&s| s <= MAX_TEXT_DESCRIPTOR);
    let (Some(at), Some(size)) = (at, size) else {
        f.add(
            &VMDK_HEADER,
            28u64,
            "embedded descriptor offset or size is out of range",
        );
        return Ok(Some((header, None)));
    };
    if !file.holds(at, size) {
        f.add(
            &VMDK_TRUNCATED,
            at,
            "the embedded descriptor extends past the end of the file",
        );
        return Ok(Some((header, None)));
    }
    let mut text = vec![0u8; size as usize];
    file.read_exact_at(&mut text, at, "embedded descriptor")?;
    // qemu-img reserves an empty descriptor area in each extent of a split disk.
    if text.iter().all(|&b| b == 0 || b.is_ascii_whitespace()) {
        return Ok(Some((header, None)));
    }
    match Descriptor::parse_bytes(&text) {
        Ok(d) => Ok(Some((header, Some(d)))),
        Err(e) => {
            f.add(
                &VMDK_DESCRIPTOR,
                at,
                format!("embedded descriptor line {}: {}", e.line, e.detail),
            );
            Ok(Some((header, None)))
        }
    }
}

/// The first offender and the count, per rule: one finding each, whatever the count.
#[derive(Default)]
struct Tally(Vec<(&'static Rule, u64, String, usize)>);

impl Tally {
    fn note(&mut self, rule: &'static Rule, at: u64, message: impl FnOnce() -> String) {
        match self.0.iter_mut().find(|t| std::ptr::eq(t.0, rule)) {
            Some(t) => t.3 += 1,
            None => self.0.push((rule, at, message(), 1)),
        }
    }

    fn report(self, f: &mut Findings) {
        for (rule, at, message, count) in self.0 {
            let more = match count {
                1 => String::new(),
                2 => ", and 1 other like it".into(),
                n => format!(", and {} others like it", n - 1),
            };
            f.add(rule, at, format!("{message}{more}"));
        }
    }
}

/// Grain directory and tables of one sparse extent of `len` bytes.
fn check_tables(
    file: &InputFile,
    header: &SparseHeader,
    len: u64,
    f: &mut Findings,
    options: &OpenOptions,
) -> Result<()> {
    let mut header = header.clone();
    if header.gd_offset == GD_AT_END {
        match stream_gd_offset(file, &header) {
            Ok(at) => header.gd_offset = at,
            Err(e) => return as_finding(e, &VMDK_STREAM, f),
        }
    }
    let mut gd = match directory(file, &header, header.gd_offset, "grain directory") {
        Ok(gd) => gd,
        Err(e) => return as_finding(e, &VMDK_GD_BEYOND_EOF, f),
    };
    let mut rgd = None;
    if header.flags & FLAG_REDUNDANT_GD != 0 && header.rgd_offset != 0 {
        match directory(
            file,
            &header,
            header.rgd_offset,
            "redundant grain directory",
        ) {
            Ok(t) => rgd = Some(t),
            Err(e) => as_finding(e, &VMDK_REDUNDANT_DIFFERS, f)?,
        }
    }
    let per_gt = u64::from(header.num_gtes_per_gt);
    let grains = len.div_ceil(header.grain_bytes());
    let gt_bytes = per_gt * 4;
    let zeroed = header.has_zeroed_gte();
    let span = if header.compressed() {
        1
    } else {
        header.grain_size
    };
    let mut tally = Tally::default();
    let mut starts: Vec<(u64, u64)> = Vec::new();
    let mut table = vec![0u8; gt_bytes as usize];
    let mut copy = vec![0u8; gt_bytes as usize];
    for i in 0..gd.len() {
        if i % 4096 == 0 {
            options.cancel.check()?;
        }
        let gt_sector = gd.get(file, i)?;
        let gd_entry_at = gd.entry_offset(i);
        let redundant = match &mut rgd {
            Some(r) => Some(r.get(file, i)?),
            None => None,
        };
        if gt_sector == 0 {
            if redundant.is_some_and(|r| r != 0) {
                tally.note(&VMDK_REDUNDANT_DIFFERS, gd_entry_at, || {
                    format!("grain directory entry {i} is empty but its redundant copy is not")
                });
            }
            continue;
        }
        let gt_at = gt_sector * SECTOR;
        if !file.holds(gt_at, gt_bytes) {
            tally.note(&VMDK_TRUNCATED, gd_entry_at, || format!("grain table {i} at byte {gt_at} extends past the end of the file ({} bytes): the file is truncated", file.len()));
            continue;
        }
        file.read_exact_at(&mut table, gt_at, "grain table")?;
        match redundant {
            Some(r) if r == 0 || !file.holds(r * SECTOR, gt_bytes) => {
                tally.note(&VMDK_REDUNDANT_DIFFERS, gt_at, || {
                    format!("grain table {i} has no usable redundant copy")
                });
            }
            Some(r) => {
                file.read_exact_at(&mut copy, r * SECTOR, "redundant grain table")?;
                if copy != table {
                    tally.note(&VMDK_REDUNDANT_DIFFERS, r * SECTOR, || {
                        format!("redundant grain table {i} differs from the primary")
                    });
                }
            }
            None => {}
        }
        for (j, c) in table.chunks_exact(4).enumerate() {
            let grain = i * per_gt + j as u64;
            let entry = u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            let at = gt_at + j as u64 * 4;
            if entry == 0 || (entry == 1 && zeroed) || grain >= grains {
                continue;
            }
            if entry < header.over_head {
                tally.note(&VMDK_GTE_IN_METADATA, at, || format!("grain {grain} points at sector {entry}, inside the metadata (which ends at sector {})", header.over_head));
            } else if entry * SECTOR >= file.len() {
                tally.note(&VMDK_TRUNCATED, at, || format!("grain {grain} points at sector {entry}, past the end of the file ({} bytes): the file is truncated or the entry is wrong", file.len()));
            } else {
                if header.compressed() {
                    check_grain_record(file, &header, entry * SECTOR, grain, &mut tally)?;
                }
                if starts.len() < MAX_GRAINS_TRACKED {
                    starts.push((entry, grain));
                }
            }
        }
    }
    tally.report(f);
    starts.sort_unstable();
    let mut overlaps = 0;
    for ((a, ga), (b, gb)) in overlapping(&starts, span) {
        overlaps += 1;
        if overlaps > 100 {
            break;
        }
        f.add(
            &VMDK_GRAIN_OVERLAP,
            b * SECTOR,
            format!("grain {gb} at sector {b} overlaps grain {ga} at sector {a}"),
        );
    }
    Ok(())
}

/// A compressed grain's record: the LBA it carries and a sane compressed size.
fn check_grain_record(
    file: &InputFile,
    header: &SparseHeader,
    at: u64,
    grain: u64,
    tally: &mut Tally,
) -> Result<()> {
    let mut head = [0u8; 12];
    if !file.holds(at, 12) {
        tally.note(&VMDK_TRUNCATED, at, || {
            format!("grain {grain}'s record at {at} extends past the end of the file")
        });
        return Ok(());
    }
    file.read_exact_at(&mut head, at, "compressed grain")?;
    let lba = u64::from_le_bytes(head[0..8].try_into().expect("8 bytes"));
    let size = u64::from(u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")));
    let expected = grain * header.grain_size;
    if lba != expected {
        tally.note(&VMDK_STREAM, at, || {
            format!(
                "grain {grain}'s record says sector {lba}; its table places it at sector {expected}"
            )
        });
    } else if size == 0 || !file.holds(at + 12, size) {
        tally.note(&VMDK_STREAM, at, || {
            format!(
                "grain {grain}'s record holds {size} compressed bytes, which do not fit the file"
            )
        });
    }
    Ok(())
}

/// The grain directory a streamOptimized footer gives.
fn stream_gd_offset(file: &InputFile, header: &SparseHeader) -> Result<u64> {
    let at = stream::find_footer(file, header.over_head)?;
    let mut bytes = [0u8; 512];
    file.read_exact_at(&mut bytes, at, "stream footer")?;
    let footer = SparseHeader::parse(&bytes, file.path(), at)?;
    if footer.gd_offset == GD_AT_END
        || footer.capacity != header.capacity
        || footer.grain_size != header.grain_size
    {
        return Err(crate::error::Error::broken(
            file.path(),
            &rules::VMDK_STREAM,
            "stream footer",
            at,
            "the footer does not match the header or gives no grain directory",
        ));
    }
    Ok(footer.gd_offset)
}

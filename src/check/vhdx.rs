//! VHDX rules: what Windows-grade validation rejects (FORMATS.md, VHDX).

use zerocopy::FromBytes;

use super::vhd::others;
use super::{Findings, MAX_SPANS, Span, overlaps};
use crate::cancel::Cancel;
use crate::disk::table::{Entry, Table};
use crate::disk::{InputFile, ReadAt};
use crate::error::Result;
use crate::rules::*;
use crate::vhdx::bat::{self, BatLayout, BlockFit};
use crate::vhdx::format::*;
use crate::vhdx::locator::ParentLocator;
use crate::vhdx::log::LogOverlay;
use crate::vhdx::read::View;

/// Everything past the headers is checked as the file reads once its log is replayed
/// (in memory): what a replaying reader (Windows, vdconv) sees.
pub fn check(file: &InputFile, f: &mut Findings, cancel: &Cancel) -> Result<()> {
    let len = file.len();
    if len < MIB {
        f.add(
            &VHDX_TRUNCATED,
            0,
            format!("file is {len} bytes; headers and region tables alone need 1 MiB"),
        );
        return Ok(());
    }
    let mut sig = [0u8; 8];
    file.read_exact_at(&mut sig, 0, "VHDX file identifier")?;
    f.check(&sig != FILE_SIGNATURE, &VHDX_FILE_SIGNATURE, 0, || {
        "file identifier is not 'vhdxfile'".into()
    });

    let (log, current) = check_headers(file, f)?;
    let overlay = match current {
        Some(h) => check_log(file, f, &h),
        None => None,
    };
    let file = View {
        file,
        overlay: overlay.as_ref(),
    };
    let Some((bat_region, meta_region)) = check_region_tables(file, f, log)? else {
        return Ok(());
    };
    let Some(meta) = check_metadata(file, f, meta_region)? else {
        return Ok(());
    };
    check_bat(file, f, bat_region, meta_region, log, &meta, cancel)
}

/// A pending log (the current header's LogGuid set): one finding, `vhdx-log-pending`
/// when it replays (returning the replay), `vhdx-log-corrupt` when it has no valid
/// sequence to replay.
fn check_log(file: &InputFile, f: &mut Findings, (at, h): &Current) -> Option<LogOverlay> {
    if h.log_guid == [0u8; 16] {
        return None;
    }
    match LogOverlay::replay(
        file,
        h.log_offset.get(),
        u64::from(h.log_length.get()),
        h.log_guid,
    ) {
        Ok(Some(o)) => {
            f.add(
                &VHDX_LOG_PENDING,
                at + 48,
                format!(
                    "LogGuid is set: the log holds {} entries (to sequence {}) not yet applied; checked as replayed in memory, but readers that do not replay (qemu) refuse the file",
                    o.entries(),
                    o.sequence_number()
                ),
            );
            Some(o)
        }
        Ok(None) => None,
        Err(e) => {
            f.add(
                &VHDX_LOG_CORRUPT,
                e.offset().unwrap_or(at + 48),
                format!(
                    "LogGuid {} is set but the log cannot be replayed: {}",
                    guid_string(&h.log_guid),
                    e.detail()
                ),
            );
            None
        }
    }
}

/// Checks both headers; returns the log's byte span from the current valid one, and
/// that header with its offset.
fn check_headers(
    file: &InputFile,
    f: &mut Findings,
) -> Result<(Option<FileSpan>, Option<Current>)> {
    let mut valid: Vec<(u64, FileSpan, Current)> = Vec::new();
    for at in [HEADER1_OFFSET, HEADER2_OFFSET] {
        let mut bytes = vec![0u8; HEADER_SIZE];
        file.read_exact_at(&mut bytes, at, "VHDX header")?;
        let h = Header::read_from_bytes(&bytes).expect("4 KiB");
        if &h.signature != HEADER_SIGNATURE {
            f.add(&VHDX_HEADER_SIGNATURE, at, "header signature is not 'head'");
            continue;
        }
        if checksum_with_field_zeroed(&bytes, 4) != h.checksum.get() {
            f.add(
                &VHDX_HEADER_CHECKSUM,
                at + 4,
                "header CRC-32C checksum does not match",
            );
            continue;
        }
        f.check(h.version.get() != 1, &VHDX_HEADER_VERSION, at + 66, || {
            format!("version {} is not 1", h.version.get())
        });
        f.check(
            h.log_version.get() != 0,
            &VHDX_HEADER_LOG_VERSION,
            at + 64,
            || format!("log version {} is not 0", h.log_version.get()),
        );
        f.check(
            h.reserved.iter().any(|&b| b != 0),
            &VHDX_HEADER_RESERVED,
            at + 80,
            || "reserved bytes are not zero".into(),
        );
        f.check(
            h.log_offset.get() % MIB != 0
                || u64::from(h.log_length.get()) % MIB != 0
                || h.log_offset.get() < MIB,
            &VHDX_LOG_PLACEMENT,
            at + 72,
            || {
                format!(
                    "log at {} length {} is not 1 MiB aligned after the first MiB",
                    h.log_offset.get(),
                    h.log_length.get()
                )
            },
        );
        let log = (
            h.log_offset.get(),
            h.log_offset
                .get()
                .saturating_add(u64::from(h.log_length.get())),
        );
        valid.push((h.sequence_number.get(), log, (at, h)));
    }
    if valid.is_empty() {
        f.add(
            &VHDX_NO_VALID_HEADER,
            HEADER1_OFFSET,
            "neither header is valid",
        );
    }
    Ok(valid
        .into_iter()
        .max_by_key(|v| v.0)
        .map_or((None, None), |v| (Some(v.1), Some(v.2))))
}

/// (file offset, length) of a region.
type Region = (u64, u64);
/// The current header and its file offset.
type Current = (u64, Header);
/// (start, end) file offsets.
type FileSpan = (u64, u64);

fn check_region_tables(
    file: View,
    f: &mut Findings,
    log: Option<FileSpan>,
) -> Result<Option<(Region, Region)>> {
    let mut tables = Vec::new();
    for at in [REGION1_OFFSET, REGION2_OFFSET] {
        let mut bytes = vec![0u8; REGION_TABLE_SIZE];
        file.read_exact_at(&mut bytes, at, "VHDX region table")?;
        let head = RegionTableHeader::read_from_bytes(&bytes[..16]).expect("16 bytes");
        if &head.signature != REGION_SIGNATURE {
            f.add(
                &VHDX_REGION_SIGNATURE,
                at,
                "region table signature is not 'regi'",
            );
        } else if checksum_with_field_zeroed(&bytes, 4) != head.checksum.get() {
            f.add(
                &VHDX_REGION_CHECKSUM,
                at + 4,
                "region table CRC-32C checksum does not match",
            );
        } else {
            tables.push((at, bytes));
        }
    }
    if tables.len() == 2 && tables[0].1 != tables[1].1 {
        f.add(
            &VHDX_REGION_COPIES_DIFFER,
            REGION2_OFFSET,
            "the two region tables are not identical",
        );
    }
    let Some((at, bytes)) = tables.into_iter().next() else {
        return Ok(None);
    };
    let head = RegionTableHeader::read_from_bytes(&bytes[..16]).expect("16 bytes");
    f.check(
        head.reserved.get() != 0,
        &VHDX_REGION_RESERVED,
        at + 12,
        || "reserved field is not zero".into(),
    );
    let count = head.entry_count.get();
    if count > MAX_REGION_ENTRIES {
        f.add(
            &VHDX_REGION_COUNT,
            at + 8,
            format!("{count} entries (at most {MAX_REGION_ENTRIES})"),
        );
        return Ok(None);
    }
    let (mut bat, mut meta) = (None, None);
    let mut ranges = vec![(0, MIB, Span::Named("headers"))];
    if let Some((start, end)) = log.filter(|l| l.1 > l.0) {
        ranges.push((start, end, Span::Named("the log")));
    }
    for i in 0..count as u64 {
        let e_at = at + 16 + i * 32;
        let e = RegionEntry::read_from_bytes(&bytes[16 + i as usize * 32..48 + i as usize * 32])
            .expect("32 bytes");
        let (offset, length) = (e.file_offset.get(), u64::from(e.length.get()));
        let name = if e.guid == BAT_REGION {
            bat = Some((offset, length));
            "BAT region"
        } else if e.guid == METADATA_REGION {
            meta = Some((offset, length));
            "metadata region"
        } else {
            if e.required.get() & 1 != 0 {
                f.add(
                    &VHDX_REGION_UNKNOWN_REQUIRED,
                    e_at,
                    format!("unknown required region {}", guid_string(&e.guid)),
                );
            }
            "unknown region"
        };
        f.check(
            e.required.get() & !1 != 0,
            &VHDX_REGION_RESERVED,
            e_at + 28,
            || format!("{name} entry has reserved flag bits set"),
        );
        f.check(
            e.required.get() & 1 == 0 && name != "unknown region",
            &VHDX_REGION_NOT_REQUIRED,
            e_at + 28,
            || format!("{name} entry does not set Required (Windows sets it)"),
        );
        f.check(
            offset % MIB != 0 || length % MIB != 0 || length == 0 || offset < MIB,
            &VHDX_REGION_ALIGNMENT,
            e_at + 16,
            || format!("{name} at {offset} length {length} is not whole MiB after the first MiB"),
        );
        f.check(offset.saturating_add(length) > file.len(), &VHDX_REGION_BEYOND_EOF, e_at + 16, || format!("{name} at {offset} length {length} extends past the end of the file ({} bytes)", file.len()));
        ranges.push((offset, offset.saturating_add(length), Span::Named(name)));
    }
    for (a, b, at) in overlaps(ranges) {
        f.add(&VHDX_REGION_OVERLAP, at, format!("{b} overlaps {a}"));
    }
    match (bat, meta) {
        (Some(b), Some(m)) => Ok(Some((b, m))),
        _ => {
            f.add(
                &VHDX_REGION_MISSING,
                at,
                "the BAT or the metadata region is missing",
            );
            Ok(None)
        }
    }
}

/// What the metadata says, once it is usable.
pub struct Meta {
    block_size: u64,
    fixed: bool,
    has_parent: bool,
    size: u64,
    logical: u64,
}

fn check_metadata(file: View, f: &mut Findings, (offset, length): Region) -> Result<Option<Meta>> {
    if length < METADATA_TABLE_SIZE as u64 || offset.saturating_add(length) > file.len() {
        return Ok(None);
    }
    let mut table = vec![0u8; METADATA_TABLE_SIZE];
    file.read_exact_at(&mut table, offset, "VHDX metadata table")?;
    let head = MetadataTableHeader::read_from_bytes(&table[..32]).expect("32 bytes");
    if &head.signature != METADATA_SIGNATURE {
        f.add(
            &VHDX_METADATA_SIGNATURE,
            offset,
            "metadata table signature is not 'metadata'",
        );
        return Ok(None);
    }
    f.check(
        head.reserved.get() != 0 || head.reserved2.iter().any(|&b| b != 0),
        &VHDX_METADATA_RESERVED,
        offset + 8,
        || "reserved fields are not zero".into(),
    );
    let count = head.entry_count.get();
    if count > MAX_METADATA_ENTRIES {
        f.add(
            &VHDX_METADATA_COUNT,
            offset + 10,
            format!("{count} entries (at most {MAX_METADATA_ENTRIES})"),
        );
        return Ok(None);
    }
    // (id, name, length, IsVirtualDisk)
    let known: [([u8; 16], &str, u32, bool); 5] = [
        (FILE_PARAMETERS, "File Parameters", 8, false),
        (VIRTUAL_DISK_SIZE, "Virtual Disk Size", 8, true),
        (PAGE_83_DATA, "Page 83 Data", 16, true),
        (LOGICAL_SECTOR_SIZE, "Logical Sector Size", 4, true),
        (PHYSICAL_SECTOR_SIZE, "Physical Sector Size", 4, true),
    ];
    let mut values: [Option<Vec<u8>>; 5] = Default::default();
    let mut parent_locator = false;
    let mut ranges = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for i in 0..count as usize {
        let e_at = offset + 32 + i as u64 * 32;
        let e = MetadataEntry::read_from_bytes(&table[32 + i * 32..64 + i * 32]).expect("32 bytes");
        let (item_off, item_len, flags) = (
            u64::from(e.offset.get()),
            u64::from(e.length.get()),
            e.flags.get(),
        );
        f.check(
            e.reserved.get() != 0 || flags & !7 != 0,
            &VHDX_METADATA_RESERVED,
            e_at + 24,
            || format!("entry {i} has reserved bits set"),
        );
        let k = known.iter().position(|k| k.0 == e.item_id);
        let name = k
            .map(|k| known[k].1.to_string())
            .unwrap_or_else(|| guid_string(&e.item_id));
        if item_len > 0 {
            f.check(
                item_off < METADATA_TABLE_SIZE as u64,
                &VHDX_METADATA_OFFSET,
                e_at + 16,
                || format!("item {name} at offset {item_off} lies inside the 64 KiB table"),
            );
            f.check(item_off + item_len > length, &VHDX_METADATA_BEYOND_REGION, e_at + 16, || format!("item {name} at {item_off} length {item_len} extends past the region ({length} bytes)"));
            ranges.push((item_off, item_off + item_len, names.len()));
            names.push(name.clone());
        }
        if e.item_id == PARENT_LOCATOR {
            f.check(
                flags & META_IS_REQUIRED == 0 || flags & (META_IS_VIRTUAL_DISK | META_IS_USER) != 0,
                &VHDX_METADATA_FLAGS,
                e_at + 24,
                || "the parent locator sets IsRequired only".into(),
            );
            if item_len > 0
                && item_off >= METADATA_TABLE_SIZE as u64
                && item_off + item_len <= length
            {
                let mut data = vec![0u8; item_len as usize];
                file.read_exact_at(&mut data, offset + item_off, "VHDX parent locator")?;
                let problem = ParentLocator::parse(&data).and_then(|l| {
                    l.linkage()?;
                    if l.hints().is_empty() {
                        return Err(crate::vhdx::locator::LocatorError {
                            offset: 0,
                            detail: "none of relative_path, volume_path and absolute_win32_path is present".into(),
                        });
                    }
                    Ok(())
                });
                if let Err(e) = problem {
                    f.add(
                        &VHDX_PARENT_LOCATOR,
                        offset + item_off + e.offset,
                        format!("parent locator: {}", e.detail),
                    );
                }
            }
            parent_locator = true;
            continue;
        }
        let Some(k) = k else {
            f.check(
                flags & META_IS_REQUIRED != 0,
                &VHDX_METADATA_UNKNOWN_REQUIRED,
                e_at,
                || format!("unknown required item {name}"),
            );
            continue;
        };
        let (_, _, want_len, virtual_disk) = known[k];
        f.check(
            flags & META_IS_REQUIRED == 0,
            &VHDX_METADATA_FLAGS,
            e_at + 24,
            || format!("{name} does not set IsRequired"),
        );
        f.check(
            (flags & META_IS_VIRTUAL_DISK != 0) != virtual_disk,
            &VHDX_METADATA_FLAGS,
            e_at + 24,
            || {
                format!(
                    "{name} {} IsVirtualDisk",
                    if virtual_disk {
                        "must set"
                    } else {
                        "must not set"
                    }
                )
            },
        );
        f.check(
            flags & META_IS_USER != 0,
            &VHDX_METADATA_FLAGS,
            e_at + 24,
            || format!("{name} must not set IsUser"),
        );
        if item_len != u64::from(want_len) {
            f.add(
                &VHDX_METADATA_LENGTH,
                e_at + 20,
                format!("{name} is {item_len} bytes, not {want_len}"),
            );
            continue;
        }
        if item_off + item_len <= length {
            let mut data = vec![0u8; item_len as usize];
            file.read_exact_at(&mut data, offset + item_off, "VHDX metadata item")?;
            values[k] = Some(data);
        }
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            f.add(
                &VHDX_METADATA_OVERLAP,
                offset + w[1].0,
                format!("item {} overlaps item {}", names[w[1].2], names[w[0].2]),
            );
        }
    }
    for (k, v) in values.iter().enumerate() {
        if v.is_none() {
            f.add(
                &VHDX_METADATA_MISSING,
                offset,
                format!("required item {} is missing", known[k].1),
            );
        }
    }
    let [Some(params), Some(size), _, Some(logical), Some(physical)] = &values else {
        return Ok(None);
    };
    let le32 = |d: &[u8], i: usize| u32::from_le_bytes(d[i..i + 4].try_into().unwrap());
    let block_size = u64::from(le32(params, 0));
    let flags = le32(params, 4);
    let size = u64::from_le_bytes(size[..8].try_into().unwrap());
    let (logical, physical) = (u64::from(le32(logical, 0)), le32(physical, 0));
    let mut usable = true;
    if !block_size.is_power_of_two() || !(MIB..=256 * MIB).contains(&block_size) {
        f.add(
            &VHDX_BLOCK_SIZE,
            offset,
            format!("block size {block_size} is not a power of two from 1 MiB to 256 MiB"),
        );
        usable = false;
    }
    f.check(
        flags & !3 != 0,
        &VHDX_FILE_PARAMETERS_RESERVED,
        offset,
        || format!("file parameter flags {flags:#x} set reserved bits"),
    );
    f.check(
        flags & HAS_PARENT != 0 && !parent_locator,
        &VHDX_PARENT_LOCATOR,
        offset,
        || "HasParent is set but there is no parent locator item".into(),
    );
    if logical != 512 && logical != 4096 {
        f.add(
            &VHDX_LOGICAL_SECTOR_SIZE,
            offset,
            format!("logical sector size {logical} is not 512 or 4096"),
        );
        usable = false;
    }
    f.check(
        physical != 512 && physical != 4096,
        &VHDX_PHYSICAL_SECTOR_SIZE,
        offset,
        || format!("physical sector size {physical} is not 512 or 4096"),
    );
    if size == 0 || size > MAX_SIZE || (usable && size % logical != 0) {
        f.add(&VHDX_VIRTUAL_SIZE, offset, format!("virtual size {size} is zero, above 64 TiB, or not a multiple of the {logical}-byte logical sector"));
        usable = usable && size != 0 && size <= MAX_SIZE;
    }
    Ok(usable.then_some(Meta {
        block_size,
        fixed: flags & LEAVE_BLOCK_ALLOCATED != 0,
        has_parent: flags & HAS_PARENT != 0,
        size,
        logical,
    }))
}

fn check_bat(
    file: View,
    f: &mut Findings,
    (bat_offset, bat_length): Region,
    (meta_offset, meta_length): Region,
    log: Option<FileSpan>,
    m: &Meta,
    cancel: &Cancel,
) -> Result<()> {
    let layout = BatLayout::new(m.size, m.block_size, m.logical);
    let entries = layout.entries(m.has_parent);
    if entries * 8 > bat_length {
        f.add(
            &VHDX_BAT_REGION_TOO_SMALL,
            bat_offset,
            format!(
                "{entries} BAT entries need {} bytes; the region holds {bat_length}",
                entries * 8
            ),
        );
        return Ok(());
    }
    let Ok(mut table) = Table::within(
        file.path(),
        file.len(),
        bat_offset,
        entries,
        Entry::U64Le,
        "VHDX BAT",
    ) else {
        return Ok(()); // reported as vhdx-region-beyond-eof
    };
    let mut reserved = vec![(bat_offset, bat_length), (meta_offset, meta_length)];
    let mut blocks = vec![
        (0, MIB, Span::Named("headers and region tables")),
        (
            bat_offset,
            bat_offset.saturating_add(bat_length),
            Span::Named("the BAT region"),
        ),
        (
            meta_offset,
            meta_offset.saturating_add(meta_length),
            Span::Named("the metadata region"),
        ),
    ];
    if let Some((start, end)) = log.filter(|l| l.1 > l.0) {
        blocks.push((start, end, Span::Named("the log")));
        reserved.push((start, end - start));
    }
    let period = layout.chunk_ratio + 1;
    // First offender and count per rule: a wrecked table says enough with one.
    let mut tally: Vec<(&'static Rule, u64, String, usize)> = Vec::new();
    let mut note = |rule: &'static Rule, at: u64, message: String| match tally
        .iter_mut()
        .find(|t| std::ptr::eq(t.0, rule))
    {
        Some(t) => t.3 += 1,
        None => tally.push((rule, at, message, 1)),
    };
    table.for_each(&file, |i, entry| {
        if i % 65536 == 0 {
            cancel.check()?;
        }
        let at = table_offset(bat_offset, i);
        let (state, offset, reserved_bits) = bat::decode(entry);
        if reserved_bits != 0 {
            note(&VHDX_BAT_RESERVED, at, format!("entry {i} sets reserved bits 3-19"));
        }
        if (i + 1) % period == 0 {
            // A sector bitmap entry: only differencing images have bitmaps.
            if !m.has_parent && state != bat::NOT_PRESENT {
                note(&VHDX_BAT_BITMAP_STATE, at, format!("sector bitmap entry {i} has state {state}; without a parent it must be not present"));
            } else if m.has_parent && state == bat::FULLY_PRESENT {
                // SB_BLOCK_PRESENT: a 1 MiB bitmap block, which must fit like a payload block.
                match bat::block_fit(offset, MIB, MIB, file.len(), &reserved) {
                    BlockFit::Inside => if blocks.len() < MAX_SPANS {
                        blocks.push((offset, offset + MIB, Span::Named("a sector bitmap block")));
                    },
                    _ => note(&VHDX_BLOCK_BEYOND_EOF, at, format!("sector bitmap block {i} at {offset} does not lie after the first MiB, clear of the metadata and inside the file ({} bytes)", file.len())),
                }
            } else if m.has_parent && state != bat::NOT_PRESENT {
                note(&VHDX_BAT_BITMAP_STATE, at, format!("sector bitmap entry {i} has state {state}, neither not present (0) nor present (6)"));
            }
            return Ok(true);
        }
        let block = i - i / period;
        let used = layout.used_bytes(block, m.size);
        match state {
            bat::NOT_PRESENT | bat::UNDEFINED | bat::ZERO | bat::UNMAPPED => {
                if m.fixed {
                    note(&VHDX_FIXED_BLOCK_NOT_PRESENT, at, format!("fixed image (LeaveBlockAllocated) has block {block} in state {state}, not fully present"));
                }
                if offset != 0 {
                    if state == bat::NOT_PRESENT {
                        note(&VHDX_BAT_OFFSET_NOT_ZERO, at, format!("block {block} is not present but carries file offset {offset}"));
                    } else if blocks.len() < MAX_SPANS {
                        // A trimmed block that keeps its offset (a soft anchor, as Hyper-V
                        // leaves them) is valid, but its space is still its own.
                        blocks.push((offset, offset.saturating_add(m.block_size), Span::Block(block)));
                    }
                }
            }
            bat::FULLY_PRESENT | bat::PARTIALLY_PRESENT => {
                if state == bat::PARTIALLY_PRESENT && !m.has_parent {
                    note(&VHDX_BAT_STATE, at, format!("block {block} is partially present in an image without a parent"));
                }
                match bat::block_fit(offset, used, m.block_size, file.len(), &reserved) {
                    BlockFit::Outside => note(&VHDX_BLOCK_BEYOND_EOF, at, format!("block {block} at {offset} does not lie after the first MiB, clear of the metadata and inside the file ({} bytes)", file.len())),
                    fit => {
                        if fit == BlockFit::TailOutside {
                            note(&VHDX_BLOCK_TAIL_BEYOND_EOF, at, format!("block {block} at {offset} ends {} bytes past the end of the file; its used bytes are inside", offset.saturating_add(m.block_size) - file.len()));
                        }
                        if blocks.len() < MAX_SPANS {
                            let end = offset.saturating_add(m.block_size).min(file.len());
                            blocks.push((offset, end, Span::Block(block)));
                        }
                    }
                }
            }
            other => note(&VHDX_BAT_STATE, at, format!("block {block} has invalid state {other}")),
        }
        Ok(true)
    })?;
    for (rule, at, message, count) in tally {
        f.add(rule, at, format!("{message}{}", others(count)));
    }
    for (a, b, start) in overlaps(blocks) {
        f.add(&VHDX_BLOCK_OVERLAP, start, format!("{b} overlaps {a}"));
    }
    Ok(())
}

fn table_offset(bat_offset: u64, index: u64) -> u64 {
    bat_offset + index * 8
}

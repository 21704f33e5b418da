//! VHDX rules: what Windows-grade validation rejects (FORMATS.md, VHDX).

use zerocopy::FromBytes;

use super::{Findings, overlaps};
use crate::disk::InputFile;
use crate::error::Result;
use crate::vhdx::bat::{self, BatLayout};
use crate::vhdx::format::*;

/// Bounds on what is read from a damaged file: sizes are checked against the file first.
const MAX_BAT_BYTES_READ: u64 = 1 << 30;

pub fn check(file: &InputFile, f: &mut Findings) -> Result<()> {
    let len = file.len();
    if len < MIB {
        f.add(
            "vhdx-truncated",
            0,
            format!("file is {len} bytes; headers and region tables alone need 1 MiB"),
        );
        return Ok(());
    }
    let mut sig = [0u8; 8];
    file.read_exact_at(&mut sig, 0, "VHDX file identifier")?;
    f.check(&sig != FILE_SIGNATURE, "vhdx-file-signature", 0, || {
        "file identifier is not 'vhdxfile'".into()
    });

    let log = check_headers(file, f)?;
    let Some((bat_region, meta_region)) = check_region_tables(file, f, log)? else {
        return Ok(());
    };
    let Some(meta) = check_metadata(file, f, meta_region)? else {
        return Ok(());
    };
    check_bat(file, f, bat_region, meta_region, log, &meta)
}

/// Checks both headers; returns the log's byte span from the current valid one.
fn check_headers(file: &InputFile, f: &mut Findings) -> Result<Option<Span>> {
    let mut valid: Vec<(u64, Span)> = Vec::new();
    for at in [HEADER1_OFFSET, HEADER2_OFFSET] {
        let mut bytes = vec![0u8; HEADER_SIZE];
        file.read_exact_at(&mut bytes, at, "VHDX header")?;
        let h = Header::read_from_bytes(&bytes).expect("4 KiB");
        if &h.signature != HEADER_SIGNATURE {
            f.add(
                "vhdx-header-signature",
                at,
                "header signature is not 'head'",
            );
            continue;
        }
        if checksum_with_field_zeroed(&bytes, 4) != h.checksum.get() {
            f.add(
                "vhdx-header-checksum",
                at + 4,
                "header CRC-32C checksum does not match",
            );
            continue;
        }
        f.check(h.version.get() != 1, "vhdx-header-version", at + 66, || {
            format!("version {} is not 1", h.version.get())
        });
        f.check(
            h.log_version.get() != 0,
            "vhdx-header-log-version",
            at + 64,
            || format!("log version {} is not 0", h.log_version.get()),
        );
        f.check(
            h.reserved.iter().any(|&b| b != 0),
            "vhdx-header-reserved",
            at + 80,
            || "reserved bytes are not zero".into(),
        );
        f.check(
            h.log_offset.get() % MIB != 0
                || u64::from(h.log_length.get()) % MIB != 0
                || h.log_offset.get() < MIB,
            "vhdx-log-placement",
            at + 72,
            || {
                format!(
                    "log at {} length {} is not 1 MiB aligned after the first MiB",
                    h.log_offset.get(),
                    h.log_length.get()
                )
            },
        );
        f.check(h.log_guid != [0u8; 16], "vhdx-log-pending", at + 48, || {
            "LogGuid is set: the log must be replayed before the metadata can be trusted".into()
        });
        let log = (
            h.log_offset.get(),
            h.log_offset
                .get()
                .saturating_add(u64::from(h.log_length.get())),
        );
        valid.push((h.sequence_number.get(), log));
    }
    if valid.is_empty() {
        f.add(
            "vhdx-no-valid-header",
            HEADER1_OFFSET,
            "neither header is valid",
        );
    }
    Ok(valid.into_iter().max_by_key(|v| v.0).map(|v| v.1))
}

/// (file offset, length) of a region.
type Region = (u64, u64);
/// (start, end) file offsets.
type Span = (u64, u64);

fn check_region_tables(
    file: &InputFile,
    f: &mut Findings,
    log: Option<Span>,
) -> Result<Option<(Region, Region)>> {
    let mut tables = Vec::new();
    for at in [REGION1_OFFSET, REGION2_OFFSET] {
        let mut bytes = vec![0u8; REGION_TABLE_SIZE];
        file.read_exact_at(&mut bytes, at, "VHDX region table")?;
        let head = RegionTableHeader::read_from_bytes(&bytes[..16]).expect("16 bytes");
        if &head.signature != REGION_SIGNATURE {
            f.add(
                "vhdx-region-signature",
                at,
                "region table signature is not 'regi'",
            );
        } else if checksum_with_field_zeroed(&bytes, 4) != head.checksum.get() {
            f.add(
                "vhdx-region-checksum",
                at + 4,
                "region table CRC-32C checksum does not match",
            );
        } else {
            tables.push((at, bytes));
        }
    }
    if tables.len() == 2 && tables[0].1 != tables[1].1 {
        f.add(
            "vhdx-region-copies-differ",
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
        "vhdx-region-reserved",
        at + 12,
        || "reserved field is not zero".into(),
    );
    let count = head.entry_count.get();
    if count > MAX_REGION_ENTRIES {
        f.add(
            "vhdx-region-count",
            at + 8,
            format!("{count} entries (at most {MAX_REGION_ENTRIES})"),
        );
        return Ok(None);
    }
    let (mut bat, mut meta) = (None, None);
    let mut ranges = vec![(0, MIB, "headers".to_string())];
    if let Some((start, end)) = log.filter(|l| l.1 > l.0) {
        ranges.push((start, end, "the log".to_string()));
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
                    "vhdx-region-unknown-required",
                    e_at,
                    format!("unknown required region {}", guid_string(&e.guid)),
                );
            }
            "unknown region"
        };
        f.check(
            e.required.get() & !1 != 0,
            "vhdx-region-reserved",
            e_at + 28,
            || format!("{name} entry has reserved flag bits set"),
        );
        f.check(
            e.required.get() & 1 == 0 && name != "unknown region",
            "vhdx-region-not-required",
            e_at + 28,
            || format!("{name} entry does not set Required (Windows sets it)"),
        );
        f.check(
            offset % MIB != 0 || length % MIB != 0 || length == 0 || offset < MIB,
            "vhdx-region-alignment",
            e_at + 16,
            || format!("{name} at {offset} length {length} is not whole MiB after the first MiB"),
        );
        f.check(offset.saturating_add(length) > file.len(), "vhdx-region-beyond-eof", e_at + 16, || format!("{name} at {offset} length {length} extends past the end of the file ({} bytes)", file.len()));
        ranges.push((offset, offset.saturating_add(length), name.to_string()));
    }
    for (a, b, at) in overlaps(ranges) {
        f.add("vhdx-region-overlap", at, format!("{b} overlaps {a}"));
    }
    match (bat, meta) {
        (Some(b), Some(m)) => Ok(Some((b, m))),
        _ => {
            f.add(
                "vhdx-region-missing",
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

fn check_metadata(
    file: &InputFile,
    f: &mut Findings,
    (offset, length): Region,
) -> Result<Option<Meta>> {
    if length < METADATA_TABLE_SIZE as u64 || offset.saturating_add(length) > file.len() {
        return Ok(None);
    }
    let mut table = vec![0u8; METADATA_TABLE_SIZE];
    file.read_exact_at(&mut table, offset, "VHDX metadata table")?;
    let head = MetadataTableHeader::read_from_bytes(&table[..32]).expect("32 bytes");
    if &head.signature != METADATA_SIGNATURE {
        f.add(
            "vhdx-metadata-signature",
            offset,
            "metadata table signature is not 'metadata'",
        );
        return Ok(None);
    }
    f.check(
        head.reserved.get() != 0 || head.reserved2.iter().any(|&b| b != 0),
        "vhdx-metadata-reserved",
        offset + 8,
        || "reserved fields are not zero".into(),
    );
    let count = head.entry_count.get();
    if count > MAX_METADATA_ENTRIES {
        f.add(
            "vhdx-metadata-count",
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
    let mut ranges = Vec::new();
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
            "vhdx-metadata-reserved",
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
                "vhdx-metadata-offset",
                e_at + 16,
                || format!("item {name} at offset {item_off} lies inside the 64 KiB table"),
            );
            f.check(item_off + item_len > length, "vhdx-metadata-beyond-region", e_at + 16, || format!("item {name} at {item_off} length {item_len} extends past the region ({length} bytes)"));
            ranges.push((item_off, item_off + item_len, name.clone()));
        }
        let Some(k) = k else {
            f.check(
                flags & META_IS_REQUIRED != 0,
                "vhdx-metadata-unknown-required",
                e_at,
                || format!("unknown required item {name}"),
            );
            continue;
        };
        let (_, _, want_len, virtual_disk) = known[k];
        f.check(
            flags & META_IS_REQUIRED == 0,
            "vhdx-metadata-flags",
            e_at + 24,
            || format!("{name} does not set IsRequired"),
        );
        f.check(
            (flags & META_IS_VIRTUAL_DISK != 0) != virtual_disk,
            "vhdx-metadata-flags",
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
            "vhdx-metadata-flags",
            e_at + 24,
            || format!("{name} must not set IsUser"),
        );
        if item_len != u64::from(want_len) {
            f.add(
                "vhdx-metadata-length",
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
    for (a, b, at) in overlaps(ranges) {
        f.add(
            "vhdx-metadata-overlap",
            offset + at,
            format!("item {b} overlaps item {a}"),
        );
    }
    for (k, v) in values.iter().enumerate() {
        if v.is_none() {
            f.add(
                "vhdx-metadata-missing",
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
            "vhdx-block-size",
            offset,
            format!("block size {block_size} is not a power of two from 1 MiB to 256 MiB"),
        );
        usable = false;
    }
    f.check(
        flags & !3 != 0,
        "vhdx-file-parameters-reserved",
        offset,
        || format!("file parameter flags {flags:#x} set reserved bits"),
    );
    if logical != 512 && logical != 4096 {
        f.add(
            "vhdx-logical-sector-size",
            offset,
            format!("logical sector size {logical} is not 512 or 4096"),
        );
        usable = false;
    }
    f.check(
        physical != 512 && physical != 4096,
        "vhdx-physical-sector-size",
        offset,
        || format!("physical sector size {physical} is not 512 or 4096"),
    );
    if size == 0 || size > MAX_SIZE || (usable && size % logical != 0) {
        f.add("vhdx-virtual-size", offset, format!("virtual size {size} is zero, above 64 TiB, or not a multiple of the {logical}-byte logical sector"));
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
    file: &InputFile,
    f: &mut Findings,
    (bat_offset, bat_length): Region,
    (meta_offset, meta_length): Region,
    log: Option<Span>,
    m: &Meta,
) -> Result<()> {
    let layout = BatLayout::new(m.size, m.block_size, m.logical);
    let entries = layout.total_entries();
    if entries * 8 > bat_length {
        f.add(
            "vhdx-bat-region-too-small",
            bat_offset,
            format!(
                "{entries} BAT entries need {} bytes; the region holds {bat_length}",
                entries * 8
            ),
        );
        return Ok(());
    }
    if bat_offset.saturating_add(entries * 8) > file.len() || entries * 8 > MAX_BAT_BYTES_READ {
        return Ok(()); // reported as vhdx-region-beyond-eof
    }
    let mut bytes = vec![0u8; (entries * 8) as usize];
    file.read_exact_at(&mut bytes, bat_offset, "VHDX BAT")?;
    let mut blocks = vec![
        (0, MIB, "headers and region tables".to_string()),
        (
            bat_offset,
            bat_offset.saturating_add(bat_length),
            "the BAT region".to_string(),
        ),
        (
            meta_offset,
            meta_offset.saturating_add(meta_length),
            "the metadata region".to_string(),
        ),
    ];
    if let Some((start, end)) = log.filter(|l| l.1 > l.0) {
        blocks.push((start, end, "the log".to_string()));
    }
    let period = layout.chunk_ratio + 1;
    for (i, chunk) in bytes.chunks_exact(8).enumerate() {
        let i = i as u64;
        let at = bat_offset + i * 8;
        let (state, offset, reserved) = bat::decode(u64::from_le_bytes(chunk.try_into().unwrap()));
        f.check(reserved != 0, "vhdx-bat-reserved", at, || {
            format!("entry {i} sets reserved bits 3-19")
        });
        if (i + 1) % period == 0 {
            // A sector bitmap entry: only differencing images have bitmaps.
            f.check(!m.has_parent && state != bat::NOT_PRESENT, "vhdx-bat-bitmap-state", at, || format!("sector bitmap entry {i} has state {state}; without a parent it must be not present"));
            continue;
        }
        let block = i - i / period;
        match state {
            bat::NOT_PRESENT | bat::UNDEFINED | bat::ZERO | bat::UNMAPPED => {
                f.check(offset != 0, "vhdx-bat-offset-not-zero", at, || {
                    format!("block {block} is not present but carries file offset {offset}")
                });
                f.check(m.fixed, "vhdx-fixed-block-not-present", at, || format!("fixed image (LeaveBlockAllocated) has block {block} in state {state}, not fully present"));
            }
            bat::FULLY_PRESENT | bat::PARTIALLY_PRESENT => {
                if state == bat::PARTIALLY_PRESENT && !m.has_parent {
                    f.add(
                        "vhdx-bat-state",
                        at,
                        format!("block {block} is partially present in an image without a parent"),
                    );
                }
                // Offsets come from the file: a huge one must not wrap around.
                let end = offset.saturating_add(m.block_size);
                if offset < MIB || end > file.len() {
                    f.add("vhdx-block-beyond-eof", at, format!("block {block} at {offset}..{end} does not lie wholly inside the file ({} bytes)", file.len()));
                } else {
                    blocks.push((offset, end, format!("block {block}")));
                }
            }
            other => f.add(
                "vhdx-bat-state",
                at,
                format!("block {block} has invalid state {other}"),
            ),
        }
    }
    for (a, b, start) in overlaps(blocks) {
        f.add("vhdx-block-overlap", start, format!("{b} overlaps {a}"));
    }
    Ok(())
}

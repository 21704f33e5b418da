//! VHD rules: footer and header cookies and checksums, sizes, BAT range, block placement,
//! overlap and alignment.

use zerocopy::FromBytes;

use super::{Findings, MAX_SPANS, Span, overlaps};
use crate::cancel::Cancel;
use crate::disk::InputFile;
use crate::disk::table::{Entry, Table};
use crate::error::Result;
use crate::rules::*;
use crate::vhd::dynamic::{
    COOKIE as HEADER_COOKIE, DATA_ALIGNMENT, DynamicHeader, UNALLOCATED, bitmap_bytes,
};
use crate::vhd::footer::{
    COOKIE, DISK_DIFFERENCING, DISK_DYNAMIC, DISK_FIXED, FEATURES_RESERVED, Footer, VERSION,
};
use crate::vhd::read::{MAX_BAT_ENTRIES, read_footer};
use crate::vhd::write::MAX_SIZE;

/// Checks one footer; returns it when its cookie and checksum hold.
fn check_footer(
    file: &InputFile,
    f: &mut Findings,
    at: u64,
    which: &str,
) -> Result<Option<Footer>> {
    let footer = read_footer(file, at)?;
    if &footer.cookie != COOKIE {
        f.add(
            &VHD_FOOTER_COOKIE,
            at,
            format!("{which} cookie is not 'conectix'"),
        );
        return Ok(None);
    }
    if footer.expected_checksum() != footer.checksum.get() {
        f.add(
            &VHD_FOOTER_CHECKSUM,
            at + 64,
            format!(
                "{which} checksum {:#010x} does not match the contents ({:#010x})",
                footer.checksum.get(),
                footer.expected_checksum()
            ),
        );
        return Ok(None);
    }
    f.check(
        footer.features.get() & FEATURES_RESERVED == 0,
        &VHD_FOOTER_FEATURES,
        at + 8,
        || {
            format!(
                "{which} features {:#x} lack the reserved bit 0x2",
                footer.features.get()
            )
        },
    );
    f.check(
        footer.version.get() != VERSION,
        &VHD_FOOTER_VERSION,
        at + 12,
        || {
            format!(
                "{which} version {:#x} is not 0x00010000",
                footer.version.get()
            )
        },
    );
    f.check(
        footer.reserved.iter().any(|&b| b != 0),
        &VHD_FOOTER_RESERVED,
        at + 85,
        || format!("{which} reserved bytes are not zero"),
    );
    Ok(Some(footer))
}

pub fn check(file: &InputFile, f: &mut Findings, cancel: &Cancel) -> Result<()> {
    let len = file.len();
    if len < 512 {
        f.add(&VHD_TRUNCATED, 0, "file is shorter than a footer");
        return Ok(());
    }
    let end = len - 512;
    let Some(footer) = check_footer(file, f, end, "footer")? else {
        return Ok(());
    };
    let size = footer.current_size.get();
    f.check(size % 512 != 0, &VHD_SIZE_UNALIGNED, end + 48, || {
        format!("current size {size} is not a multiple of 512")
    });
    f.check(size > MAX_SIZE, &VHD_SIZE_LIMIT, end + 48, || {
        format!("current size {size} exceeds 2040 GiB")
    });
    f.check(size == 0, &VHD_SIZE_ZERO, end + 48, || {
        "current size is zero".into()
    });
    match footer.disk_type.get() {
        DISK_FIXED => {
            f.check(
                footer.data_offset.get() != u64::MAX,
                &VHD_DATA_OFFSET,
                end + 16,
                || {
                    format!(
                        "fixed disk data offset {:#x} is not all ones",
                        footer.data_offset.get()
                    )
                },
            );
            // Compared without adding to `size`, which the file controls.
            f.check(end != size, &VHD_FIXED_FILE_SIZE, end, || {
                format!(
                    "fixed disk of {size} bytes needs a file of its size plus the 512-byte footer; it is {len}"
                )
            });
        }
        DISK_DYNAMIC | DISK_DIFFERENCING => check_dynamic(file, f, &footer, end, cancel)?,
        other => f.add(
            &VHD_DISK_TYPE,
            end + 60,
            format!("disk type {other} is not 2, 3 or 4"),
        ),
    }
    Ok(())
}

/// A differencing disk's parent locators: each inside the file and decodable, and some
/// way to name the parent (a locator or the header's parent name).
fn check_locators(file: &InputFile, f: &mut Findings, h: &DynamicHeader, at: u64) -> Result<()> {
    use crate::vhd::locator;
    match locator::read_locators(file, &h.parent_locators, at + 576) {
        Ok(found) => {
            let name = locator::parent_unicode_name(&h.parent_unicode_name);
            f.check(
                locator::hints(&found, &name).is_empty(),
                &VHD_PARENT_LOCATOR,
                at + 576,
                || "a differencing disk without a parent locator or parent name".into(),
            );
            Ok(())
        }
        Err(e) => super::as_finding(e, &VHD_PARENT_LOCATOR, f),
    }
}

fn check_dynamic(
    file: &InputFile,
    f: &mut Findings,
    footer: &Footer,
    end: u64,
    cancel: &Cancel,
) -> Result<()> {
    if let Some(copy) = check_footer(file, f, 0, "footer copy at offset 0")? {
        f.check(
            zerocopy::IntoBytes::as_bytes(&copy) != zerocopy::IntoBytes::as_bytes(footer),
            &VHD_FOOTER_COPY_DIFFERS,
            0,
            || "the footer copy at offset 0 differs from the footer".into(),
        );
    }
    let size = footer.current_size.get();
    let at = footer.data_offset.get();
    if at.checked_add(1024).is_none_or(|e| e > end) {
        f.add(
            &VHD_DATA_OFFSET,
            end + 16,
            format!(
                "dynamic header offset {at} does not leave room for the header before the footer"
            ),
        );
        return Ok(());
    }
    let mut bytes = [0u8; 1024];
    file.read_exact_at(&mut bytes, at, "VHD dynamic header")?;
    let h = DynamicHeader::read_from_bytes(&bytes).expect("1024 bytes");
    if &h.cookie != HEADER_COOKIE {
        f.add(
            &VHD_HEADER_COOKIE,
            at,
            "dynamic header cookie is not 'cxsparse'",
        );
        return Ok(());
    }
    if h.expected_checksum() != h.checksum.get() {
        f.add(
            &VHD_HEADER_CHECKSUM,
            at + 36,
            "dynamic header checksum does not match the contents",
        );
        return Ok(());
    }
    f.check(
        h.header_version.get() != VERSION,
        &VHD_HEADER_VERSION,
        at + 24,
        || {
            format!(
                "header version {:#x} is not 0x00010000",
                h.header_version.get()
            )
        },
    );
    f.check(
        h.data_offset.get() != u64::MAX,
        &VHD_HEADER_DATA_OFFSET,
        at + 8,
        || "header data offset is not all ones".into(),
    );
    if footer.disk_type.get() == DISK_DIFFERENCING {
        check_locators(file, f, &h, at)?;
    }
    let block = u64::from(h.block_size.get());
    if !block.is_power_of_two() || !(512..=crate::vhd::read::MAX_BLOCK_SIZE).contains(&block) {
        f.add(
            &VHD_BLOCK_SIZE,
            at + 32,
            format!("block size {block} is not a power of two from 512 bytes to 256 MiB"),
        );
        return Ok(());
    }
    let entries = u64::from(h.max_table_entries.get());
    let needed = size.div_ceil(block);
    if entries < needed {
        f.add(
            &VHD_BAT_TOO_SMALL,
            at + 28,
            format!("{entries} BAT entries cannot cover {needed} blocks"),
        );
    } else {
        f.check(entries != needed, &VHD_BAT_ENTRY_COUNT, at + 28, || {
            format!(
                "{entries} BAT entries for {needed} blocks (exactly ceil(size / block size) expected)"
            )
        });
    }
    // Only the entries the disk uses matter for placement; at most MAX_BAT_ENTRIES.
    let used = entries.min(needed).min(MAX_BAT_ENTRIES);
    let table = h.table_offset.get();
    let bat_len = entries.saturating_mul(4).div_ceil(512).saturating_mul(512);
    if table.checked_add(bat_len).is_none_or(|e| e > end) {
        f.add(
            &VHD_BAT_BEYOND_EOF,
            at + 16,
            format!("BAT at {table} ({entries} entries) extends past the footer"),
        );
        return Ok(());
    }
    let mut bat = Table::new(file, table, used, Entry::U32Be, "VHD BAT")?;
    let bitmap = bitmap_bytes(block);
    let data_start = (at + 1024).max(table + bat_len);
    let mut ranges = vec![
        (0, 512, Span::Named("footer copy")),
        (at, at + 1024, Span::Named("dynamic header")),
        (table, table + bat_len, Span::Named("BAT")),
    ];
    // The first offender and how many there are: a wrecked table says enough with one.
    let mut beyond: (Option<(u64, u64, u64)>, usize) = (None, 0);
    let mut unaligned: (Option<u64>, usize) = (None, 0);
    bat.for_each(file, |i, entry| {
        if i % 65536 == 0 {
            cancel.check()?;
        }
        if entry == u64::from(UNALLOCATED) {
            return Ok(true);
        }
        let start = entry * 512;
        let stop = start + bitmap + block;
        if start < data_start || stop > end {
            beyond.0.get_or_insert((i, start, stop));
            beyond.1 += 1;
        } else {
            if ranges.len() < MAX_SPANS {
                ranges.push((start, stop, Span::Block(i)));
            }
            if (start + bitmap) % DATA_ALIGNMENT != 0 {
                unaligned.0.get_or_insert(i);
                unaligned.1 += 1;
            }
        }
        Ok(true)
    })?;
    if let (Some((i, start, stop)), count) = beyond {
        f.add(
            &VHD_BLOCK_BEYOND_EOF,
            table + i * 4,
            format!(
                "block {i} at {start}..{stop} lies on the header or BAT, or runs into or past the footer at {end}{}",
                others(count)
            ),
        );
    }
    if let (Some(i), count) = unaligned {
        f.add(
            &VHD_BLOCK_UNALIGNED,
            table + i * 4,
            format!(
                "block {i}'s data does not start on a 4 KiB boundary{}",
                others(count)
            ),
        );
    }
    for (a, b, start) in overlaps(ranges) {
        f.add(&VHD_BLOCK_OVERLAP, start, format!("{b} overlaps {a}"));
    }
    Ok(())
}

/// ", and N others like it" for a finding that stands for several entries.
pub(crate) fn others(count: usize) -> String {
    match count {
        0 | 1 => String::new(),
        2 => ", and 1 other block like it".into(),
        n => format!(", and {} other blocks like it", n - 1),
    }
}

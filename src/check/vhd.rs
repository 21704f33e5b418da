//! VHD rules: footer and header cookies and checksums, sizes, BAT range and overlap.

use zerocopy::FromBytes;

use super::{Findings, overlaps};
use crate::disk::InputFile;
use crate::error::Result;
use crate::vhd::dynamic::{COOKIE as HEADER_COOKIE, DynamicHeader, UNALLOCATED, bitmap_bytes};
use crate::vhd::footer::{
    COOKIE, DISK_DIFFERENCING, DISK_DYNAMIC, DISK_FIXED, FEATURES_RESERVED, Footer, VERSION,
};
use crate::vhd::read::read_footer;
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
            "vhd-footer-cookie",
            at,
            format!("{which} cookie is not 'conectix'"),
        );
        return Ok(None);
    }
    if footer.expected_checksum() != footer.checksum.get() {
        f.add(
            "vhd-footer-checksum",
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
        "vhd-footer-features",
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
        "vhd-footer-version",
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
        "vhd-footer-reserved",
        at + 85,
        || format!("{which} reserved bytes are not zero"),
    );
    Ok(Some(footer))
}

pub fn check(file: &InputFile, f: &mut Findings) -> Result<()> {
    let len = file.len();
    if len < 512 {
        f.add("vhd-truncated", 0, "file is shorter than a footer");
        return Ok(());
    }
    let end = len - 512;
    let Some(footer) = check_footer(file, f, end, "footer")? else {
        return Ok(());
    };
    let size = footer.current_size.get();
    f.check(size % 512 != 0, "vhd-size-unaligned", end + 48, || {
        format!("current size {size} is not a multiple of 512")
    });
    f.check(size > MAX_SIZE, "vhd-size-limit", end + 48, || {
        format!("current size {size} exceeds 2040 GiB")
    });
    f.check(size == 0, "vhd-size-zero", end + 48, || {
        "current size is zero".into()
    });
    match footer.disk_type.get() {
        DISK_FIXED => {
            f.check(
                footer.data_offset.get() != u64::MAX,
                "vhd-data-offset",
                end + 16,
                || {
                    format!(
                        "fixed disk data offset {:#x} is not all ones",
                        footer.data_offset.get()
                    )
                },
            );
            f.check(end != size, "vhd-fixed-file-size", end, || {
                format!(
                    "fixed disk of {size} bytes needs a file of {} bytes; it is {len}",
                    size + 512
                )
            });
        }
        DISK_DYNAMIC | DISK_DIFFERENCING => check_dynamic(file, f, &footer, end)?,
        other => f.add(
            "vhd-disk-type",
            end + 60,
            format!("disk type {other} is not 2, 3 or 4"),
        ),
    }
    Ok(())
}

fn check_dynamic(file: &InputFile, f: &mut Findings, footer: &Footer, end: u64) -> Result<()> {
    if let Some(copy) = check_footer(file, f, 0, "footer copy at offset 0")? {
        f.check(
            zerocopy::IntoBytes::as_bytes(&copy) != zerocopy::IntoBytes::as_bytes(footer),
            "vhd-footer-copy-differs",
            0,
            || "the footer copy at offset 0 differs from the footer".into(),
        );
    }
    let size = footer.current_size.get();
    let at = footer.data_offset.get();
    if at.checked_add(1024).is_none_or(|e| e > end) {
        f.add(
            "vhd-data-offset",
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
            "vhd-header-cookie",
            at,
            "dynamic header cookie is not 'cxsparse'",
        );
        return Ok(());
    }
    if h.expected_checksum() != h.checksum.get() {
        f.add(
            "vhd-header-checksum",
            at + 36,
            "dynamic header checksum does not match the contents",
        );
        return Ok(());
    }
    f.check(
        h.header_version.get() != VERSION,
        "vhd-header-version",
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
        "vhd-header-data-offset",
        at + 8,
        || "header data offset is not all ones".into(),
    );
    let block = u64::from(h.block_size.get());
    if !block.is_power_of_two() || block < 512 {
        f.add(
            "vhd-block-size",
            at + 32,
            format!("block size {block} is not a power of two of at least 512"),
        );
        return Ok(());
    }
    let entries = u64::from(h.max_table_entries.get());
    let needed = size.div_ceil(block);
    f.check(entries != needed, "vhd-bat-entry-count", at + 28, || {
        format!(
            "{entries} BAT entries for {needed} blocks (exactly ceil(size / block size) expected)"
        )
    });
    let table = h.table_offset.get();
    let bat_len = (entries * 4).div_ceil(512) * 512;
    if table.checked_add(bat_len).is_none_or(|e| e > end) {
        f.add(
            "vhd-bat-beyond-eof",
            at + 16,
            format!("BAT at {table} ({entries} entries) extends past the footer"),
        );
        return Ok(());
    }
    let mut bat = vec![0u8; (entries * 4) as usize];
    file.read_exact_at(&mut bat, table, "VHD BAT")?;
    let bitmap = bitmap_bytes(block);
    let mut ranges = vec![
        (0, 512, "footer copy".to_string()),
        (at, at + 1024, "dynamic header".to_string()),
        (table, table + bat_len, "BAT".to_string()),
    ];
    for (i, c) in bat.chunks_exact(4).enumerate() {
        let entry = u32::from_be_bytes(c.try_into().unwrap());
        if entry == UNALLOCATED {
            continue;
        }
        let start = u64::from(entry) * 512;
        let stop = start + bitmap + block;
        if stop > end {
            f.add(
                "vhd-block-beyond-eof",
                table + i as u64 * 4,
                format!("block {i} at {start}..{stop} runs into or past the footer at {end}"),
            );
        } else {
            ranges.push((start, stop, format!("block {i}")));
        }
    }
    for (a, b, start) in overlaps(ranges) {
        f.add("vhd-block-overlap", start, format!("{b} overlaps {a}"));
    }
    Ok(())
}

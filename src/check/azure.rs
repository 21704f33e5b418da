//! Azure's rules for an uploaded image: a fixed VHD, whole MiB, file = size + 512, a sound
//! footer, and a size within Azure's bounds. One finding per rule.

use super::Findings;
use crate::disk::InputFile;
use crate::error::Result;
use crate::rules::*;
use crate::target::{AZURE_MAX_SIZE, AZURE_MIN_SIZE, whole_mib};
use crate::vhd::footer::{COOKIE, DISK_FIXED};
use crate::vhd::read::read_footer;

const MIB: u64 = 1 << 20;

pub fn check(file: &InputFile, f: &mut Findings) -> Result<()> {
    let len = file.len();
    let mut head = [0u8; 8];
    file.read_exact_at(&mut head[..len.min(8) as usize], 0, "file header")?;
    if &head == b"vhdxfile" {
        f.add(
            &AZURE_FORMAT,
            0,
            "this is a VHDX image: Azure takes only fixed VHD (convert with --target azure)",
        );
        return Ok(());
    }
    if len < 512 {
        f.add(&AZURE_COOKIE, 0, "file is shorter than a VHD footer");
        return Ok(());
    }
    let end = len - 512;
    let footer = read_footer(file, end)?;
    if &footer.cookie != COOKIE {
        f.add(
            &AZURE_COOKIE,
            end,
            "the last 512 bytes are not a VHD footer (cookie 'conectix')",
        );
        return Ok(());
    }
    f.check(
        footer.expected_checksum() != footer.checksum.get(),
        &AZURE_FOOTER_CHECKSUM,
        end + 64,
        || {
            format!(
                "footer checksum {:#010x} does not match the contents ({:#010x})",
                footer.checksum.get(),
                footer.expected_checksum()
            )
        },
    );
    let size = footer.current_size.get();
    let fixed = footer.disk_type.get() == DISK_FIXED;
    f.check(!fixed, &AZURE_FIXED, end + 60, || {
        format!(
            "disk type {} is not fixed (2): Azure takes only fixed VHD",
            footer.disk_type.get()
        )
    });
    f.check(
        size % MIB != 0,
        &AZURE_WHOLE_MIB,
        end + 48,
        || match whole_mib(size) {
            Some(next) => {
                format!("virtual size {size} bytes is not a whole number of MiB (next: {next})")
            }
            None => format!("virtual size {size} bytes is not a whole number of MiB"),
        },
    );
    // Compared without adding to `size`, which the file controls.
    f.check(fixed && end != size, &AZURE_FILE_SIZE, end, || {
        format!("file is {len} bytes; a fixed VHD of {size} bytes must be 512 bytes more")
    });
    f.check(
        !(AZURE_MIN_SIZE..=AZURE_MAX_SIZE).contains(&size),
        &AZURE_SIZE_BOUNDS,
        end + 48,
        || format!("virtual size {size} bytes is outside Azure's 20 MiB to 32767 GiB"),
    );
    Ok(())
}

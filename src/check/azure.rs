//! Azure's rules for an uploaded image: a fixed VHD, whole MiB, file = size + 512, a sound
//! footer, and a size within Azure's bounds. One finding per rule.

use super::Findings;
use crate::disk::InputFile;
use crate::error::Result;
use crate::target::{AZURE_MAX_SIZE, AZURE_MIN_SIZE};
use crate::vhd::footer::{COOKIE, DISK_FIXED};
use crate::vhd::read::read_footer;

const MIB: u64 = 1 << 20;

pub fn check(file: &InputFile, f: &mut Findings) -> Result<()> {
    let len = file.len();
    let mut head = [0u8; 8];
    file.read_exact_at(&mut head[..len.min(8) as usize], 0, "file header")?;
    if &head == b"vhdxfile" {
        f.add(
            "azure-format",
            0,
            "this is a VHDX image: Azure takes only fixed VHD (convert with --target azure)",
        );
        return Ok(());
    }
    if len < 512 {
        f.add("azure-cookie", 0, "file is shorter than a VHD footer");
        return Ok(());
    }
    let end = len - 512;
    let footer = read_footer(file, end)?;
    if &footer.cookie != COOKIE {
        f.add(
            "azure-cookie",
            end,
            "the last 512 bytes are not a VHD footer (cookie 'conectix')",
        );
        return Ok(());
    }
    f.check(
        footer.expected_checksum() != footer.checksum.get(),
        "azure-footer-checksum",
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
    f.check(!fixed, "azure-fixed", end + 60, || {
        format!(
            "disk type {} is not fixed (2): Azure takes only fixed VHD",
            footer.disk_type.get()
        )
    });
    f.check(size % MIB != 0, "azure-whole-mib", end + 48, || {
        format!(
            "virtual size {size} bytes is not a whole number of MiB (next: {})",
            size.div_ceil(MIB) * MIB
        )
    });
    f.check(fixed && len != size + 512, "azure-file-size", end, || {
        format!(
            "file is {len} bytes; a fixed VHD of {size} bytes must be {}",
            size + 512
        )
    });
    f.check(
        !(AZURE_MIN_SIZE..=AZURE_MAX_SIZE).contains(&size),
        "azure-size-bounds",
        end + 48,
        || format!("virtual size {size} bytes is outside Azure's 20 MiB to 32767 GiB"),
    );
    Ok(())
}

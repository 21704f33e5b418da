//! Destination platforms: what Azure and Hyper-V generation 1 and 2 machines require of
//! an image (format, type, size), and what they expect of the disk's partition table.

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::partition::{self, PartitionTable, Scheme};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Azure's bounds on a page-blob VHD's virtual size: 20 MiB up to a 32767 GiB data disk.
pub const AZURE_MIN_SIZE: u64 = 20 * MIB;
pub const AZURE_MAX_SIZE: u64 = 32767 * GIB;
/// Generation 1 OS disks (MBR) up to 2 TiB.
pub const MBR_LIMIT: u64 = 2 * TIB;

pub use crate::platform::Target;

/// `size` rounded up to a whole MiB; None past u64.
pub fn whole_mib(size: u64) -> Option<u64> {
    size.checked_next_multiple_of(MIB)
}

/// The output's virtual size for a target: Azure wants whole MiB, within its bounds.
pub fn output_size(target: Option<Target>, size: u64) -> Result<u64> {
    if target != Some(Target::Azure) {
        return Ok(size);
    }
    match whole_mib(size) {
        Some(rounded) if rounded < AZURE_MIN_SIZE => Err(Error::output_limit(format!(
            "--target azure: the disk is {size} bytes; Azure takes disks of at least 20 MiB"
        ))),
        Some(rounded) if rounded <= AZURE_MAX_SIZE => Ok(rounded),
        _ => Err(Error::output_limit(format!(
            "--target azure: the disk is {size} bytes; Azure takes disks of at most 32767 GiB"
        ))),
    }
}

/// What a VMware adapter type means for a Hyper-V machine.
pub fn adapter_note(adapter: &str) -> String {
    match adapter.to_ascii_lowercase().as_str() {
        "ide" => {
            "IDE: a Hyper-V generation 1 machine can boot from it on its IDE controller".into()
        }
        a @ ("lsilogic" | "buslogic" | "lsisas1068" | "pvscsi") => format!(
            "{a} is a SCSI controller: Hyper-V generation 1 boots only from IDE, so attach the disk to IDE there; generation 2 boots from SCSI"
        ),
        other => format!("{other}: unknown adapter type"),
    }
}

/// Advice about booting `disk` on `target`'s machines, from its partition table and
/// adapter type; a partition table that cannot be read is said, not fatal.
pub fn advice(target: Target, disk: &mut dyn Disk) -> Vec<String> {
    match partition::inspect(disk) {
        Ok(table) => fit_warnings(
            target,
            &table,
            disk.virtual_size(),
            disk.adapter_type().as_deref(),
        ),
        Err(e) => vec![format!("partition table unreadable, fit not checked: {e}")],
    }
}

/// Warnings about booting this disk on the target's machines.
pub fn fit_warnings(
    target: Target,
    table: &PartitionTable,
    size: u64,
    adapter: Option<&str>,
) -> Vec<String> {
    let mut w = Vec::new();
    let gen1 = matches!(target, Target::HypervGen1 | Target::Azure);
    match table.scheme {
        Scheme::Gpt if target == Target::HypervGen1 => w.push(
            "the disk has a GPT: Hyper-V generation 1 boots only MBR disks; use --target hyperv-gen2".into(),
        ),
        Scheme::Gpt if target == Target::Azure => w.push(
            "the disk has a GPT: as an OS disk it needs an Azure generation 2 VM".into(),
        ),
        Scheme::Mbr if target == Target::HypervGen2 => w.push(
            "the disk has an MBR: Hyper-V generation 2 boots with UEFI from GPT disks; convert the partition table in the guest (e.g. mbr2gpt) or use generation 1".into(),
        ),
        Scheme::None => w.push("no partition table found: the disk will not boot (fine for a data disk)".into()),
        _ => {}
    }
    if table.scheme == Scheme::Mbr && size > MBR_LIMIT {
        w.push(format!(
            "the disk is {size} bytes with an MBR, which addresses only the first 2 TiB"
        ));
    }
    if table.scheme != Scheme::None && !table.bootable {
        w.push("no bootable partition found (no active MBR partition with boot code, or no EFI system partition)".into());
    }
    for p in &table.problems {
        w.push(format!("partition table: {p}"));
    }
    if gen1
        && let Some(a) = adapter
        && !a.eq_ignore_ascii_case("ide")
    {
        w.push(format!("VMware adapter {}", adapter_note(a)));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_rounds_up_to_whole_mib_within_bounds() {
        let t = Some(Target::Azure);
        assert_eq!(output_size(t, 100 * MIB + 12800).unwrap(), 101 * MIB);
        assert_eq!(output_size(t, 30 * MIB).unwrap(), 30 * MIB);
        assert!(output_size(t, 19 * MIB).is_err());
        assert!(output_size(t, 32768 * GIB).is_err());
        assert!(output_size(t, u64::MAX - 511).is_err(), "no wrap-around");
        assert_eq!(output_size(None, 12345 * 512).unwrap(), 12345 * 512);
    }

    #[test]
    fn mbr_beyond_2_tib_is_warned() {
        let table = PartitionTable {
            scheme: Scheme::Mbr,
            partitions: Vec::new(),
            bootable: true,
            gpt: None,
            problems: Vec::new(),
        };
        let w = fit_warnings(Target::HypervGen1, &table, 3 * TIB, Some("ide"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("only the first 2 TiB"));
        assert!(fit_warnings(Target::HypervGen1, &table, 2 * TIB, Some("ide")).is_empty());
        let w = fit_warnings(Target::Azure, &table, GIB, Some("pvscsi"));
        assert!(w[0].contains("SCSI"), "{w:?}");
    }
}

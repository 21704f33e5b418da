//! Partition tables over a [`ByteSource`]: MBR with extended/logical partitions (EBR
//! chains), GPT (primary header, else the backup), or none. The same knowledge as
//! `crate::partition`, which reads a `Disk` for `info`; this one feeds the guest scanner and
//! keeps what the scanner needs (PARTUUIDs, the disk signature, ESP/BIOS-boot presence).

use std::collections::HashSet;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use crate::guest::error::GuestResult;
use crate::guest::source::ByteSource;

/// GPT entries examined at most (the usual table has 128).
const MAX_GPT_ENTRIES: u32 = 1024;
/// Logical partitions followed at most along an EBR chain (Linux stops far earlier in
/// practice; a crafted chain must not run on).
const MAX_LOGICAL: usize = 128;

pub const GPT_ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
pub const GPT_BIOS_BOOT: &str = "21686148-6449-6e6f-744e-656564454649";
pub const GPT_MSR: &str = "e3c9e316-0b5c-4db8-817d-f92df00215ae";
pub const GPT_LDM_METADATA: &str = "5808c8aa-7e8f-42e0-85d2-e1e90434cfb3";
pub const GPT_LDM_DATA: &str = "af9b60a0-1431-4f62-bc68-3311714a69ad";
pub const GPT_WINDOWS_SNAPSHOT: &str = "caddebf1-4400-4de8-b103-12117dcf3ccf";
/// MBR type of a Windows dynamic disk (LDM).
pub const MBR_LDM: u8 = 0x42;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// No partition table: the whole disk is one volume.
    None,
    Mbr,
    Gpt,
}

/// What the partition table says about the disk as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub scheme: Scheme,
    /// MBR disk signature (u32 at 0x1B8), which Windows' MountedDevices refers to. Also
    /// present on the protective MBR of a GPT disk (usually 0 there).
    pub disk_signature: Option<u32>,
    /// GPT disk GUID, lower case.
    pub disk_guid: Option<String>,
    /// A GPT partition of the EFI system type.
    pub has_esp: bool,
    /// A GPT partition of the BIOS boot type.
    pub has_bios_boot: bool,
    /// Damage seen (bad CRCs, a backup header used, a looping EBR chain).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

impl TableReport {
    /// virt-v2v's rule (GUEST.md 5.1): a GPT ESP and no BIOS boot partition means UEFI;
    /// anything else, BIOS. An MBR `0xEF` partition is not considered.
    pub fn firmware(&self) -> Firmware {
        if self.scheme == Scheme::Gpt && self.has_esp && !self.has_bios_boot {
            Firmware::Uefi
        } else {
            Firmware::Bios
        }
    }
}

/// One partition as found in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// As Linux numbers them: MBR primaries 1-4, logical partitions from 5; GPT slots from 1.
    pub number: u32,
    pub start: u64,
    pub size: u64,
    /// "0x83" or a GPT type GUID in lower case.
    pub type_id: String,
    /// GPT partition GUID, or `SIGNATURE-NN` for MBR (Linux's PARTUUID).
    pub part_uuid: Option<String>,
    /// GPT partition name.
    pub label: Option<String>,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct MbrEntry {
    status: u8,
    chs_first: [u8; 3],
    kind: u8,
    chs_last: [u8; 3],
    lba_start: U32,
    sectors: U32,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Mbr {
    boot_code: [u8; 440],
    disk_signature: U32,
    reserved: [u8; 2],
    entries: [MbrEntry; 4],
    signature: [u8; 2],
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct GptHeader {
    signature: [u8; 8],
    revision: U32,
    header_size: U32,
    header_crc: U32,
    reserved: U32,
    my_lba: U64,
    alternate_lba: U64,
    first_usable: U64,
    last_usable: U64,
    disk_guid: [u8; 16],
    entries_lba: U64,
    entry_count: U32,
    entry_size: U32,
    entries_crc: U32,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct GptEntry {
    type_guid: [u8; 16],
    part_guid: [u8; 16],
    first_lba: U64,
    last_lba: U64,
    attributes: U64,
    name: [u8; 72],
}

fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0f | 0x85)
}

/// Reads the partition table of `disk`.
pub fn read_table(disk: &dyn ByteSource) -> GuestResult<(TableReport, Vec<PartitionEntry>)> {
    let mut report = TableReport {
        scheme: Scheme::None,
        disk_signature: None,
        disk_guid: None,
        has_esp: false,
        has_bios_boot: false,
        problems: Vec::new(),
    };
    if disk.len() < 512 {
        return Ok((report, Vec::new()));
    }
    let mut sector = [0u8; 512];
    disk.read_exact_at(0, &mut sector)?;
    let Ok(mbr) = Mbr::ref_from_bytes(&sector[..]) else {
        return Ok((report, Vec::new()));
    };
    if mbr.signature != [0x55, 0xAA] || looks_like_boot_sector(&sector, mbr) {
        return Ok((report, Vec::new()));
    }
    report.disk_signature = Some(mbr.disk_signature.get());
    if mbr.entries.iter().any(|e| e.kind == 0xEE) {
        report.scheme = Scheme::Gpt;
        let parts = read_gpt(disk, &mut report)?;
        report.has_esp = parts.iter().any(|p| p.type_id == GPT_ESP);
        report.has_bios_boot = parts.iter().any(|p| p.type_id == GPT_BIOS_BOOT);
        return Ok((report, parts));
    }
    report.scheme = Scheme::Mbr;
    let parts = read_mbr(disk, mbr, &mut report)?;
    Ok((report, parts))
}

/// A file system's boot sector also ends in 55 AA: a volume without a partition table
/// (NTFS, FAT, BitLocker on the whole disk) must not be read as an MBR. As Linux does:
/// entries whose status byte is neither 0 nor 0x80 mean no table, and so does a FAT boot
/// sector with no partition entry in use.
fn looks_like_boot_sector(sector: &[u8; 512], mbr: &Mbr) -> bool {
    let oem = &sector[3..11];
    if oem == b"NTFS    " || oem == b"-FVE-FS-" || oem == b"EXFAT   " {
        return true;
    }
    if mbr
        .entries
        .iter()
        .any(|e| e.status != 0 && e.status != 0x80)
    {
        return true;
    }
    mbr.entries.iter().all(|e| e.kind == 0) && super::detect::is_fat(sector)
}

fn mbr_part_uuid(signature: u32, number: u32) -> String {
    format!("{signature:08x}-{number:02x}")
}

fn read_mbr(
    disk: &dyn ByteSource,
    mbr: &Mbr,
    report: &mut TableReport,
) -> GuestResult<Vec<PartitionEntry>> {
    let signature = mbr.disk_signature.get();
    let mut parts = Vec::new();
    let mut extended = None;
    for (i, e) in mbr.entries.iter().enumerate() {
        let (start, sectors) = (u64::from(e.lba_start.get()), u64::from(e.sectors.get()));
        if e.kind == 0 || sectors == 0 {
            continue;
        }
        if is_extended(e.kind) {
            // Only the first extended partition counts, as in Linux.
            extended.get_or_insert((start, sectors));
            continue;
        }
        let number = i as u32 + 1;
        parts.push(PartitionEntry {
            number,
            start: start * 512,
            size: sectors * 512,
            type_id: format!("{:#04x}", e.kind),
            part_uuid: Some(mbr_part_uuid(signature, number)),
            label: None,
        });
    }
    if let Some((ext_start, ext_sectors)) = extended {
        read_logical(disk, signature, ext_start, ext_sectors, &mut parts, report)?;
    }
    check_inside(disk.len(), &parts, report);
    Ok(parts)
}

/// Follows the EBR chain of the extended partition at `ext_start` (LBA). Each EBR's first
/// entry is a logical partition relative to that EBR; its second points at the next EBR,
/// relative to the extended partition's start.
fn read_logical(
    disk: &dyn ByteSource,
    signature: u32,
    ext_start: u64,
    ext_sectors: u64,
    parts: &mut Vec<PartitionEntry>,
    report: &mut TableReport,
) -> GuestResult<()> {
    let mut seen = HashSet::new();
    let mut ebr_lba = ext_start;
    let mut number = 5u32;
    for _ in 0..MAX_LOGICAL {
        if !seen.insert(ebr_lba) {
            report
                .problems
                .push(format!("EBR chain loops back to LBA {ebr_lba}"));
            return Ok(());
        }
        let offset = ebr_lba.saturating_mul(512);
        if offset.saturating_add(512) > disk.len() {
            report.problems.push(format!(
                "EBR at LBA {ebr_lba} lies past the end of the disk"
            ));
            return Ok(());
        }
        let mut sector = [0u8; 512];
        disk.read_exact_at(offset, &mut sector)?;
        let Ok(ebr) = Mbr::ref_from_bytes(&sector[..]) else {
            return Ok(());
        };
        if ebr.signature != [0x55, 0xAA] {
            report
                .problems
                .push(format!("EBR at LBA {ebr_lba} has no 55 AA signature"));
            return Ok(());
        }
        let [first, second, ..] = &ebr.entries;
        let sectors = u64::from(first.sectors.get());
        if first.kind != 0 && sectors != 0 {
            let start = ebr_lba.saturating_add(u64::from(first.lba_start.get()));
            parts.push(PartitionEntry {
                number,
                start: start.saturating_mul(512),
                size: sectors * 512,
                type_id: format!("{:#04x}", first.kind),
                part_uuid: Some(mbr_part_uuid(signature, number)),
                label: None,
            });
            number += 1;
        }
        let next = u64::from(second.lba_start.get());
        if !is_extended(second.kind) || next == 0 {
            return Ok(());
        }
        if next >= ext_sectors {
            report.problems.push(format!(
                "EBR at LBA {ebr_lba} links past the extended partition"
            ));
            return Ok(());
        }
        ebr_lba = ext_start + next;
    }
    report.problems.push(format!(
        "more than {MAX_LOGICAL} logical partitions; the rest are ignored"
    ));
    Ok(())
}

fn check_inside(disk_len: u64, parts: &[PartitionEntry], report: &mut TableReport) {
    for p in parts {
        if p.start.saturating_add(p.size) > disk_len {
            report.problems.push(format!(
                "partition {} ends past the end of the disk",
                p.number
            ));
        }
    }
}

fn guid(bytes: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes_le(*bytes).to_string()
}

/// Reads and checks the GPT header at `lba`: signature, size, CRC and its own LBA.
fn read_gpt_header(disk: &dyn ByteSource, lba: u64, sector: u64) -> GuestResult<Option<Vec<u8>>> {
    let Some(end) = lba.checked_add(1).and_then(|n| n.checked_mul(sector)) else {
        return Ok(None);
    };
    if end > disk.len() {
        return Ok(None);
    }
    let mut bytes = vec![0u8; sector as usize];
    disk.read_exact_at(lba * sector, &mut bytes)?;
    let Ok((h, _)) = GptHeader::ref_from_prefix(&bytes[..]) else {
        return Ok(None);
    };
    if &h.signature != b"EFI PART" {
        return Ok(None);
    }
    let size = h.header_size.get() as usize;
    if !(92..=bytes.len()).contains(&size) || h.my_lba.get() != lba {
        return Ok(None);
    }
    let want = h.header_crc.get();
    let mut copy = bytes[..size].to_vec();
    copy[16..20].fill(0);
    // GPT uses the IEEE CRC-32.
    Ok((crc32fast::hash(&copy) == want).then_some(bytes))
}

fn read_gpt(disk: &dyn ByteSource, report: &mut TableReport) -> GuestResult<Vec<PartitionEntry>> {
    for sector in [512u64, 4096] {
        let last_lba = (disk.len() / sector).saturating_sub(1);
        let primary = read_gpt_header(disk, 1, sector)?;
        let header = match primary {
            Some(h) => Some(h),
            None => {
                let backup = read_gpt_header(disk, last_lba, sector)?;
                if backup.is_some() {
                    report
                        .problems
                        .push("primary GPT header is damaged; the backup header was used".into());
                }
                backup
            }
        };
        if let Some(h) = header {
            return read_gpt_entries(disk, &h, sector, report);
        }
    }
    report
        .problems
        .push("protective MBR present but no valid GPT header found".into());
    Ok(Vec::new())
}

fn read_gpt_entries(
    disk: &dyn ByteSource,
    header: &[u8],
    sector: u64,
    report: &mut TableReport,
) -> GuestResult<Vec<PartitionEntry>> {
    let Ok((h, _)) = GptHeader::ref_from_prefix(header) else {
        return Ok(Vec::new());
    };
    report.disk_guid = Some(guid(&h.disk_guid));
    let count = h.entry_count.get();
    let entry_size = u64::from(h.entry_size.get());
    if count > MAX_GPT_ENTRIES {
        report.problems.push(format!(
            "GPT declares {count} entries; only the first {MAX_GPT_ENTRIES} are read"
        ));
    }
    let count = count.min(MAX_GPT_ENTRIES);
    if !(128..=4096).contains(&entry_size) || entry_size % 8 != 0 {
        report
            .problems
            .push(format!("GPT entry size {entry_size} is not valid"));
        return Ok(Vec::new());
    }
    let bytes_len = u64::from(count) * entry_size;
    let start = h.entries_lba.get().checked_mul(sector);
    let Some(start) = start.filter(|s| s.saturating_add(bytes_len) <= disk.len()) else {
        report
            .problems
            .push("GPT partition entries lie past the end of the disk".into());
        return Ok(Vec::new());
    };
    let mut bytes = vec![0u8; bytes_len as usize];
    disk.read_exact_at(start, &mut bytes)?;
    if h.entry_count.get() <= MAX_GPT_ENTRIES && crc32fast::hash(&bytes) != h.entries_crc.get() {
        report
            .problems
            .push("GPT partition entry array CRC does not match".into());
    }
    let mut parts = Vec::new();
    for (i, chunk) in bytes.chunks_exact(entry_size as usize).enumerate() {
        let Ok((e, _)) = GptEntry::ref_from_prefix(chunk) else {
            continue;
        };
        if e.type_guid == [0; 16] {
            continue;
        }
        let (first, last) = (e.first_lba.get(), e.last_lba.get());
        if last < first {
            report
                .problems
                .push(format!("GPT partition {} ends before it starts", i + 1));
            continue;
        }
        let units: Vec<u16> = e
            .name
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16_lossy(&units);
        parts.push(PartitionEntry {
            number: i as u32 + 1,
            start: first.saturating_mul(sector),
            size: (last - first).saturating_add(1).saturating_mul(sector),
            type_id: guid(&e.type_guid),
            part_uuid: Some(guid(&e.part_guid)),
            label: (!name.is_empty()).then_some(name),
        });
    }
    check_inside(disk.len(), &parts, report);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an MBR-style entry (`slot` 0-3) into the sector at `lba`.
    fn entry(disk: &mut [u8], lba: u64, slot: usize, kind: u8, start: u32, sectors: u32) {
        let at = lba as usize * 512 + 446 + slot * 16;
        disk[at + 4] = kind;
        disk[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
        disk[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
        disk[lba as usize * 512 + 510..lba as usize * 512 + 512].copy_from_slice(&[0x55, 0xAA]);
    }

    #[test]
    fn ebr_chain_that_loops_ends() {
        let mut disk = vec![0u8; 4 << 20];
        entry(&mut disk, 0, 0, 0x05, 2048, 4096);
        // EBR 1 at 2048 -> EBR 2 at 2100 -> EBR 3 at 2148 -> back to EBR 2.
        entry(&mut disk, 2048, 0, 0x83, 1, 10);
        entry(&mut disk, 2048, 1, 0x05, 52, 100);
        entry(&mut disk, 2100, 0, 0x83, 1, 10);
        entry(&mut disk, 2100, 1, 0x05, 100, 100);
        entry(&mut disk, 2148, 0, 0x83, 1, 10);
        entry(&mut disk, 2148, 1, 0x05, 52, 100);
        let (report, parts) = read_table(&disk).unwrap();
        assert_eq!(report.scheme, Scheme::Mbr);
        let numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
        assert_eq!(numbers, [5, 6, 7]);
        assert_eq!(parts[1].start, 2101 * 512);
        assert!(
            report.problems.iter().any(|p| p.contains("loops")),
            "{report:?}"
        );
    }

    #[test]
    fn protective_mbr_without_gpt_is_reported() {
        let mut disk = vec![0u8; 1 << 20];
        entry(&mut disk, 0, 0, 0xEE, 1, 2047);
        let (report, parts) = read_table(&disk).unwrap();
        assert_eq!(report.scheme, Scheme::Gpt);
        assert!(parts.is_empty());
        assert!(!report.problems.is_empty());
        assert_eq!(report.firmware(), Firmware::Bios);
    }

    #[test]
    fn small_or_blank_disks_have_no_table() {
        assert_eq!(read_table(&vec![0u8; 100]).unwrap().0.scheme, Scheme::None);
        assert_eq!(read_table(&vec![0u8; 4096]).unwrap().0.scheme, Scheme::None);
    }
}

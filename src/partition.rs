//! Partition tables inside the virtual disk: MBR, or GPT behind a protective MBR (primary
//! and backup headers with their CRCs), and whether the disk looks bootable. Used to warn
//! before a disk is sent to a machine generation that cannot boot it.

use serde::Serialize;

use crate::disk::Disk;
use crate::error::Result;

/// Most GPT partition entries examined (the usual table has 128).
const MAX_GPT_ENTRIES: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    None,
    Mbr,
    Gpt,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::None => "none",
            Scheme::Mbr => "mbr",
            Scheme::Gpt => "gpt",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Partition {
    pub number: u32,
    /// MBR: the type byte as hex ("0x07"); GPT: the type GUID.
    pub type_id: String,
    /// A readable name of the type, where known.
    pub type_name: String,
    /// Byte offset on the virtual disk.
    pub start: u64,
    /// Bytes.
    pub size: u64,
    /// MBR active flag, or GPT legacy-BIOS-bootable attribute.
    pub bootable: bool,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GptDetails {
    pub sector_size: u64,
    pub primary_header_valid: bool,
    pub entries_valid: bool,
    pub backup_header_valid: bool,
    pub disk_guid: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionTable {
    pub scheme: Scheme,
    pub partitions: Vec<Partition>,
    /// MBR: boot code present and an active partition; GPT: an EFI system partition.
    pub bootable: bool,
    pub gpt: Option<GptDetails>,
    /// Problems seen (bad CRCs, partitions past the end of the disk).
    pub problems: Vec<String>,
}

fn mbr_type_name(t: u8) -> &'static str {
    match t {
        0x01 | 0x04 | 0x06 | 0x0b | 0x0c | 0x0e => "FAT",
        0x05 | 0x0f => "extended",
        0x07 => "Windows basic data (NTFS/exFAT)",
        0x42 => "Windows dynamic disk (LDM)",
        0x27 => "Windows recovery",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x8e => "Linux LVM",
        0xee => "GPT protective",
        0xef => "EFI system",
        0xfd => "Linux RAID",
        _ => "other",
    }
}

const ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

fn gpt_type_name(guid: &str) -> &'static str {
    match guid {
        ESP => "EFI system",
        "e3c9e316-0b5c-4db8-817d-f92df00215ae" => "Microsoft reserved",
        "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7" => "Windows basic data",
        "5808c8aa-7e8f-42e0-85d2-e1e90434cfb3" => "Windows LDM metadata",
        "af9b60a0-1431-4f62-bc68-3311714a69ad" => "Windows LDM data",
        "a19d880f-05fc-4d3b-a006-743f0f84911e" => "Linux RAID",
        "933ac7e1-2eb4-4f13-b844-0e14e2aef915" => "Linux home",
        "de94bba4-06d1-4d40-a16a-bfd50179d6ac" => "Windows recovery",
        "0fc63daf-8483-4772-8e79-3d69d8477de4" => "Linux filesystem",
        "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f" => "Linux swap",
        "e6d6d379-f507-44c2-a23c-238f2a3df928" => "Linux LVM",
        "21686148-6449-6e6f-744e-656564454649" => "BIOS boot",
        "4f68bce3-e8cd-4db1-96e7-fbcaf984b709" => "Linux root (x86-64)",
        "bc13c2ff-59e6-4262-a352-b275fd6f7172" => "Linux extended boot",
        _ => "other",
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Reads the partition table of a virtual disk.
pub fn inspect(disk: &mut dyn Disk) -> Result<PartitionTable> {
    let size = disk.virtual_size();
    let mut table = PartitionTable {
        scheme: Scheme::None,
        partitions: Vec::new(),
        bootable: false,
        gpt: None,
        problems: Vec::new(),
    };
    if size < 512 {
        return Ok(table);
    }
    let mut mbr = [0u8; 512];
    disk.read_at(0, &mut mbr)?;
    if mbr[510] != 0x55 || mbr[511] != 0xAA {
        return Ok(table);
    }
    let entries: Vec<&[u8]> = (0..4).map(|i| &mbr[446 + i * 16..462 + i * 16]).collect();
    if entries.iter().any(|e| e[4] == 0xEE) {
        for sector_size in [512u64, 4096] {
            if let Some(gpt) = read_gpt(disk, sector_size, &mut table)? {
                table.scheme = Scheme::Gpt;
                table.bootable = table.partitions.iter().any(|p| p.type_id == ESP);
                table.gpt = Some(gpt);
                return Ok(table);
            }
        }
        table
            .problems
            .push("protective MBR present but no valid GPT header found".into());
        table.scheme = Scheme::Gpt;
        return Ok(table);
    }
    table.scheme = Scheme::Mbr;
    for (i, e) in entries.iter().enumerate() {
        let kind = e[4];
        let (lba, sectors) = (u64::from(le32(e, 8)), u64::from(le32(e, 12)));
        if kind == 0 || sectors == 0 {
            continue;
        }
        let p = Partition {
            number: i as u32 + 1,
            type_id: format!("{kind:#04x}"),
            type_name: mbr_type_name(kind).into(),
            start: lba * 512,
            size: sectors * 512,
            bootable: e[0] == 0x80,
            name: None,
        };
        if p.start.saturating_add(p.size) > size {
            table.problems.push(format!(
                "partition {} ends past the end of the disk",
                p.number
            ));
        }
        table.partitions.push(p);
    }
    let has_boot_code = mbr[..440].iter().any(|&b| b != 0);
    table.bootable = has_boot_code && table.partitions.iter().any(|p| p.bootable);
    Ok(table)
}

/// Reads and checks a GPT header at `lba`; returns (header bytes, valid).
fn read_header(disk: &mut dyn Disk, lba: u64, sector: u64) -> Result<Option<Vec<u8>>> {
    let size = disk.virtual_size();
    // Every LBA here comes from the disk: multiply and add without overflowing.
    if lba.saturating_add(1).saturating_mul(sector) > size {
        return Ok(None);
    }
    let mut h = vec![0u8; sector as usize];
    disk.read_at(lba * sector, &mut h)?;
    if &h[..8] != b"EFI PART" {
        return Ok(None);
    }
    let header_size = le32(&h, 12) as usize;
    if !(92..=sector as usize).contains(&header_size) {
        return Ok(None);
    }
    let mut copy = h[..header_size].to_vec();
    copy[16..20].fill(0);
    // GPT uses the IEEE CRC-32 (unlike VHDX, which uses CRC-32C).
    let valid = crc32fast::hash(&copy) == le32(&h, 16) && le64(&h, 24) == lba;
    Ok(valid.then_some(h))
}

fn read_gpt(
    disk: &mut dyn Disk,
    sector: u64,
    table: &mut PartitionTable,
) -> Result<Option<GptDetails>> {
    let Some(h) = read_header(disk, 1, sector)? else {
        return Ok(None);
    };
    let size = disk.virtual_size();
    let last_lba = size / sector - 1;
    let backup_lba = le64(&h, 32);
    let backup_valid = backup_lba == last_lba && read_header(disk, backup_lba, sector)?.is_some();
    if !backup_valid {
        table.problems.push(format!("backup GPT header at LBA {backup_lba} is missing or invalid (the disk's last LBA is {last_lba})"));
    }
    let entries_lba = le64(&h, 72);
    let count = le32(&h, 80).min(MAX_GPT_ENTRIES);
    let entry_size = le32(&h, 84) as u64;
    let mut entries_valid = false;
    if (128..=4096).contains(&entry_size) && entry_size % 8 == 0 {
        let bytes_len = u64::from(count) * entry_size;
        if entries_lba.saturating_mul(sector).saturating_add(bytes_len) <= size {
            let mut bytes = vec![0u8; bytes_len as usize];
            disk.read_at(entries_lba * sector, &mut bytes)?;
            entries_valid =
                le32(&h, 80) <= MAX_GPT_ENTRIES && crc32fast::hash(&bytes) == le32(&h, 88);
            if !entries_valid {
                table
                    .problems
                    .push("GPT partition entry array CRC does not match".into());
            }
            for (i, e) in bytes.chunks_exact(entry_size as usize).enumerate() {
                if e[..16].iter().all(|&b| b == 0) {
                    continue;
                }
                let type_id = uuid::Uuid::from_bytes_le(e[..16].try_into().unwrap()).to_string();
                let (first, last) = (le64(e, 32), le64(e, 40));
                let name_units: Vec<u16> = e[56..128]
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                let p = Partition {
                    number: i as u32 + 1,
                    type_name: gpt_type_name(&type_id).into(),
                    type_id,
                    start: first.saturating_mul(sector),
                    size: last
                        .saturating_sub(first)
                        .saturating_add(1)
                        .saturating_mul(sector),
                    bootable: le64(e, 48) & 4 != 0,
                    name: Some(String::from_utf16_lossy(&name_units)),
                };
                if p.start.saturating_add(p.size) > size {
                    table.problems.push(format!(
                        "partition {} ends past the end of the disk",
                        p.number
                    ));
                }
                table.partitions.push(p);
            }
        }
    }
    Ok(Some(GptDetails {
        sector_size: sector,
        primary_header_valid: true,
        entries_valid,
        backup_header_valid: backup_valid,
        disk_guid: uuid::Uuid::from_bytes_le(h[56..72].try_into().unwrap()).to_string(),
    }))
}

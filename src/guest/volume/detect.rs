//! What a volume holds, from its signatures (the blkid idea, for the kinds the inspector
//! cares about). Only a few sectors are read; nothing here trusts a length from the volume.

use crate::guest::error::GuestResult;
use crate::guest::source::ByteSource;
use crate::guest::volume::Content;
use crate::guest::volume::table::{
    GPT_BIOS_BOOT, GPT_LDM_DATA, GPT_LDM_METADATA, GPT_MSR, GPT_WINDOWS_SNAPSHOT, MBR_LDM,
};

/// Linux MD superblock magic (both 0.90 and 1.x).
const MD_MAGIC: u32 = 0xa92b_4efc;

/// Reads `buf.len()` bytes at `offset` when they lie inside the volume; `false` otherwise.
fn read_if_inside(src: &dyn ByteSource, offset: u64, buf: &mut [u8]) -> GuestResult<bool> {
    match offset.checked_add(buf.len() as u64) {
        Some(end) if end <= src.len() => {
            src.read_exact_at(offset, buf)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// What a partition holds by its type alone, for the types that carry no file system
/// (BIOS boot, MSR) or that vdconv does not read (Windows LDM).
pub fn content_by_type(type_id: &str) -> Option<Content> {
    match type_id {
        GPT_BIOS_BOOT | GPT_MSR | GPT_WINDOWS_SNAPSHOT => Some(Content::NoFileSystem),
        GPT_LDM_METADATA | GPT_LDM_DATA => Some(Content::WindowsDynamic),
        t if t == format!("{MBR_LDM:#04x}") => Some(Content::WindowsDynamic),
        _ => None,
    }
}

/// Detects the content of a volume from its signatures. A RAID member comes first: a
/// RAID1 member with a 0.90 or 1.0 superblock (at the end) has a file system at its start
/// that must not be read as if it were the array.
pub fn detect(src: &dyn ByteSource) -> GuestResult<Content> {
    if is_md_member(src)? {
        return Ok(Content::MdRaid);
    }
    let mut head = vec![0u8; 4096];
    let have = src.len().min(head.len() as u64) as usize;
    head.truncate(have);
    src.read_exact_at(0, &mut head)?;
    let at = |range: std::ops::Range<usize>| head.get(range);

    if at(0..6) == Some(b"LUKS\xba\xbe") {
        return Ok(Content::Luks);
    }
    if at(3..11) == Some(b"-FVE-FS-") {
        return Ok(Content::BitLocker);
    }
    if at(3..11) == Some(b"NTFS    ") {
        return Ok(Content::Ntfs);
    }
    if at(0..4) == Some(b"XFSB") {
        return Ok(Content::Xfs);
    }
    let mut ext = [0u8; 2];
    if read_if_inside(src, 1080, &mut ext)? && ext == [0x53, 0xEF] {
        return Ok(Content::Ext);
    }
    if is_lvm_pv(src)? {
        return Ok(Content::LvmPv);
    }
    if is_swap(src)? {
        return Ok(Content::Swap);
    }
    if is_fat(&head) {
        return Ok(Content::Fat);
    }
    Ok(Content::Unknown)
}

/// `LABELONE` in one of the first four sectors, with `LVM2 001` as its type.
pub fn is_lvm_pv(src: &dyn ByteSource) -> GuestResult<bool> {
    for sector in 0..4u64 {
        let mut buf = [0u8; 32];
        if read_if_inside(src, sector * 512, &mut buf)?
            && &buf[..8] == b"LABELONE"
            && &buf[24..32] == b"LVM2 001"
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The swap signature sits in the last 10 bytes of the first page; the page size is the
/// writer's (4 KiB on x86, up to 64 KiB elsewhere).
fn is_swap(src: &dyn ByteSource) -> GuestResult<bool> {
    for page in [4096u64, 8192, 16384, 65536] {
        let mut sig = [0u8; 10];
        if read_if_inside(src, page - 10, &mut sig)?
            && (&sig == b"SWAPSPACE2" || &sig == b"SWAP-SPACE")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A FAT boot sector: 55 AA, a BIOS parameter block with sane values, and the file system
/// type string of FAT12/16 or FAT32.
pub fn is_fat(head: &[u8]) -> bool {
    let get = |at: usize| head.get(at).copied().unwrap_or(0);
    let bytes_per_sector = u16::from_le_bytes([get(11), get(12)]);
    let sectors_per_cluster = get(13);
    let reserved = u16::from_le_bytes([get(14), get(15)]);
    let fats = get(16);
    let boot_sig = get(510) == 0x55 && get(511) == 0xAA;
    let type_string = head.get(54..59) == Some(b"FAT12")
        || head.get(54..59) == Some(b"FAT16")
        || head.get(54..57) == Some(b"FAT")
        || head.get(82..87) == Some(b"FAT32");
    boot_sig
        && type_string
        && bytes_per_sector.is_power_of_two()
        && (512..=4096).contains(&bytes_per_sector)
        && sectors_per_cluster.is_power_of_two()
        && reserved > 0
        && (1..=2).contains(&fats)
}

/// An MD superblock at one of the places the versions put it (GUEST.md 5.3): 0.90 in the
/// last 64 KiB-aligned 64 KiB, 1.0 8 KiB from the end (4 KiB-aligned), 1.1 at 0, 1.2 at
/// 4 KiB. A 1.x superblock must say version 1 and give its own offset.
fn is_md_member(src: &dyn ByteSource) -> GuestResult<bool> {
    let size = src.len();
    let mut buf = [0u8; 24];
    // 0.90: big or little endian, depending on the host that wrote it; magic then
    // major_version (0).
    if size >= 0x20000 {
        let at = (size & !0xFFFF) - 0x10000;
        if read_if_inside(src, at, &mut buf)? {
            let le = le32(&buf, 0) == Some(MD_MAGIC) && le32(&buf, 4) == Some(0);
            let be = buf.get(0..4) == Some(&MD_MAGIC.to_be_bytes()[..])
                && buf.get(4..8) == Some(&[0u8; 4][..]);
            if le || be {
                return Ok(true);
            }
        }
    }
    let mut places = vec![0u64, 4096];
    if size >= 0x3000 {
        places.push((size & !0xFFF) - 0x2000);
    }
    // struct mdp_superblock_1 (include/uapi/linux/raid/md_p.h): magic at 0,
    // major_version at 4, super_offset (sectors) at 144.
    let mut sb = [0u8; 152];
    for at in places {
        if read_if_inside(src, at, &mut sb)?
            && le32(&sb, 0) == Some(MD_MAGIC)
            && le32(&sb, 4) == Some(1)
            && le64(&sb, 144).is_some_and(|s| s.checked_mul(512) == Some(at))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md_v12_needs_its_own_offset() {
        let mut v = vec![0u8; 1 << 20];
        // 4096 + 144 = 4240: super_offset, in sectors.
        v[4096..4100].copy_from_slice(&MD_MAGIC.to_le_bytes());
        v[4100..4104].copy_from_slice(&1u32.to_le_bytes());
        v[4240..4248].copy_from_slice(&8u64.to_le_bytes());
        assert_eq!(detect(&v).unwrap(), Content::MdRaid);
        v[4240..4248].copy_from_slice(&9u64.to_le_bytes());
        assert_eq!(detect(&v).unwrap(), Content::Unknown);
    }

    #[test]
    fn tiny_volumes_are_unknown() {
        assert_eq!(detect(&vec![0u8; 3]).unwrap(), Content::Unknown);
        assert_eq!(detect(&Vec::new()).unwrap(), Content::Unknown);
    }
}

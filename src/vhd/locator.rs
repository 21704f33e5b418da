//! A differencing VHD's parent locators: eight 24-byte entries in the dynamic header, each
//! naming the parent for one platform, with the path stored elsewhere in the file.
//!
//! Written by Windows and VirtualBox: `W2ru` (a relative path) and `W2ku` (an absolute
//! one), UTF-16 little-endian; the deprecated `Wi2r`/`Wi2k` carry 8-bit paths and `MacX` a
//! `file://` URL. The specification says the data space is in sectors; Virtual PC and
//! Hyper-V store bytes (VirtualBox notes it and writes bytes; MiniVHD writes sectors), so
//! both are accepted: only the data length decides how much is read.

use zerocopy::big_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::disk::{InputFile, ParentHint};
use crate::error::{Error, Result};
use crate::rules;

pub const W2RU: [u8; 4] = *b"W2ru";
pub const W2KU: [u8; 4] = *b"W2ku";
pub const WI2R: [u8; 4] = *b"Wi2r";
pub const WI2K: [u8; 4] = *b"Wi2k";
pub const MACX: [u8; 4] = *b"MacX";

/// Entries in the header.
pub const ENTRIES: usize = 8;
/// Longest path read: Windows' 32767 UTF-16 units.
pub const MAX_PATH_BYTES: u32 = 65534;

/// One locator entry, big-endian.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Default)]
#[repr(C)]
pub struct LocatorEntry {
    /// `W2ru`, `W2ku`, ... or 0 when unused.
    pub platform_code: [u8; 4],
    /// Room reserved for the path: bytes (Windows) or sectors (the specification).
    pub data_space: U32,
    /// Bytes of the path.
    pub data_length: U32,
    pub reserved: U32,
    /// Absolute file offset of the path.
    pub data_offset: U64,
}

const _: () = assert!(size_of::<LocatorEntry>() == 24);

/// A parent path read from a locator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    pub code: [u8; 4],
    pub path: String,
}

impl Locator {
    fn key(&self) -> &'static str {
        match self.code {
            W2RU => "W2ru",
            W2KU => "W2ku",
            WI2R => "Wi2r",
            WI2K => "Wi2k",
            _ => "MacX",
        }
    }

    /// Relative paths are tried first, as Windows does.
    fn rank(&self) -> u8 {
        match self.code {
            W2RU | WI2R => 0,
            W2KU | WI2K => 1,
            _ => 2,
        }
    }
}

/// Reads the paths the entries in `table` (the header's 192 bytes, at file offset
/// `table_at`) name. Unused entries and platforms without a path (`Mac ` aliases) are
/// skipped; an entry whose path leaves the file or does not decode is an error naming the
/// entry.
pub fn read_locators(file: &InputFile, table: &[u8; 192], table_at: u64) -> Result<Vec<Locator>> {
    let mut out = Vec::new();
    for i in 0..ENTRIES {
        let at = table_at + i as u64 * 24;
        let e = LocatorEntry::read_from_bytes(&table[i * 24..i * 24 + 24]).expect("24 bytes");
        let code = e.platform_code;
        if code == [0; 4] || ![W2RU, W2KU, WI2R, WI2K, MACX].contains(&code) {
            continue;
        }
        let bad = |detail: String| {
            Error::broken(
                file.path(),
                &rules::VHD_PARENT_LOCATOR,
                "VHD parent locator",
                at,
                detail,
            )
        };
        let name = String::from_utf8_lossy(&code).into_owned();
        let (len, offset) = (e.data_length.get(), e.data_offset.get());
        if len == 0 {
            continue;
        }
        if len > MAX_PATH_BYTES {
            return Err(bad(format!(
                "{name} path of {len} bytes is longer than any path ({MAX_PATH_BYTES} bytes)"
            )));
        }
        let space = u64::from(e.data_space.get());
        let space_bytes = if space >= u64::from(len) {
            space
        } else {
            space * 512
        };
        if u64::from(len) > space_bytes {
            return Err(bad(format!(
                "{name} path of {len} bytes does not fit its data space of {space} (bytes or sectors)"
            )));
        }
        if !file.holds(offset, u64::from(len)) {
            return Err(bad(format!(
                "{name} path of {len} bytes at offset {offset} lies past the end of the file ({} bytes)",
                file.len()
            )));
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, offset, "VHD parent locator data")?;
        let path = decode(code, &bytes).map_err(|why| bad(format!("{name} path {why}")))?;
        if !path.is_empty() {
            out.push(Locator { code, path });
        }
    }
    out.sort_by_key(Locator::rank);
    Ok(out)
}

/// The path a locator's bytes hold, without trailing NULs.
fn decode(code: [u8; 4], bytes: &[u8]) -> std::result::Result<String, String> {
    let text = match code {
        W2RU | W2KU => {
            if bytes.len() % 2 != 0 {
                return Err(format!("is {} bytes, not whole UTF-16 units", bytes.len()));
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).map_err(|_| "is not valid UTF-16".to_string())?
        }
        MACX => {
            let url =
                String::from_utf8(bytes.to_vec()).map_err(|_| "is not valid UTF-8".to_string())?;
            let url = url.trim_end_matches('\0');
            url.strip_prefix("file://")
                .map(|p| p.strip_prefix("localhost").unwrap_or(p))
                .unwrap_or(url)
                .to_string()
        }
        _ => bytes.iter().map(|&b| char::from(b)).collect(),
    };
    Ok(text.trim_end_matches('\0').to_string())
}

/// The parent's name from the header's 512-byte field (UTF-16 big-endian, NUL-padded).
pub fn parent_unicode_name(field: &[u8; 512]) -> String {
    let units: Vec<u16> = field
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Where a differencing VHD's parent may be: its locators (relative before absolute),
/// then the parent's name as the header records it.
pub fn hints(locators: &[Locator], unicode_name: &str) -> Vec<ParentHint> {
    let mut hints: Vec<ParentHint> = locators
        .iter()
        .map(|l| ParentHint {
            path: l.path.clone(),
            key: l.key(),
        })
        .collect();
    if !unicode_name.is_empty() {
        hints.push(ParentHint {
            path: unicode_name.to_string(),
            key: "parent unicode name",
        });
    }
    hints
}

/// Reads the locators of `bytes` taken as a file whose first 1024 bytes are a dynamic
/// header: must never panic, whatever the bytes.
pub fn fuzz_vhd_locators(bytes: &[u8]) {
    let Some(file) = crate::disk::InputFile::from_memory(bytes) else {
        return;
    };
    let Some(header) = bytes.get(..1024) else {
        return;
    };
    let table: [u8; 192] = header[576..768].try_into().expect("192 bytes");
    let name: [u8; 512] = header[64..576].try_into().expect("512 bytes");
    if let Ok(l) = read_locators(&file, &table, 576) {
        let _ = hints(&l, &parent_unicode_name(&name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn entry(code: [u8; 4], space: u32, len: u32, offset: u64) -> LocatorEntry {
        let mut e = LocatorEntry {
            platform_code: code,
            ..Default::default()
        };
        e.data_space.set(space);
        e.data_length.set(len);
        e.data_offset.set(offset);
        e
    }

    #[test]
    fn bytes_or_sectors_of_data_space_are_both_read() {
        let rel = utf16le(r".\base.vhd");
        let abs = utf16le(r"C:\VMs\base.vhd");
        let mut image = vec![0u8; 4096];
        image[2048..2048 + abs.len()].copy_from_slice(&abs);
        image[2560..2560 + rel.len()].copy_from_slice(&rel);
        let mut table = [0u8; 192];
        // Absolute first, with its data space in bytes (as Hyper-V writes it); relative
        // second, with its data space in sectors (as the specification says).
        table[..24].copy_from_slice(entry(W2KU, 512, abs.len() as u32, 2048).as_bytes());
        table[24..48].copy_from_slice(entry(W2RU, 1, rel.len() as u32, 2560).as_bytes());
        table[48..52].copy_from_slice(b"Mac ");
        let file = crate::disk::InputFile::from_memory(&image).unwrap();
        let l = read_locators(&file, &table, 576).unwrap();
        assert_eq!(
            l.iter().map(|l| l.path.as_str()).collect::<Vec<_>>(),
            [r".\base.vhd", r"C:\VMs\base.vhd"],
            "relative first"
        );
        let h = hints(&l, "base.vhd");
        assert_eq!(h.last().unwrap().key, "parent unicode name");

        // A path past the end of the file names the entry.
        table[24..48].copy_from_slice(entry(W2RU, 1, 16, 4090).as_bytes());
        let e = read_locators(&file, &table, 576).unwrap_err();
        assert_eq!(e.rule().unwrap().id, "vhd-parent-locator");
        assert_eq!(e.offset(), Some(600));
        // Odd UTF-16 lengths and data that does not fit its space are refused.
        table[24..48].copy_from_slice(entry(W2RU, 512, 3, 2560).as_bytes());
        assert!(read_locators(&file, &table, 576).is_err());
        table[24..48].copy_from_slice(entry(W2RU, 0, 20, 2560).as_bytes());
        assert!(read_locators(&file, &table, 576).is_err());
    }

    #[test]
    fn the_fuzz_entry_point_survives_garbage() {
        for seed in 0..64u8 {
            let bytes: Vec<u8> = (0..3000u32)
                .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
                .collect();
            fuzz_vhd_locators(&bytes);
        }
        fuzz_vhd_locators(&[]);
        fuzz_vhd_locators(&[0xFF; 1024]);
    }
}

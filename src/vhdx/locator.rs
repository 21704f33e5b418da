//! The VHDX parent locator metadata item (MS-VHDX 2.6.2.6): a 20-byte header (locator type
//! GUID, reserved, key-value count) and 12-byte entries pointing at UTF-16LE keys and
//! values inside the item. The VHDX locator type's keys: `parent_linkage` (the parent's
//! DataWriteGuid when the child was made, `{…}`), `parent_linkage2`, and the paths
//! `relative_path`, `volume_path`, `absolute_win32_path`.
//!
//! Parsing follows openvmm's strictness (no empty or oversized tables, even offsets and
//! lengths, no NULs, unique keys); every failure names what is wrong, never panics.

use std::collections::BTreeMap;

use crate::disk::ParentHint;
use crate::vhdx::format::guid;

/// The VHDX parent locator type.
pub const VHDX_LOCATOR_TYPE: [u8; 16] = guid("B04AEFB7-D19E-4A81-B789-25B8E9445913");
/// Most entries accepted (openvmm's bound).
pub const MAX_ENTRIES: usize = 256;
const HEADER_BYTES: usize = 20;
const ENTRY_BYTES: usize = 12;

/// A parsed parent locator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLocator {
    pub locator_type: [u8; 16],
    /// Keys and values, keys as written (case-sensitive).
    pub entries: BTreeMap<String, String>,
}

/// Why an item is not a usable locator, with the byte offset in the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatorError {
    pub offset: u64,
    pub detail: String,
}

fn err(offset: usize, detail: impl Into<String>) -> LocatorError {
    LocatorError {
        offset: offset as u64,
        detail: detail.into(),
    }
}

impl ParentLocator {
    /// Parses the item's bytes.
    pub fn parse(item: &[u8]) -> Result<Self, LocatorError> {
        if item.len() < HEADER_BYTES {
            return Err(err(
                0,
                format!(
                    "the item is {} bytes, shorter than its 20-byte header",
                    item.len()
                ),
            ));
        }
        let locator_type: [u8; 16] = item[..16].try_into().expect("16 bytes");
        let count = usize::from(u16::from_le_bytes([item[18], item[19]]));
        if count == 0 || count > MAX_ENTRIES {
            return Err(err(
                18,
                format!("{count} key-value entries (1 to {MAX_ENTRIES} expected)"),
            ));
        }
        let table_end = HEADER_BYTES + count * ENTRY_BYTES;
        if table_end > item.len() {
            return Err(err(
                18,
                format!(
                    "{count} entries need {table_end} bytes; the item is {}",
                    item.len()
                ),
            ));
        }
        let mut entries = BTreeMap::new();
        for i in 0..count {
            let at = HEADER_BYTES + i * ENTRY_BYTES;
            let u32_at = |o: usize| u32::from_le_bytes(item[o..o + 4].try_into().unwrap());
            let u16_at = |o: usize| u16::from_le_bytes([item[o], item[o + 1]]);
            let (key_offset, value_offset) = (u32_at(at) as usize, u32_at(at + 4) as usize);
            let (key_len, value_len) = (usize::from(u16_at(at + 8)), usize::from(u16_at(at + 10)));
            let key = string(item, key_offset, key_len, table_end)
                .map_err(|why| err(at, format!("entry {i}: key {why}")))?;
            let value = string(item, value_offset, value_len, table_end)
                .map_err(|why| err(at + 4, format!("entry {i}: value of {key:?} {why}")))?;
            if entries.insert(key.clone(), value).is_some() {
                return Err(err(at, format!("entry {i}: key {key:?} appears twice")));
            }
        }
        Ok(ParentLocator {
            locator_type,
            entries,
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The parent identities this locator accepts (`parent_linkage`, then
    /// `parent_linkage2`), as on-disk GUID bytes; an error when `parent_linkage` is
    /// missing or either is not a GUID.
    pub fn linkage(&self) -> Result<Vec<[u8; 16]>, LocatorError> {
        if self.locator_type != VHDX_LOCATOR_TYPE {
            return Err(err(
                0,
                format!(
                    "locator type {} is not the VHDX locator type",
                    crate::vhdx::format::guid_string(&self.locator_type)
                ),
            ));
        }
        let mut out = Vec::new();
        for key in ["parent_linkage", "parent_linkage2"] {
            match self.get(key) {
                Some(v) => out.push(parse_guid(v).ok_or_else(|| {
                    err(HEADER_BYTES, format!("{key} {v:?} is not a GUID in braces"))
                })?),
                None if key == "parent_linkage" => {
                    return Err(err(
                        HEADER_BYTES,
                        "parent_linkage, which must be present, is missing",
                    ));
                }
                None => {}
            }
        }
        Ok(out)
    }

    /// The paths to try, in the specification's order: relative, volume, absolute.
    pub fn hints(&self) -> Vec<ParentHint> {
        ["relative_path", "volume_path", "absolute_win32_path"]
            .into_iter()
            .filter_map(|key| {
                self.get(key).filter(|v| !v.is_empty()).map(|v| ParentHint {
                    path: v.to_string(),
                    key,
                })
            })
            .collect()
    }

    /// The item's bytes for `entries` (keys and values in the order given), with the VHDX
    /// locator type.
    pub fn encode(entries: &[(&str, &str)]) -> Vec<u8> {
        let table_end = HEADER_BYTES + entries.len() * ENTRY_BYTES;
        let mut item = vec![0u8; table_end];
        item[..16].copy_from_slice(&VHDX_LOCATOR_TYPE);
        item[18..20].copy_from_slice(&(entries.len() as u16).to_le_bytes());
        for (i, (key, value)) in entries.iter().enumerate() {
            let at = HEADER_BYTES + i * ENTRY_BYTES;
            let mut place = |text: &str| {
                let offset = item.len();
                item.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
                (offset as u32, (item.len() - offset) as u16)
            };
            let (ko, kl) = place(key);
            let (vo, vl) = place(value);
            item[at..at + 4].copy_from_slice(&ko.to_le_bytes());
            item[at + 4..at + 8].copy_from_slice(&vo.to_le_bytes());
            item[at + 8..at + 10].copy_from_slice(&kl.to_le_bytes());
            item[at + 10..at + 12].copy_from_slice(&vl.to_le_bytes());
        }
        item
    }
}

/// The UTF-16LE string of `len` bytes at `offset`, which must lie after the entry table
/// and inside the item, be even-sized and hold no NUL.
fn string(item: &[u8], offset: usize, len: usize, table_end: usize) -> Result<String, String> {
    if len == 0 {
        return Err("is empty".into());
    }
    if offset % 2 != 0 || len % 2 != 0 {
        return Err(format!(
            "at offset {offset} length {len} is not whole UTF-16 units"
        ));
    }
    let end = offset.checked_add(len).filter(|&e| e <= item.len());
    let Some(end) = end.filter(|_| offset >= table_end) else {
        return Err(format!(
            "at offset {offset} length {len} lies outside the item's strings ({table_end}..{})",
            item.len()
        ));
    };
    let units: Vec<u16> = item[offset..end]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    if units.contains(&0) {
        return Err("holds a NUL".into());
    }
    String::from_utf16(&units).map_err(|_| "is not valid UTF-16".into())
}

/// `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` in either case (the specification asks for
/// lowercase, its own example is uppercase) as on-disk GUID bytes.
pub fn parse_guid(text: &str) -> Option<[u8; 16]> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    if inner.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(inner).ok().map(|u| u.to_bytes_le())
}

/// On-disk GUID bytes as a locator writes them: lowercase, in braces.
pub fn guid_text(bytes: &[u8; 16]) -> String {
    format!("{{{}}}", uuid::Uuid::from_bytes_le(*bytes))
}

/// Parses `bytes` as a parent locator item and asks everything of it: must never panic,
/// whatever the bytes.
pub fn fuzz_vhdx_locator(bytes: &[u8]) {
    if let Ok(l) = ParentLocator::parse(bytes) {
        let _ = l.linkage();
        let _ = l.hints();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_parse_agree() {
        let linkage = guid("83ED0EC3-24C8-49A6-A959-5E4BF1288BFB");
        let item = ParentLocator::encode(&[
            ("parent_linkage", &guid_text(&linkage)),
            ("relative_path", r".\base.vhdx"),
            ("absolute_win32_path", r"\\?\d:\vms\base.vhdx"),
        ]);
        let l = ParentLocator::parse(&item).unwrap();
        assert_eq!(l.linkage().unwrap(), [linkage]);
        assert_eq!(
            l.get("parent_linkage"),
            Some("{83ed0ec3-24c8-49a6-a959-5e4bf1288bfb}")
        );
        let keys: Vec<_> = l.hints().into_iter().map(|h| h.key).collect();
        assert_eq!(keys, ["relative_path", "absolute_win32_path"]);
        // The specification's own example is uppercase: read either.
        assert_eq!(
            parse_guid("{83ED0EC3-24C8-49A6-A959-5E4BF1288BFB}"),
            Some(linkage)
        );
        assert_eq!(parse_guid("83ED0EC3-24C8-49A6-A959-5E4BF1288BFB"), None);
    }

    #[test]
    fn damage_is_named() {
        let good =
            ParentLocator::encode(&[("parent_linkage", "{00000000-0000-0000-0000-000000000001}")]);
        let mut no_entries = good.clone();
        no_entries[18] = 0;
        assert!(
            ParentLocator::parse(&no_entries)
                .unwrap_err()
                .detail
                .contains("0 key-value")
        );
        let mut odd = good.clone();
        odd[20] = 33; // key offset odd
        assert!(ParentLocator::parse(&odd).is_err());
        let mut past = good.clone();
        past[30] = 0xFF; // value length past the end
        assert!(ParentLocator::parse(&past).is_err());
        let dup = ParentLocator::encode(&[("a", "1"), ("a", "2")]);
        assert!(
            ParentLocator::parse(&dup)
                .unwrap_err()
                .detail
                .contains("twice")
        );
        let missing = ParentLocator::encode(&[("relative_path", "x.vhdx")]);
        let l = ParentLocator::parse(&missing).unwrap();
        assert!(l.linkage().is_err());
        for n in 0..good.len() {
            fuzz_vhdx_locator(&good[..n]);
        }
    }
}

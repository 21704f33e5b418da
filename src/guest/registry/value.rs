//! Value keys (`vk`) and their data: inline (4 bytes or less), one cell, or big data
//! (`db`) split over segments.

use super::cell::{Fields, bad, decode_name, utf16le};
use super::{Hive, MAX_VALUE_BYTES};
use crate::guest::error::{GuestError, GuestResult};

/// `vk` flag: the name is Latin-1, not UTF-16LE.
const VALUE_COMP_NAME: u16 = 0x0001;
/// Data size bit: the data sits in the data-offset field itself.
const DATA_INLINE: u32 = 0x8000_0000;
/// Data larger than this lives in a big-data (`db`) record (hives of version 1.4 and up).
const BIG_DATA_THRESHOLD: usize = 16344;

/// The registry's value types (REG_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    None,
    String,
    ExpandString,
    Binary,
    Dword,
    DwordBigEndian,
    Link,
    MultiString,
    Qword,
    /// Resource lists and anything else, by number.
    Other(u32),
}

impl ValueKind {
    pub fn from_raw(raw: u32) -> ValueKind {
        match raw {
            0 => ValueKind::None,
            1 => ValueKind::String,
            2 => ValueKind::ExpandString,
            3 => ValueKind::Binary,
            4 => ValueKind::Dword,
            5 => ValueKind::DwordBigEndian,
            6 => ValueKind::Link,
            7 => ValueKind::MultiString,
            11 => ValueKind::Qword,
            other => ValueKind::Other(other),
        }
    }
}

/// A value's data decoded by its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueData {
    String(String),
    ExpandString(String),
    MultiString(Vec<String>),
    Dword(u32),
    Qword(u64),
    /// REG_BINARY, REG_NONE, and anything whose bytes do not fit its type.
    Binary(Vec<u8>),
}

/// One value: its name, type and raw data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    name: String,
    raw_kind: u32,
    bytes: Vec<u8>,
}

impl Value {
    pub(super) fn open(hive: &Hive, offset: u32) -> GuestResult<Value> {
        let f = Fields {
            bytes: hive.cell(offset, "registry value")?,
            structure: "registry value",
            offset,
        };
        f.signature(b"vk")?;
        let name_len = usize::from(f.u16(2)?);
        let size_field = f.u32(4)?;
        let data_field = f.u32(8)?;
        let raw_kind = f.u32(12)?;
        let flags = f.u16(16)?;
        let name = decode_name(f.slice(20, name_len)?, flags & VALUE_COMP_NAME != 0);
        let bytes = if size_field & DATA_INLINE != 0 {
            let len = ((size_field & !DATA_INLINE) as usize).min(4);
            data_field
                .to_le_bytes()
                .get(..len)
                .unwrap_or_default()
                .to_vec()
        } else {
            read_data(hive, data_field, size_field as usize, offset)?
        };
        Ok(Value {
            name,
            raw_kind,
            bytes,
        })
    }

    /// "" for the key's default value.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> ValueKind {
        ValueKind::from_raw(self.raw_kind)
    }

    pub fn raw(&self) -> &[u8] {
        &self.bytes
    }

    /// The data decoded by type; data too short for its type comes back as Binary.
    pub fn data(&self) -> ValueData {
        match self.kind() {
            ValueKind::String => ValueData::String(sz(&self.bytes)),
            ValueKind::ExpandString => ValueData::ExpandString(sz(&self.bytes)),
            ValueKind::MultiString => ValueData::MultiString(multi_sz(&self.bytes)),
            ValueKind::Dword | ValueKind::DwordBigEndian if self.bytes.len() >= 4 => {
                let b = [self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]];
                ValueData::Dword(if self.kind() == ValueKind::Dword {
                    u32::from_le_bytes(b)
                } else {
                    u32::from_be_bytes(b)
                })
            }
            ValueKind::Qword => match self.bytes.get(..8).and_then(|b| b.try_into().ok()) {
                Some(b) => ValueData::Qword(u64::from_le_bytes(b)),
                None => ValueData::Binary(self.bytes.clone()),
            },
            _ => ValueData::Binary(self.bytes.clone()),
        }
    }

    pub fn as_dword(&self) -> Option<u32> {
        match self.data() {
            ValueData::Dword(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_qword(&self) -> Option<u64> {
        match self.data() {
            ValueData::Qword(v) => Some(v),
            ValueData::Dword(v) => Some(u64::from(v)),
            _ => None,
        }
    }

    /// REG_SZ and REG_EXPAND_SZ (unexpanded) as text.
    pub fn as_string(&self) -> Option<String> {
        match self.data() {
            ValueData::String(s) | ValueData::ExpandString(s) => Some(s),
            _ => None,
        }
    }

    /// REG_MULTI_SZ as its strings; a REG_SZ as one string.
    pub fn as_multi_string(&self) -> Option<Vec<String>> {
        match self.data() {
            ValueData::MultiString(v) => Some(v),
            ValueData::String(s) | ValueData::ExpandString(s) => Some(vec![s]),
            _ => None,
        }
    }
}

/// A UTF-16LE string up to its first NUL (Windows stores one; some writers do not).
fn sz(bytes: &[u8]) -> String {
    let mut s = utf16le(bytes);
    if let Some(nul) = s.find('\0') {
        s.truncate(nul);
    }
    s
}

/// NUL-separated UTF-16LE strings, ending at an empty one.
fn multi_sz(bytes: &[u8]) -> Vec<String> {
    utf16le(bytes)
        .split('\0')
        .take_while(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads `len` bytes of data from the cell at `offset`, following a `db` record when the
/// data is big.
fn read_data(hive: &Hive, offset: u32, len: usize, value: u32) -> GuestResult<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if len > MAX_VALUE_BYTES {
        return Err(GuestError::Limit(format!(
            "registry value at offset {value} claims {len} bytes of data"
        )));
    }
    let cell = hive.cell(offset, "registry value data")?;
    let big = len > BIG_DATA_THRESHOLD && cell.get(..2) == Some(b"db".as_slice());
    if !big {
        return cell
            .get(..len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| bad("registry value data", offset, "data larger than its cell"));
    }
    let f = Fields {
        bytes: cell,
        structure: "registry big data",
        offset,
    };
    let segments = usize::from(f.u16(2)?);
    let list_offset = f.u32(4)?;
    let list = Fields {
        bytes: hive.cell(list_offset, "registry big data list")?,
        structure: "registry big data list",
        offset: list_offset,
    };
    let mut out = Vec::with_capacity(len);
    for i in 0..segments {
        if out.len() >= len {
            break;
        }
        let seg_offset = list.u32(i * 4)?;
        let seg = hive.cell(seg_offset, "registry big data segment")?;
        // Every segment but the last holds exactly BIG_DATA_THRESHOLD bytes; its cell
        // may be padded beyond that.
        let want = (len - out.len()).min(BIG_DATA_THRESHOLD);
        let piece = seg.get(..want).ok_or_else(|| {
            bad(
                "registry big data segment",
                seg_offset,
                "segment smaller than the data it should hold",
            )
        })?;
        out.extend_from_slice(piece);
    }
    if out.len() < len {
        return Err(bad(
            "registry big data",
            offset,
            "segments hold less than the value's size",
        ));
    }
    Ok(out)
}

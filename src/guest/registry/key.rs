//! Key nodes (`nk`) and the subkey lists that index them (`lf`, `lh`, `li`, `ri`).

use std::collections::HashSet;

use super::cell::{Fields, NO_CELL, bad, decode_name};
use super::value::Value;
use super::{Hive, MAX_SUBKEYS, MAX_VALUES};
use crate::guest::error::{GuestError, GuestResult};

/// `nk` flag: the name is Latin-1, not UTF-16LE.
const KEY_COMP_NAME: u16 = 0x0020;
/// Index lists (`ri`) point at other lists; Windows nests one level, we allow a few.
const MAX_LIST_DEPTH: usize = 8;

/// One key of a hive.
#[derive(Clone)]
pub struct Key<'h> {
    hive: &'h Hive,
    offset: u32,
    name: String,
    subkey_count: u32,
    subkey_list: u32,
    value_count: u32,
    value_list: u32,
}

impl<'h> Key<'h> {
    pub(super) fn open(hive: &'h Hive, offset: u32) -> GuestResult<Key<'h>> {
        let f = Fields {
            bytes: hive.cell(offset, "registry key")?,
            structure: "registry key",
            offset,
        };
        f.signature(b"nk")?;
        let flags = f.u16(2)?;
        let name_len = usize::from(f.u16(72)?);
        let name = decode_name(f.slice(76, name_len)?, flags & KEY_COMP_NAME != 0);
        Ok(Key {
            hive,
            offset,
            name,
            subkey_count: f.u32(20)?,
            subkey_list: f.u32(28)?,
            value_count: f.u32(36)?,
            value_list: f.u32(40)?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cell offset of the key node: stable identity inside one hive.
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// The stable subkeys, in the order the hive lists them (sorted by Windows).
    pub fn subkeys(&self) -> GuestResult<Vec<Key<'h>>> {
        let mut offsets = Vec::new();
        if self.subkey_count > 0 && self.subkey_list != NO_CELL {
            let mut seen = HashSet::new();
            self.collect_list(self.subkey_list, 0, &mut seen, &mut offsets)?;
        }
        offsets
            .into_iter()
            .map(|o| Key::open(self.hive, o))
            .collect()
    }

    /// The subkey called `name`, compared case-insensitively.
    pub fn subkey(&self, name: &str) -> GuestResult<Option<Key<'h>>> {
        let wanted = name.to_lowercase();
        for key in self.subkeys()? {
            if key.name.to_lowercase() == wanted {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    /// The key's values, in stored order.
    pub fn values(&self) -> GuestResult<Vec<Value>> {
        let count = self.value_count as usize;
        if count == 0 || self.value_list == NO_CELL {
            return Ok(Vec::new());
        }
        if count > MAX_VALUES {
            return Err(GuestError::Limit(format!(
                "registry key {} claims {count} values",
                self.name
            )));
        }
        let list = self.hive.cell(self.value_list, "registry value list")?;
        let f = Fields {
            bytes: list,
            structure: "registry value list",
            offset: self.value_list,
        };
        (0..count)
            .map(|i| Value::open(self.hive, f.u32(i * 4)?))
            .collect()
    }

    /// The value `name` (case-insensitive; "" or "@" is the default value).
    pub fn value(&self, name: &str) -> GuestResult<Option<Value>> {
        let wanted = if name == "@" { "" } else { name }.to_lowercase();
        Ok(self
            .values()?
            .into_iter()
            .find(|v| v.name().to_lowercase() == wanted))
    }

    /// A REG_DWORD value; None when absent or of another type.
    pub fn dword(&self, name: &str) -> GuestResult<Option<u32>> {
        Ok(self.value(name)?.and_then(|v| v.as_dword()))
    }

    /// A REG_SZ or REG_EXPAND_SZ value as text.
    pub fn string(&self, name: &str) -> GuestResult<Option<String>> {
        Ok(self.value(name)?.and_then(|v| v.as_string()))
    }

    /// Appends the key offsets a subkey list (or index of lists) holds. `seen` holds the
    /// lists already read for this key: meeting one again is a cycle.
    fn collect_list(
        &self,
        offset: u32,
        depth: usize,
        seen: &mut HashSet<u32>,
        out: &mut Vec<u32>,
    ) -> GuestResult<()> {
        if depth > MAX_LIST_DEPTH {
            return Err(bad(
                "registry subkey list",
                offset,
                "index lists nest too deep",
            ));
        }
        if !seen.insert(offset) {
            return Err(bad(
                "registry subkey list",
                offset,
                "subkey list refers back to itself (a cycle)",
            ));
        }
        let f = Fields {
            bytes: self.hive.cell(offset, "registry subkey list")?,
            structure: "registry subkey list",
            offset,
        };
        let kind = f.slice(0, 2)?;
        let count = usize::from(f.u16(2)?);
        // lf and lh entries carry a 4-byte hash after each offset; li and ri do not.
        let stride = match kind {
            b"lf" | b"lh" => 8,
            b"li" | b"ri" => 4,
            _ => {
                return Err(bad(
                    "registry subkey list",
                    offset,
                    "not an lf, lh, li or ri list",
                ));
            }
        };
        for i in 0..count {
            let entry = f.u32(4 + i * stride)?;
            if kind == b"ri" {
                self.collect_list(entry, depth + 1, seen, out)?;
            } else {
                if out.len() >= MAX_SUBKEYS {
                    return Err(GuestError::Limit(format!(
                        "registry key {} has more than {MAX_SUBKEYS} subkeys",
                        self.name
                    )));
                }
                out.push(entry);
            }
        }
        Ok(())
    }
}

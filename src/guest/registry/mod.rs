//! A minimal read-only reader of Windows registry hives (the `regf` format), enough to
//! answer "what is the value at this path" for the SYSTEM and SOFTWARE hives.
//!
//! Our own because the crates that exist either break the build (notatin), are GPL
//! (nt-hive, nt_hive2) or are young (winreg-core): see GUEST.md section 6. Layout facts
//! follow the regf specification (msuhanov) and are checked against hivex in the tests.
//!
//! Everything in a hive is hostile input: every cell offset is checked against the hive,
//! subkey lists nest to a bounded depth, lists met twice while listing one key are a
//! cycle (an error), and the work of one call is bounded. Transaction logs (`.LOG1`,
//! `.LOG2`) are not replayed: a dirty hive is read as it is and says so in [`Hive::dirty`].

mod base;
mod cell;
mod key;
mod value;

pub use base::BaseBlock;
pub use key::Key;
pub use value::{Value, ValueData, ValueKind};

use super::error::{GuestError, GuestResult};

/// Deepest path `Hive::key` follows and deepest tree `walk` visits.
pub const MAX_KEY_DEPTH: usize = 512;
/// Subkeys one key may list (Windows allows far fewer in practice).
pub const MAX_SUBKEYS: usize = 1 << 20;
/// Values one key may list.
pub const MAX_VALUES: usize = 1 << 16;
/// Bytes of one value's data (REG_BINARY blobs in SYSTEM are far smaller).
pub const MAX_VALUE_BYTES: usize = 16 << 20;
/// Keys `walk` visits before giving up.
pub const MAX_WALK_KEYS: usize = 1 << 20;

/// A hive read into memory.
pub struct Hive {
    data: Vec<u8>,
    base: BaseBlock,
}

impl Hive {
    /// Checks the base block and the root key; everything else is read when asked.
    pub fn from_bytes(data: Vec<u8>) -> GuestResult<Hive> {
        let base = BaseBlock::parse(&data)?;
        let hive = Hive { data, base };
        // Fail now rather than on the first lookup when the root is not a key node.
        hive.root()?;
        Ok(hive)
    }

    pub fn base_block(&self) -> &BaseBlock {
        &self.base
    }

    /// True when the primary and secondary sequence numbers differ: Windows did not finish
    /// writing the hive, and changes may sit in the transaction logs, which are not read.
    pub fn dirty(&self) -> bool {
        self.base.primary_sequence != self.base.secondary_sequence
    }

    pub fn root(&self) -> GuestResult<Key<'_>> {
        Key::open(self, self.base.root_cell)
    }

    /// The key at `path` (`\`-separated, case-insensitive, relative to the root; empty
    /// components are ignored, so `\Select` and `Select` are the same key). `Ok(None)` when
    /// a component does not exist; an error when the hive is damaged on the way.
    pub fn key(&self, path: &str) -> GuestResult<Option<Key<'_>>> {
        let mut current = self.root()?;
        let mut ancestors = vec![current.offset()];
        for component in path.split('\\').filter(|c| !c.is_empty()) {
            if ancestors.len() > MAX_KEY_DEPTH {
                return Err(GuestError::Limit(format!(
                    "registry path deeper than {MAX_KEY_DEPTH} keys"
                )));
            }
            let Some(child) = current.subkey(component)? else {
                return Ok(None);
            };
            if ancestors.contains(&child.offset()) {
                return Err(cycle(child.offset()));
            }
            ancestors.push(child.offset());
            current = child;
        }
        Ok(Some(current))
    }

    /// The value `name` of the key at `path`; `Ok(None)` when either is missing.
    pub fn value(&self, path: &str, name: &str) -> GuestResult<Option<Value>> {
        match self.key(path)? {
            Some(key) => key.value(name),
            None => Ok(None),
        }
    }

    /// Visits every key depth-first (the root first) with its `\`-joined path, bounded in
    /// depth and in keys; a key that is its own ancestor is an error. `cancelled` is asked
    /// between keys.
    pub fn walk(
        &self,
        cancelled: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(&str, &Key<'_>),
    ) -> GuestResult<()> {
        let root = self.root()?;
        let mut visited = 0usize;
        let mut stack: Vec<(Key<'_>, String, Vec<u32>)> = vec![(root, String::new(), Vec::new())];
        while let Some((key, path, mut ancestors)) = stack.pop() {
            if cancelled() {
                return Err(GuestError::Interrupted);
            }
            visited += 1;
            if visited > MAX_WALK_KEYS {
                return Err(GuestError::Limit(format!(
                    "registry hive has more than {MAX_WALK_KEYS} keys"
                )));
            }
            visit(&path, &key);
            if ancestors.contains(&key.offset()) {
                return Err(cycle(key.offset()));
            }
            ancestors.push(key.offset());
            if ancestors.len() > MAX_KEY_DEPTH {
                return Err(GuestError::Limit(format!(
                    "registry keys nest deeper than {MAX_KEY_DEPTH}"
                )));
            }
            let children = key.subkeys()?;
            for child in children.into_iter().rev() {
                let child_path = if path.is_empty() {
                    child.name().to_string()
                } else {
                    format!("{path}\\{}", child.name())
                };
                stack.push((child, child_path, ancestors.clone()));
            }
        }
        Ok(())
    }
}

fn cycle(offset: u32) -> GuestError {
    GuestError::Corrupt {
        structure: "registry key",
        offset: u64::from(offset),
        detail: "key is its own ancestor (a cycle in the subkey lists)".into(),
    }
}

/// Fuzz entry point: opens a hive, walks it and reads every value. Never panics, whatever
/// the bytes; errors are the expected outcome for most inputs.
pub fn fuzz_hive(bytes: &[u8]) {
    let Ok(hive) = Hive::from_bytes(bytes.to_vec()) else {
        return;
    };
    let _ = hive.walk(&|| false, &mut |_, key| {
        if let Ok(values) = key.values() {
            for v in values {
                let _ = v.data();
            }
        }
    });
    let _ = hive.key("Select\\Current");
    let _ = hive.value("ControlSet001\\Services\\storvsc", "Start");
}

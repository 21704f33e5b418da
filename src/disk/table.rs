//! On-disk tables (a VHD or VHDX BAT, a VMDK grain directory) read a window at a time:
//! memory stays bounded whatever count a header claims, an entry is read only when used,
//! and a table whose range is a file-system hole costs nothing until it is walked.

use std::path::Path;

use super::input::{InputFile, ReadAt};
use crate::error::{Error, Result};

/// How entries are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    U32Le,
    U32Be,
    U64Le,
}

impl Entry {
    pub fn bytes(self) -> u64 {
        match self {
            Entry::U32Le | Entry::U32Be => 4,
            Entry::U64Le => 8,
        }
    }

    fn decode(self, b: &[u8]) -> u64 {
        match self {
            Entry::U32Le => u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Entry::U32Be => u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            Entry::U64Le => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        }
    }
}

/// Entries read at a time: 32 KiB of 8-byte entries.
pub const WINDOW: u64 = 4096;

/// A table of `count` entries at file offset `offset`, read through one window.
#[derive(Debug)]
pub struct Table {
    offset: u64,
    count: u64,
    entry: Entry,
    structure: &'static str,
    /// (index of the window's first entry, the entries).
    window: Option<(u64, Vec<u64>)>,
    bytes: Vec<u8>,
}

impl Table {
    /// A table that must lie wholly inside `file`: checked here, so a header's claim is
    /// refused before anything is read or allocated for it.
    pub fn new(
        file: &InputFile,
        offset: u64,
        count: u64,
        entry: Entry,
        structure: &'static str,
    ) -> Result<Self> {
        Self::within(file.path(), file.len(), offset, count, entry, structure)
    }

    /// A table that must lie inside the first `file_len` bytes of the file at `path` (a
    /// file seen through a view that may be longer than the file itself, as a replayed
    /// VHDX log makes it).
    pub fn within(
        path: &Path,
        file_len: u64,
        offset: u64,
        count: u64,
        entry: Entry,
        structure: &'static str,
    ) -> Result<Self> {
        let len = count.checked_mul(entry.bytes());
        let inside = len
            .and_then(|len| offset.checked_add(len))
            .is_some_and(|end| end <= file_len);
        if !inside {
            return Err(Error::truncated(
                path,
                structure,
                offset,
                format!(
                    "{count} entries of {} bytes do not fit in the file ({file_len} bytes)",
                    entry.bytes(),
                ),
            ));
        }
        Ok(Table {
            offset,
            count,
            entry,
            structure,
            window: None,
            bytes: Vec::new(),
        })
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// File offset of entry `index` (for messages).
    pub fn entry_offset(&self, index: u64) -> u64 {
        self.offset + index * self.entry.bytes()
    }

    /// Entry `index`, which must be below `len()`.
    pub fn get<R: ReadAt + ?Sized>(&mut self, file: &R, index: u64) -> Result<u64> {
        debug_assert!(index < self.count);
        let first = index / WINDOW * WINDOW;
        if self.window.as_ref().is_none_or(|(f, _)| *f != first) {
            let n = WINDOW.min(self.count - first);
            let width = self.entry.bytes() as usize;
            self.bytes.resize(n as usize * width, 0);
            let at = self.entry_offset(first);
            file.read_exact_at(&mut self.bytes, at, self.structure)?;
            let mut entries = self.window.take().map(|(_, v)| v).unwrap_or_default();
            entries.clear();
            entries.extend(self.bytes.chunks_exact(width).map(|c| self.entry.decode(c)));
            self.window = Some((first, entries));
        }
        let (_, entries) = self.window.as_ref().expect("window just read");
        Ok(entries[(index - first) as usize])
    }

    /// Calls `f(index, entry)` for every entry in order, a window at a time; stops early
    /// when `f` returns false.
    pub fn for_each<R: ReadAt + ?Sized>(
        &mut self,
        file: &R,
        mut f: impl FnMut(u64, u64) -> Result<bool>,
    ) -> Result<()> {
        let mut index = 0;
        while index < self.count {
            let entry = self.get(file, index)?;
            if !f(index, entry)? {
                break;
            }
            index += 1;
        }
        Ok(())
    }
}

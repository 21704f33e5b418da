//! A push parser for newc/crc cpio archives (the only kinds the kernel unpacks), fed in
//! pieces as a decompressor produces them, so the decompressed image is never held.

use super::{Entry, EntryKind, Limits};
use crate::guest::error::{GuestError, GuestResult};

const HEADER_LEN: usize = 110;
const TRAILER: &[u8] = b"TRAILER!!!";
/// Linux's PATH_MAX: the kernel refuses longer names too.
const MAX_NAME: usize = 4096;
/// Largest file whose contents are kept when the caller asks for them.
pub const MAX_CAPTURE: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between entries: zero padding, then a header.
    Start,
    Header,
    Name,
    Data,
}

/// Where the parser is and what it found.
pub struct CpioParser<'a> {
    limits: &'a Limits,
    capture: &'a dyn Fn(&str) -> bool,
    state: State,
    /// Bytes seen in this stream: alignment is relative to the stream's start.
    pos: u64,
    /// Header or name bytes collected so far.
    collected: Vec<u8>,
    /// Fields of the entry being read.
    name_len: usize,
    file_size: u64,
    mode: u32,
    /// Data (and padding) bytes of the current entry still to pass.
    remaining: u64,
    capturing: Option<Vec<u8>>,
    pub entries: Vec<Entry>,
    pub captured: Vec<(String, Vec<u8>)>,
    pub trailers: usize,
    /// Stop after a trailer and its padding (an uncompressed member in the outer stream).
    stop_at_trailer: bool,
    stopped: bool,
}

impl<'a> CpioParser<'a> {
    pub fn new(
        limits: &'a Limits,
        capture: &'a dyn Fn(&str) -> bool,
        stop_at_trailer: bool,
    ) -> Self {
        CpioParser {
            limits,
            capture,
            state: State::Start,
            pos: 0,
            collected: Vec::new(),
            name_len: 0,
            file_size: 0,
            mode: 0,
            remaining: 0,
            capturing: None,
            entries: Vec::new(),
            captured: Vec::new(),
            trailers: 0,
            stop_at_trailer,
            stopped: false,
        }
    }

    /// True when the stream may end here: between entries.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Start
    }

    /// Feeds bytes; returns how many were consumed (all of them unless the parser stopped
    /// after a trailer).
    pub fn feed(&mut self, mut data: &[u8]) -> GuestResult<usize> {
        let total = data.len();
        while !data.is_empty() && !self.stopped {
            let used = match self.state {
                State::Start => self.start(data)?,
                State::Header => self.header(data)?,
                State::Name => self.name(data)?,
                State::Data => self.data(data),
            };
            self.pos += used as u64;
            data = data.get(used..).unwrap_or_default();
        }
        Ok(total - data.len())
    }

    fn start(&mut self, data: &[u8]) -> GuestResult<usize> {
        // Zero padding between archives (the kernel skips it the same way).
        let zeros = data.iter().take_while(|&&b| b == 0).count();
        if zeros > 0 {
            return Ok(zeros);
        }
        if self.pos % 4 != 0 {
            return Err(self.corrupt("header not on a 4-byte boundary"));
        }
        self.collected.clear();
        self.state = State::Header;
        Ok(0)
    }

    fn header(&mut self, data: &[u8]) -> GuestResult<usize> {
        let take = (HEADER_LEN - self.collected.len()).min(data.len());
        self.collected
            .extend_from_slice(data.get(..take).unwrap_or_default());
        if self.collected.len() < HEADER_LEN {
            return Ok(take);
        }
        let magic = self.collected.get(..6).unwrap_or_default();
        if magic == b"070707" {
            return Err(GuestError::Unsupported(
                "initramfs cpio in the old portable (odc) format, which the kernel does not unpack"
                    .into(),
            ));
        }
        if magic != b"070701" && magic != b"070702" {
            return Err(self.corrupt("no newc cpio magic (070701/070702)"));
        }
        self.mode = self.hex_field(14)? as u32;
        self.file_size = self.hex_field(54)?;
        self.name_len = self.hex_field(94)? as usize;
        if self.name_len == 0 || self.name_len > MAX_NAME {
            return Err(self.corrupt(&format!("name size {} out of range", self.name_len)));
        }
        if self.file_size > self.limits.max_decompressed {
            return Err(GuestError::Limit(format!(
                "initramfs cpio entry claims {} bytes, more than the {}-byte limit",
                self.file_size, self.limits.max_decompressed
            )));
        }
        self.collected.clear();
        self.state = State::Name;
        Ok(take)
    }

    fn name(&mut self, data: &[u8]) -> GuestResult<usize> {
        // The name is NUL-terminated, then padded so header + name end on 4 bytes.
        let padded = (HEADER_LEN + self.name_len).div_ceil(4) * 4 - HEADER_LEN;
        let take = (padded - self.collected.len()).min(data.len());
        self.collected
            .extend_from_slice(data.get(..take).unwrap_or_default());
        if self.collected.len() < padded {
            return Ok(take);
        }
        let raw = self.collected.get(..self.name_len - 1).unwrap_or_default();
        if raw == TRAILER {
            self.trailers += 1;
            self.state = State::Start;
            if self.stop_at_trailer {
                self.stopped = true;
            }
            return Ok(take);
        }
        let name = String::from_utf8_lossy(raw);
        let name = name
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_string();
        if self.entries.len() >= self.limits.max_entries {
            return Err(GuestError::Limit(format!(
                "initramfs holds more than {} entries",
                self.limits.max_entries
            )));
        }
        let kind = match self.mode & 0o170000 {
            0o100000 => EntryKind::File,
            0o040000 => EntryKind::Dir,
            0o120000 => EntryKind::Symlink,
            _ => EntryKind::Other,
        };
        self.capturing =
            (kind == EntryKind::File && self.file_size <= MAX_CAPTURE && (self.capture)(&name))
                .then(|| Vec::with_capacity(self.file_size as usize));
        if !name.is_empty() && name != "." {
            self.entries.push(Entry {
                name,
                size: self.file_size,
                kind,
            });
        }
        self.remaining = self.file_size.div_ceil(4) * 4;
        self.state = State::Data;
        if self.remaining == 0 {
            self.finish_entry();
        }
        Ok(take)
    }

    fn finish_entry(&mut self) {
        if let (Some(buf), Some(entry)) = (self.capturing.take(), self.entries.last()) {
            self.captured.push((entry.name.clone(), buf));
        }
        self.state = State::Start;
    }

    fn data(&mut self, data: &[u8]) -> usize {
        let take = self.remaining.min(data.len() as u64) as usize;
        if let Some(buf) = self.capturing.as_mut() {
            let want = (self.file_size as usize)
                .saturating_sub(buf.len())
                .min(take);
            buf.extend_from_slice(data.get(..want).unwrap_or_default());
        }
        self.remaining -= take as u64;
        if self.remaining == 0 {
            self.finish_entry();
        }
        take
    }

    fn hex_field(&self, at: usize) -> GuestResult<u64> {
        let field = self.collected.get(at..at + 8).unwrap_or_default();
        std::str::from_utf8(field)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| self.corrupt("header field is not 8 hex digits"))
    }

    fn corrupt(&self, detail: &str) -> GuestError {
        GuestError::Corrupt {
            structure: "initramfs cpio",
            offset: self.pos,
            detail: detail.into(),
        }
    }
}

//! VHDX log entries built byte by byte from MS-VHDX 2.3.1, for tests that need a log to
//! replay (chain_formats.rs, check.rs, chains.rs).
#![allow(dead_code)]

use vdconv::vhdx::format::{HEADER1_OFFSET, HEADER2_OFFSET, Header, seal};
use zerocopy::{FromBytes, IntoBytes};

pub const PAGE: usize = 4096;
pub const GUID: [u8; 16] = [
    0x4c, 0x6f, 0x67, 0x47, 0x75, 0x69, 0x64, 0x21, 0x76, 0x64, 0x63, 0x6f, 0x6e, 0x76, 0x00, 0x01,
];

pub enum Desc {
    Zero { offset: u64, len: u64 },
    Data { offset: u64, page: Vec<u8> },
}

pub struct EntrySpec<'a> {
    pub guid: [u8; 16],
    pub sequence: u64,
    pub tail: u32,
    pub flushed: u64,
    pub last: u64,
    pub descriptors: &'a [Desc],
}

/// One log entry, byte by byte: header and descriptors in 4 KiB descriptor sectors,
/// then one data sector per data descriptor; CRC-32C over all of it with the checksum
/// field zero.
pub fn entry(s: &EntrySpec) -> Vec<u8> {
    let count = s.descriptors.len();
    let desc_sectors = (64 + 32 * count).div_ceil(PAGE);
    let pages: Vec<&Vec<u8>> = s
        .descriptors
        .iter()
        .filter_map(|d| match d {
            Desc::Data { page, .. } => Some(page),
            Desc::Zero { .. } => None,
        })
        .collect();
    let len = (desc_sectors + pages.len()) * PAGE;
    let mut e = vec![0u8; len];
    let put =
        |e: &mut Vec<u8>, at: usize, bytes: &[u8]| e[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut e, 0, b"loge");
    put(&mut e, 8, &(len as u32).to_le_bytes());
    put(&mut e, 12, &s.tail.to_le_bytes());
    put(&mut e, 16, &s.sequence.to_le_bytes());
    put(&mut e, 24, &(count as u32).to_le_bytes());
    put(&mut e, 32, &s.guid);
    put(&mut e, 48, &s.flushed.to_le_bytes());
    put(&mut e, 56, &s.last.to_le_bytes());
    for (i, d) in s.descriptors.iter().enumerate() {
        let at = 64 + 32 * i;
        match d {
            Desc::Zero { offset, len } => {
                put(&mut e, at, b"zero");
                put(&mut e, at + 8, &len.to_le_bytes());
                put(&mut e, at + 16, &offset.to_le_bytes());
            }
            Desc::Data { offset, page } => {
                put(&mut e, at, b"desc");
                put(&mut e, at + 4, &page[PAGE - 4..]);
                put(&mut e, at + 8, &page[..8]);
                put(&mut e, at + 16, &offset.to_le_bytes());
            }
        }
        put(&mut e, at + 24, &s.sequence.to_le_bytes());
    }
    for (k, page) in pages.iter().enumerate() {
        let at = (desc_sectors + k) * PAGE;
        put(&mut e, at, b"data");
        put(&mut e, at + 4, &((s.sequence >> 32) as u32).to_le_bytes());
        put(&mut e, at + 8, &page[8..PAGE - 4]);
        put(&mut e, at + PAGE - 4, &(s.sequence as u32).to_le_bytes());
    }
    let crc = crc32c::crc32c(&e);
    put(&mut e, 4, &crc.to_le_bytes());
    e
}

/// Writes `entry` into the circular log at `log_offset` (`log_len` bytes) from `at` on.
pub fn place(image: &mut [u8], log_offset: u64, log_len: u64, at: u64, entry: &[u8]) {
    for (i, chunk) in entry.chunks(PAGE).enumerate() {
        let pos = (at + (i * PAGE) as u64) % log_len;
        let to = (log_offset + pos) as usize;
        image[to..to + chunk.len()].copy_from_slice(chunk);
    }
}

/// Makes the header with LogGuid `guid` current: the other slot gets the current
/// header's fields with sequence + 1, as the header update protocol writes it.
pub fn set_log_guid(image: &mut [u8], guid: [u8; 16]) {
    let read = |at: u64| Header::read_from_bytes(&image[at as usize..at as usize + 4096]).unwrap();
    let (h1, h2) = (read(HEADER1_OFFSET), read(HEADER2_OFFSET));
    let (current, other) = if h1.sequence_number.get() >= h2.sequence_number.get() {
        (h1, HEADER2_OFFSET)
    } else {
        (h2, HEADER1_OFFSET)
    };
    let mut h = current.clone();
    h.sequence_number.set(current.sequence_number.get() + 1);
    h.log_guid = guid;
    seal(h.as_mut_bytes());
    image[other as usize..other as usize + 4096].copy_from_slice(h.as_bytes());
}

pub fn page(byte: u8) -> Vec<u8> {
    // Distinct first 8 and last 4 bytes, which travel in the descriptor.
    let mut p = vec![byte; PAGE];
    p[..8].copy_from_slice(b"LEADING!");
    p[PAGE - 4..].copy_from_slice(b"TAIL");
    p
}

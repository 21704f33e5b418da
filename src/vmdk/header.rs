//! The hosted sparse extent header (magic `KDMV`), 512 bytes, little-endian.

use std::path::Path;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, Result};

pub const MAGIC: &[u8; 4] = b"KDMV";
pub const SECTOR: u64 = 512;

/// Flag bits.
pub const FLAG_NEWLINE_TEST: u32 = 0x1;
pub const FLAG_REDUNDANT_GD: u32 = 0x2;
pub const FLAG_ZEROED_GTE: u32 = 0x4;
pub const FLAG_COMPRESSED: u32 = 0x10000;
pub const FLAG_MARKERS: u32 = 0x20000;
const KNOWN_HIGH_FLAGS: u32 = FLAG_COMPRESSED | FLAG_MARKERS;

/// gdOffset meaning "the grain directory is found through the footer".
pub const GD_AT_END: u64 = u64::MAX;

/// Largest grain accepted: 16384 sectors = 8 MiB (VMware writes 128 sectors). Bounds the
/// per-grain buffers a crafted header could ask for.
pub const MAX_GRAIN_SECTORS: u64 = 16384;
/// Largest grain table accepted, in entries (the specification fixes 512).
pub const MAX_GTES_PER_GT: u32 = 4096;

/// On-disk layout of the header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct RawHeader {
    /// `KDMV`.
    pub magic: [u8; 4],
    /// 1, 2 or 3.
    pub version: U32,
    /// FLAG_* bits.
    pub flags: U32,
    /// Extent size in sectors.
    pub capacity: U64,
    /// Grain size in sectors.
    pub grain_size: U64,
    /// Embedded descriptor start, in sectors (0 = none).
    pub descriptor_offset: U64,
    /// Embedded descriptor length, in sectors.
    pub descriptor_size: U64,
    /// Entries per grain table (512).
    pub num_gtes_per_gt: U32,
    /// Redundant grain directory, in sectors.
    pub rgd_offset: U64,
    /// Grain directory, in sectors, or GD_AT_END.
    pub gd_offset: U64,
    /// Sectors of metadata before the first grain.
    pub over_head: U64,
    /// Non-zero when the disk was not closed cleanly.
    pub unclean_shutdown: u8,
    /// `\n`, ` `, `\r`, `\n`: detects text-mode transfers.
    pub newline_test: [u8; 4],
    /// 0 none, 1 deflate.
    pub compress_algorithm: U16,
    pub pad: [u8; 433],
}

const _: () = assert!(size_of::<RawHeader>() == 512);

/// The header's values, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseHeader {
    pub version: u32,
    pub flags: u32,
    pub capacity: u64,
    pub grain_size: u64,
    pub descriptor_offset: u64,
    pub descriptor_size: u64,
    pub num_gtes_per_gt: u32,
    pub rgd_offset: u64,
    pub gd_offset: u64,
    pub over_head: u64,
    pub compress_algorithm: u16,
}

impl SparseHeader {
    /// Parses and validates a header read from `offset` of `path`.
    pub fn parse(bytes: &[u8; 512], path: &Path, offset: u64) -> Result<Self> {
        let bad = |detail: String| Error::corrupt(path, "sparse header", offset, detail);
        let raw = RawHeader::read_from_bytes(bytes).expect("512-byte buffer");
        if &raw.magic != MAGIC {
            return Err(bad(format!("magic is {:02x?}, not KDMV", raw.magic)));
        }
        let h = SparseHeader {
            version: raw.version.get(),
            flags: raw.flags.get(),
            capacity: raw.capacity.get(),
            grain_size: raw.grain_size.get(),
            descriptor_offset: raw.descriptor_offset.get(),
            descriptor_size: raw.descriptor_size.get(),
            num_gtes_per_gt: raw.num_gtes_per_gt.get(),
            rgd_offset: raw.rgd_offset.get(),
            gd_offset: raw.gd_offset.get(),
            over_head: raw.over_head.get(),
            compress_algorithm: raw.compress_algorithm.get(),
        };
        if !(1..=3).contains(&h.version) {
            return Err(bad(format!("version {} is not 1, 2 or 3", h.version)));
        }
        let unknown = h.flags & 0xffff_0000 & !KNOWN_HIGH_FLAGS;
        if unknown != 0 {
            return Err(bad(format!("unknown incompatible flags {unknown:#x}")));
        }
        if h.flags & FLAG_NEWLINE_TEST != 0 && raw.newline_test != [b'\n', b' ', b'\r', b'\n'] {
            return Err(bad(
                "newline test bytes are damaged (was the file transferred in text mode?)"
                    .to_string(),
            ));
        }
        if h.grain_size == 0 || !h.grain_size.is_power_of_two() || h.grain_size > MAX_GRAIN_SECTORS
        {
            return Err(bad(format!(
                "grain size {} sectors is not a power of two from 1 to {MAX_GRAIN_SECTORS}",
                h.grain_size
            )));
        }
        if h.num_gtes_per_gt == 0 || h.num_gtes_per_gt > MAX_GTES_PER_GT {
            return Err(bad(format!(
                "{} grain table entries per table (expected 512)",
                h.num_gtes_per_gt
            )));
        }
        if h.capacity.checked_mul(SECTOR).is_none() {
            return Err(bad(format!("capacity {} sectors overflows", h.capacity)));
        }
        if h.compress_algorithm > 1 {
            return Err(bad(format!(
                "compression algorithm {} is unknown (0 none, 1 deflate)",
                h.compress_algorithm
            )));
        }
        if h.compressed() && h.compress_algorithm != 1 {
            return Err(bad(
                "compressed-grain flag set but no compression algorithm".to_string(),
            ));
        }
        Ok(h)
    }

    pub fn compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    pub fn has_zeroed_gte(&self) -> bool {
        self.flags & FLAG_ZEROED_GTE != 0
    }

    pub fn grain_bytes(&self) -> u64 {
        self.grain_size * SECTOR
    }

    /// Bytes of virtual disk covered by one grain table.
    pub fn gt_coverage(&self) -> u64 {
        self.grain_bytes() * u64::from(self.num_gtes_per_gt)
    }

    /// Number of grain directory entries needed for the capacity.
    pub fn gd_entries(&self) -> u64 {
        (self.capacity * SECTOR).div_ceil(self.gt_coverage())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn sample() -> [u8; 512] {
        let mut raw = RawHeader::new_zeroed();
        raw.magic = *MAGIC;
        raw.version.set(1);
        raw.flags.set(FLAG_NEWLINE_TEST | FLAG_REDUNDANT_GD);
        raw.capacity.set(2048);
        raw.grain_size.set(128);
        raw.num_gtes_per_gt.set(512);
        raw.newline_test = [b'\n', b' ', b'\r', b'\n'];
        let mut out = [0u8; 512];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    #[test]
    fn parses_a_valid_header() {
        let h = SparseHeader::parse(&sample(), Path::new("x"), 0).unwrap();
        assert_eq!(h.capacity, 2048);
        assert_eq!(h.gd_entries(), 1);
        assert_eq!(h.gt_coverage(), 32 << 20);
    }

    #[test]
    fn rejects_bad_fields() {
        let cases: [(usize, &[u8]); 5] = [
            (0, b"KDMX"),
            (4, &4u32.to_le_bytes()),
            (8, &0x0004_0000u32.to_le_bytes()),
            (20, &100u64.to_le_bytes()),
            (73, b"\n \n\n"),
        ];
        for (at, bytes) in cases {
            let mut b = sample();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            let e = SparseHeader::parse(&b, Path::new("x.vmdk"), 0).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("x.vmdk: sparse header at offset 0")
            );
        }
    }
}

//! The VHD footer (512 bytes, big-endian) and the one's-complement checksum it and the
//! dynamic header share.

use zerocopy::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::identity::Identity;
use crate::vhd::geometry::Chs;

pub const COOKIE: &[u8; 8] = b"conectix";
/// Our creator application tag: readers use it to tell writers apart.
pub const CREATOR_APP: &[u8; 4] = b"vdcv";
pub const CREATOR_HOST_OS: &[u8; 4] = b"Wi2k";
pub const FEATURES_RESERVED: u32 = 0x0000_0002;
pub const VERSION: u32 = 0x0001_0000;
/// Data offset of a fixed disk: there is no header.
pub const NO_DATA_OFFSET: u64 = u64::MAX;
/// Seconds from the Unix epoch to 2000-01-01T00:00:00Z, the VHD epoch.
pub const VHD_EPOCH: u64 = 946_684_800;

/// Disk types.
pub const DISK_FIXED: u32 = 2;
pub const DISK_DYNAMIC: u32 = 3;
pub const DISK_DIFFERENCING: u32 = 4;

/// On-disk footer.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct Footer {
    /// `conectix`.
    pub cookie: [u8; 8],
    /// 0x2: the reserved bit that must be set.
    pub features: U32,
    /// 0x00010000.
    pub version: U32,
    /// Dynamic: byte offset of the dynamic header; fixed: all ones.
    pub data_offset: U64,
    /// Seconds since 2000-01-01T00:00:00Z.
    pub timestamp: U32,
    /// Writer's 4-character tag.
    pub creator_app: [u8; 4],
    /// Writer's version, major << 16 | minor.
    pub creator_version: U32,
    /// `Wi2k` or `Mac `.
    pub creator_host_os: [u8; 4],
    /// Size at creation, bytes.
    pub original_size: U64,
    /// Current virtual size, bytes.
    pub current_size: U64,
    /// CHS geometry: cylinders.
    pub cylinders: U16,
    /// CHS geometry: heads.
    pub heads: u8,
    /// CHS geometry: sectors per track.
    pub sectors_per_track: u8,
    /// DISK_FIXED, DISK_DYNAMIC or DISK_DIFFERENCING.
    pub disk_type: U32,
    /// One's complement of the byte sum with this field zero.
    pub checksum: U32,
    /// Identifies the disk (differencing children refer to it).
    pub unique_id: [u8; 16],
    /// 1 when the disk holds a saved state.
    pub saved_state: u8,
    pub reserved: [u8; 427],
}

const _: () = assert!(size_of::<Footer>() == 512);

/// One's complement of the sum of all bytes (the checksum field must be zero in `bytes`).
pub fn ones_complement_sum(bytes: &[u8]) -> u32 {
    !bytes
        .iter()
        .fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)))
}

impl Footer {
    /// A footer as vdconv writes it; `data_offset` is NO_DATA_OFFSET for fixed disks.
    pub fn new(size: u64, disk_type: u32, data_offset: u64, identity: Identity) -> Self {
        let mut f = Footer::new_zeroed();
        f.cookie = *COOKIE;
        f.features.set(FEATURES_RESERVED);
        f.version.set(VERSION);
        f.data_offset.set(data_offset);
        f.timestamp.set(vhd_timestamp(identity.time()));
        f.creator_app = *CREATOR_APP;
        f.creator_version.set(creator_version());
        f.creator_host_os = *CREATOR_HOST_OS;
        f.original_size.set(size);
        f.current_size.set(size);
        let chs = Chs::for_size(size);
        f.cylinders.set(chs.cylinders);
        f.heads = chs.heads;
        f.sectors_per_track = chs.sectors_per_track;
        f.disk_type.set(disk_type);
        f.unique_id = identity.uuid("vhd unique id");
        f.seal();
        f
    }

    /// Sets the checksum over the current contents.
    pub fn seal(&mut self) {
        self.checksum.set(0);
        let sum = ones_complement_sum(self.as_bytes());
        self.checksum.set(sum);
    }

    /// The checksum the footer should carry.
    pub fn expected_checksum(&self) -> u32 {
        let mut copy = self.clone();
        copy.checksum.set(0);
        ones_complement_sum(copy.as_bytes())
    }

    pub fn chs(&self) -> Chs {
        Chs {
            cylinders: self.cylinders.get(),
            heads: self.heads,
            sectors_per_track: self.sectors_per_track,
        }
    }
}

/// major << 16 | minor of this crate.
pub fn creator_version() -> u32 {
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0);
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0);
    (major << 16) | (minor & 0xffff)
}

/// Seconds since 2000-01-01, as the footer stores them.
pub fn vhd_timestamp(unix: u64) -> u32 {
    // The field is 32 bits: it wraps in 2136.
    unix.saturating_sub(VHD_EPOCH) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_ones_complement_of_byte_sum() {
        let f = Footer::new(10 << 20, DISK_FIXED, NO_DATA_OFFSET, Identity::random_now());
        let bytes = f.as_bytes();
        let mut zeroed = bytes.to_vec();
        zeroed[64..68].fill(0);
        let sum: u32 = zeroed.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(f.checksum.get(), !sum);
        assert_eq!(f.expected_checksum(), f.checksum.get());
        assert_eq!(&bytes[0..8], b"conectix");
        assert_eq!(&bytes[28..32], b"vdcv");
        assert_eq!(&bytes[36..40], b"Wi2k");
        assert_eq!(
            u64::from_be_bytes(bytes[48..56].try_into().unwrap()),
            10 << 20
        );
        assert_eq!(
            u32::from_be_bytes(bytes[60..64].try_into().unwrap()),
            DISK_FIXED
        );
    }

    #[test]
    fn a_changed_byte_breaks_the_checksum() {
        let mut f = Footer::new(1 << 20, DISK_DYNAMIC, 512, Identity::random_now());
        f.heads ^= 1;
        assert_ne!(f.expected_checksum(), f.checksum.get());
    }
}

//! VHD CHS geometry.
//!
//! Older readers take the disk size from cylinders * heads * sectors rather than from the
//! footer's current size. So vdconv writes the specification's geometry only when it
//! describes the size exactly, and otherwise the maximum geometry 65535/16/255, which every
//! reader treats as "use current size".

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chs {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors_per_track: u8,
}

pub const MAX_CHS: Chs = Chs {
    cylinders: 65535,
    heads: 16,
    sectors_per_track: 255,
};

impl Chs {
    /// The specification's algorithm (integer division, rounds down).
    pub fn from_spec(size: u64) -> Chs {
        let total = (size / 512).min(65535 * 16 * 255);
        let (spt, heads, cyl_heads);
        if total >= 65535 * 16 * 63 {
            spt = 255;
            heads = 16;
            cyl_heads = total / spt;
        } else {
            let mut s = 17;
            let mut ch = total / s;
            let mut h = ch.div_ceil(1024).max(4);
            if ch >= h * 1024 || h > 16 {
                s = 31;
                h = 16;
                ch = total / s;
            }
            if ch >= h * 1024 {
                s = 63;
                h = 16;
                ch = total / s;
            }
            spt = s;
            heads = h;
            cyl_heads = ch;
        }
        Chs {
            cylinders: (cyl_heads / heads) as u16,
            heads: heads as u8,
            sectors_per_track: spt as u8,
        }
    }

    /// Bytes the geometry describes.
    pub fn bytes(self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors_per_track) * 512
    }

    /// The geometry vdconv writes for `size`: the specification's when exact, else MAX_CHS.
    pub fn for_size(size: u64) -> Chs {
        let spec = Chs::from_spec(size);
        if spec.bytes() == size { spec } else { MAX_CHS }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_algorithm_matches_known_values() {
        // 10 MiB: 20480 sectors -> S=17, CH=1204, H=4, C=301.
        assert_eq!(
            Chs::from_spec(10 << 20),
            Chs {
                cylinders: 301,
                heads: 4,
                sectors_per_track: 17
            }
        );
        // Around the S=17 -> S=31 switch: 17 * 16 * 1024 sectors needs H > 16 at S=17.
        let boundary = 17 * 16 * 1024 * 512;
        assert_eq!(Chs::from_spec(boundary - 512).sectors_per_track, 17);
        assert_eq!(Chs::from_spec(boundary).sectors_per_track, 31);
        // S=31 -> S=63 when CH reaches 16 * 1024.
        let b63 = 31 * 16 * 1024 * 512;
        assert_eq!(Chs::from_spec(b63 - 512).sectors_per_track, 31);
        assert_eq!(Chs::from_spec(b63).sectors_per_track, 63);
        // At 65535*16*63 sectors the geometry switches to 255 sectors per track.
        let big = 65535u64 * 16 * 63 * 512;
        assert_eq!(Chs::from_spec(big - 512).sectors_per_track, 63);
        assert_eq!(
            Chs::from_spec(big),
            Chs {
                cylinders: 16191,
                heads: 16,
                sectors_per_track: 255
            }
        );
        // Capped at the maximum.
        assert_eq!(Chs::from_spec(u64::MAX / 2), MAX_CHS);
    }

    #[test]
    fn writes_spec_geometry_only_when_exact() {
        let exact = Chs {
            cylinders: 100,
            heads: 4,
            sectors_per_track: 17,
        }
        .bytes();
        assert_eq!(Chs::from_spec(exact).bytes(), exact);
        assert_eq!(Chs::for_size(exact).cylinders, 100);
        // 10 MiB is not a CHS product: 301*4*17 sectors = 20468 < 20480.
        assert_eq!(Chs::for_size(10 << 20), MAX_CHS);
    }
}

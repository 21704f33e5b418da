//! A linear logical volume as a [`ByteSource`]: LV byte `x` lies in extent
//! `x / extent_bytes`, which one segment maps to consecutive extents of one PV.

use std::sync::Arc;

use crate::guest::error::GuestResult;
use crate::guest::source::{ByteSource, out_of_range};

/// Consecutive extents of the LV stored consecutively on one PV.
#[derive(Clone)]
pub struct Segment {
    /// First LV extent of the segment.
    pub start_extent: u64,
    pub extents: u64,
    pub pv: Arc<dyn ByteSource>,
    /// Byte offset inside the PV of the segment's first extent.
    pub pv_byte: u64,
}

pub struct LvSource {
    /// Sorted by `start_extent`, covering `[0, len)` without gaps or overlaps.
    segments: Vec<Segment>,
    extent_bytes: u64,
    len: u64,
}

impl LvSource {
    /// Checks that the segments tile the LV from extent 0 with no gap or overlap.
    pub fn new(mut segments: Vec<Segment>, extent_bytes: u64) -> Result<Self, String> {
        if extent_bytes == 0 {
            return Err("extent size is 0".into());
        }
        segments.sort_by_key(|s| s.start_extent);
        let mut next = 0u64;
        for s in &segments {
            if s.start_extent != next || s.extents == 0 {
                return Err(format!(
                    "segments leave a gap or overlap at extent {}",
                    s.start_extent.min(next)
                ));
            }
            next = next
                .checked_add(s.extents)
                .ok_or_else(|| "segment extents overflow".to_string())?;
        }
        let len = next
            .checked_mul(extent_bytes)
            .ok_or_else(|| "logical volume size overflows".to_string())?;
        Ok(LvSource {
            segments,
            extent_bytes,
            len,
        })
    }
}

impl ByteSource for LvSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> GuestResult<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(out_of_range(offset, buf.len(), self.len));
        }
        let mut pos = offset;
        let mut rest = buf;
        while !rest.is_empty() {
            let extent = pos / self.extent_bytes;
            // The segment holding `extent`: the last one starting at or before it.
            let idx = self
                .segments
                .partition_point(|s| s.start_extent <= extent)
                .saturating_sub(1);
            let Some(seg) = self.segments.get(idx) else {
                return Err(out_of_range(pos, rest.len(), self.len));
            };
            let seg_start = seg.start_extent * self.extent_bytes;
            let seg_len = seg.extents * self.extent_bytes;
            let inside = pos - seg_start;
            let take = (seg_len - inside).min(rest.len() as u64) as usize;
            let (now, later) = rest.split_at_mut(take);
            seg.pv.read_exact_at(seg.pv_byte + inside, now)?;
            pos += take as u64;
            rest = later;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_across_segments_on_two_pvs() {
        let a: Arc<dyn ByteSource> = Arc::new((0..64u8).collect::<Vec<u8>>());
        let b: Arc<dyn ByteSource> = Arc::new((100..164u8).collect::<Vec<u8>>());
        let segs = vec![
            Segment {
                start_extent: 1,
                extents: 1,
                pv: b,
                pv_byte: 8,
            },
            Segment {
                start_extent: 0,
                extents: 1,
                pv: a,
                pv_byte: 16,
            },
        ];
        let lv = LvSource::new(segs, 8).unwrap();
        assert_eq!(lv.len(), 16);
        let mut buf = [0u8; 6];
        lv.read_exact_at(5, &mut buf).unwrap();
        assert_eq!(buf, [21, 22, 23, 108, 109, 110]);
        assert!(lv.read_exact_at(12, &mut [0u8; 5]).is_err());
    }

    #[test]
    fn refuses_gaps() {
        let a: Arc<dyn ByteSource> = Arc::new(vec![0u8; 64]);
        let segs = vec![Segment {
            start_extent: 1,
            extents: 1,
            pv: a,
            pv_byte: 0,
        }];
        assert!(LvSource::new(segs, 8).is_err());
    }
}

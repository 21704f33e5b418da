//! Bounded positioned reads of a byte range: the whole virtual disk, one partition, one
//! logical volume.

use std::sync::Arc;

use super::error::{GuestError, GuestResult};

/// A read-only range of bytes. Reads outside `[0, len)` are errors, never short reads.
pub trait ByteSource: Send + Sync {
    /// Bytes in the range.
    fn len(&self) -> u64;

    /// Fills `buf` from `offset`. Errors when `[offset, offset + buf.len())` leaves the range.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> GuestResult<()>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The end of `[offset, offset + want)` when it lies inside a source of `len` bytes.
pub fn checked_end(offset: u64, want: usize, len: u64) -> GuestResult<u64> {
    match offset.checked_add(want as u64) {
        Some(end) if end <= len => Ok(end),
        _ => Err(out_of_range(offset, want, len)),
    }
}

/// The error for a read that leaves a source of `len` bytes.
pub fn out_of_range(offset: u64, want: usize, len: u64) -> GuestError {
    GuestError::Corrupt {
        structure: "volume",
        offset,
        detail: format!("{want} bytes extend past the end of the volume ({len} bytes)"),
    }
}

/// `[start, start + len)` of another source (a partition of a disk).
pub struct Slice {
    inner: Arc<dyn ByteSource>,
    start: u64,
    len: u64,
}

impl Slice {
    /// None when the range does not lie inside `inner`.
    pub fn new(inner: Arc<dyn ByteSource>, start: u64, len: u64) -> Option<Self> {
        (start.checked_add(len)? <= inner.len()).then_some(Slice { inner, start, len })
    }
}

impl ByteSource for Slice {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> GuestResult<()> {
        checked_end(offset, buf.len(), self.len)?;
        self.inner.read_exact_at(self.start + offset, buf)
    }
}

/// A disk image given as its non-zero 4 KiB pages: the fuzz targets' encoding of whole
/// disks and file systems. An XFS is at least 16 MiB with its log and inodes beyond 3 MiB,
/// and libFuzzer's own work per input (copies, comparisons, hashes) grows with the
/// input's length, so raw 6 MiB inputs ran about a thousand a second with 85% of the time
/// in libFuzzer. Pages keep the input near the size of what the image holds (syzkaller
/// hands its file system images over compressed for the same reason).
///
/// The encoding: the image's length in pages (u32 little-endian, at most
/// [`PagedImage::MAX_PAGES`]), then records of a page index (u16 little-endian, taken
/// modulo the length) and 4096 bytes of that page; a short last record is padded with
/// zeros, and a later record for a page replaces an earlier one. Every image is some
/// input, and a cut input is still an image.
pub struct PagedImage {
    len: u64,
    /// Sorted by page index, one entry per page.
    pages: Vec<(u64, Box<[u8]>)>,
}

impl PagedImage {
    pub const PAGE: usize = 4096;
    /// 16 MiB: room for an XFS and a small partitioned disk.
    pub const MAX_PAGES: u32 = 4096;

    pub fn decode(bytes: &[u8]) -> PagedImage {
        let count = match bytes.get(..4) {
            Some(b) => u32::from_le_bytes(b.try_into().expect("4 bytes")).min(Self::MAX_PAGES),
            None => 0,
        };
        let mut pages: Vec<(u64, Box<[u8]>)> = Vec::new();
        if count > 0 {
            for record in bytes[4..].chunks(2 + Self::PAGE) {
                let Some(index) = record.get(..2) else { break };
                let index = u64::from(u32::from(u16::from_le_bytes([index[0], index[1]])) % count);
                let mut page = vec![0u8; Self::PAGE].into_boxed_slice();
                page[..record.len() - 2].copy_from_slice(&record[2..]);
                pages.push((index, page));
            }
        }
        // Later records win: a stable sort keeps their order, then the last of each run.
        pages.sort_by_key(|(index, _)| *index);
        let mut unique: Vec<(u64, Box<[u8]>)> = Vec::with_capacity(pages.len());
        for (index, page) in pages {
            match unique.last_mut() {
                Some(last) if last.0 == index => last.1 = page,
                _ => unique.push((index, page)),
            }
        }
        PagedImage {
            len: u64::from(count) * Self::PAGE as u64,
            pages: unique,
        }
    }
}

impl ByteSource for PagedImage {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> GuestResult<()> {
        let end = checked_end(offset, buf.len(), self.len)?;
        buf.fill(0);
        let page = Self::PAGE as u64;
        let first = self
            .pages
            .partition_point(|(i, _)| (i + 1) * page <= offset);
        for (index, data) in &self.pages[first..] {
            let start = index * page;
            if start >= end {
                break;
            }
            let (from, to) = (start.max(offset), (start + page).min(end));
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
        }
        Ok(())
    }
}

/// An in-memory source (tests, small copies such as an ESP).
impl ByteSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> GuestResult<()> {
        let end = checked_end(offset, buf.len(), self.as_slice().len() as u64)?;
        buf.copy_from_slice(&self[offset as usize..end as usize]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding of `image` (a whole number of pages): its non-zero pages.
    fn encode(image: &[u8]) -> Vec<u8> {
        let pages = image.len() / PagedImage::PAGE;
        let mut out = (pages as u32).to_le_bytes().to_vec();
        for (i, page) in image.chunks(PagedImage::PAGE).enumerate() {
            if page.iter().any(|&b| b != 0) {
                out.extend((i as u16).to_le_bytes());
                out.extend(page);
            }
        }
        out
    }

    #[test]
    fn a_paged_image_reads_as_the_image_it_encodes() {
        let mut image = vec![0u8; 8 * PagedImage::PAGE];
        for (i, b) in image.iter_mut().enumerate() {
            if (i / PagedImage::PAGE) % 3 == 1 {
                *b = (i % 251) as u8 + 1;
            }
        }
        let paged = PagedImage::decode(&encode(&image));
        assert_eq!(paged.len(), image.len() as u64);
        for (offset, len) in [(0, image.len()), (4000, 200), (4096, 4096), (12_000, 9000)] {
            let mut buf = vec![0xEE; len];
            paged.read_exact_at(offset as u64, &mut buf).unwrap();
            assert_eq!(buf, image[offset..offset + len], "{offset}+{len}");
        }
        assert!(
            paged
                .read_exact_at(image.len() as u64 - 1, &mut [0; 2])
                .is_err()
        );
        assert!(paged.read_exact_at(u64::MAX, &mut [0; 1]).is_err());
    }

    #[test]
    fn paged_records_wrap_replace_and_may_be_cut() {
        // Two pages; record for page 3 lands on page 1 (3 mod 2); the later record for
        // page 1 wins; the cut last record is padded with zeros.
        let mut input = 2u32.to_le_bytes().to_vec();
        input.extend(3u16.to_le_bytes());
        input.extend([1u8; 4096]);
        input.extend(1u16.to_le_bytes());
        input.extend([2u8; 4096]);
        input.extend(0u16.to_le_bytes());
        input.extend([3u8; 10]);
        let paged = PagedImage::decode(&input);
        let mut buf = vec![0u8; 8192];
        paged.read_exact_at(0, &mut buf).unwrap();
        assert!(buf[..10].iter().all(|&b| b == 3) && buf[10..4096].iter().all(|&b| b == 0));
        assert!(buf[4096..].iter().all(|&b| b == 2));
        // Lengths are capped; nothing at all is an empty image.
        assert_eq!(PagedImage::decode(&u32::MAX.to_le_bytes()).len(), 16 << 20);
        assert_eq!(PagedImage::decode(&[1, 2]).len(), 0);
    }
}

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
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(out_of_range(offset, buf.len(), self.len));
        }
        self.inner.read_exact_at(self.start + offset, buf)
    }
}

/// An in-memory source (tests, small copies such as an ESP).
impl ByteSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> GuestResult<()> {
        let end = offset.checked_add(buf.len() as u64);
        match end {
            Some(e) if e <= self.as_slice().len() as u64 => {
                buf.copy_from_slice(&self[offset as usize..e as usize]);
                Ok(())
            }
            _ => Err(out_of_range(
                offset,
                buf.len(),
                self.as_slice().len() as u64,
            )),
        }
    }
}

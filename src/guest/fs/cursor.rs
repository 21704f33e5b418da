//! `Read + Seek` over a [`ByteSource`], for crates that want a stream (ntfs, fatfs). Reads
//! go through a one-chunk cache, since those crates read a few bytes at a time (FAT
//! entries, index headers) and a source may be a compressed VMDK. Writes always fail: the
//! guest is never written.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use crate::guest::error::GuestError;
use crate::guest::source::ByteSource;

const CHUNK: u64 = 64 * 1024;

pub struct SourceCursor {
    source: Arc<dyn ByteSource>,
    pos: u64,
    /// The chunk starting at `cached_at`, when one is cached.
    cache: Vec<u8>,
    cached_at: Option<u64>,
}

impl SourceCursor {
    pub fn new(source: Arc<dyn ByteSource>) -> Self {
        SourceCursor {
            source,
            pos: 0,
            cache: Vec::new(),
            cached_at: None,
        }
    }

    fn fill(&mut self, chunk_start: u64) -> io::Result<()> {
        if self.cached_at == Some(chunk_start) {
            return Ok(());
        }
        let len = CHUNK.min(self.source.len().saturating_sub(chunk_start)) as usize;
        self.cache.resize(len, 0);
        self.cached_at = None;
        self.source
            .read_exact_at(chunk_start, &mut self.cache)
            .map_err(io::Error::other)?;
        self.cached_at = Some(chunk_start);
        Ok(())
    }
}

/// The guest error inside an I/O error this cursor made, if it is one.
pub fn guest_error(e: &io::Error) -> Option<GuestError> {
    e.get_ref()?.downcast_ref::<GuestError>().cloned()
}

impl Read for SourceCursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.source.len() {
            return Ok(0);
        }
        let chunk_start = self.pos - self.pos % CHUNK;
        self.fill(chunk_start)?;
        let inside = (self.pos - chunk_start) as usize;
        let avail = self.cache.get(inside..).unwrap_or_default();
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SourceCursor {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.source.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let new = new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        self.pos = new;
        Ok(new)
    }
}

impl Write for SourceCursor {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the guest is read-only",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_across_chunks_and_stops_at_end() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut c = SourceCursor::new(Arc::new(data.clone()));
        c.seek(SeekFrom::Start(65_530)).unwrap();
        let mut buf = [0u8; 20];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..], &data[65_530..65_550]);
        c.seek(SeekFrom::End(-3)).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &data[199_997..]);
        assert!(c.write(b"x").is_err());
    }
}

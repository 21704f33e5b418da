//! The front of a streamed image (headers, metadata, the block table), built before any
//! byte is sent and sent first. Small fronts are held in memory; a large one (a VHDX of
//! 64 TiB in 1 MiB blocks has a 512 MiB BAT) is kept in an unnamed temporary file in
//! TMPDIR, so a stream's memory stays bounded whatever the disk's size.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Fronts up to this size are held in memory.
pub const IN_MEMORY: u64 = 32 << 20;

/// Bytes moved at a time between the file and the stream.
const PIECE: usize = 1 << 20;

pub struct Front {
    len: u64,
    store: Store,
}

enum Store {
    Memory(Mutex<Vec<u8>>),
    File(File),
}

impl Front {
    /// A front of `len` zero bytes. Where no temporary file can be made (a read-only
    /// TMPDIR), a large front is held in memory after all, as it was before: pages of it
    /// never written (the unallocated part of a VHDX BAT) cost nothing there.
    pub fn new(len: u64) -> Front {
        let in_memory = || Store::Memory(Mutex::new(vec![0; len as usize]));
        let store = if len <= IN_MEMORY {
            in_memory()
        } else {
            let dir = std::env::temp_dir();
            match unnamed_file(&dir).and_then(|f| f.set_len(len).map(|()| f)) {
                Ok(file) => Store::File(file),
                Err(e) => {
                    tracing::warn!(
                        "no temporary file in {} for the image's {len}-byte front ({e}); holding it in memory",
                        dir.display()
                    );
                    in_memory()
                }
            }
        };
        Front { len, store }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Writes the part of `buf` that falls inside the front; the rest is dropped.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let n = self.inside(offset, buf.len());
        if n == 0 {
            return Ok(());
        }
        match &self.store {
            Store::Memory(bytes) => {
                let mut bytes = bytes.lock().unwrap_or_else(|e| e.into_inner());
                bytes[offset as usize..offset as usize + n].copy_from_slice(&buf[..n]);
                Ok(())
            }
            Store::File(f) => f.write_all_at(&buf[..n], offset).map_err(|e| {
                Error::output_io(&std::env::temp_dir(), "the temporary front file", e)
            }),
        }
    }

    /// Reads `buf` at `offset`; bytes past the front read as zeros.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let n = self.inside(offset, buf.len());
        buf[n..].fill(0);
        if n == 0 {
            return Ok(());
        }
        match &self.store {
            Store::Memory(bytes) => {
                let bytes = bytes.lock().unwrap_or_else(|e| e.into_inner());
                buf[..n].copy_from_slice(&bytes[offset as usize..offset as usize + n]);
                Ok(())
            }
            Store::File(f) => f.read_exact_at(&mut buf[..n], offset).map_err(|e| {
                Error::output_io(&std::env::temp_dir(), "the temporary front file", e)
            }),
        }
    }

    /// Whether `buf` lies wholly inside the front and equals it there.
    pub fn holds(&self, buf: &[u8], offset: u64) -> Result<bool> {
        if self.inside(offset, buf.len()) < buf.len() {
            return Ok(false);
        }
        let mut have = vec![0u8; buf.len().min(PIECE)];
        for (i, want) in buf.chunks(PIECE).enumerate() {
            let have = &mut have[..want.len()];
            self.read_at(have, offset + (i * PIECE) as u64)?;
            if have != want {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Hands the whole front to `send`, a piece at a time.
    pub fn send(&self, mut send: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut buf = vec![0u8; (self.len as usize).min(PIECE)];
        let mut at = 0;
        while at < self.len {
            let n = (self.len - at).min(PIECE as u64) as usize;
            self.read_at(&mut buf[..n], at)?;
            send(&buf[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    /// How many of `len` bytes at `offset` lie inside the front.
    fn inside(&self, offset: u64, len: usize) -> usize {
        self.len.saturating_sub(offset).min(len as u64) as usize
    }
}

/// A file in `dir` with no name (O_TMPFILE), or, where the file system lacks that, one
/// created under a fresh name and unlinked at once: either way nothing is left behind.
fn unnamed_file(dir: &Path) -> std::io::Result<File> {
    let unnamed = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match unnamed {
        Ok(f) => Ok(f),
        Err(e)
            if e.raw_os_error() == Some(libc::EISDIR)
                || e.raw_os_error() == Some(libc::EOPNOTSUPP) =>
        {
            let path = dir.join(format!(
                ".vdconv-front-{}-{}.tmp",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(f)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(front: &Front) {
        front.write_at(b"abc", 1).unwrap();
        // Past the end: clipped, as a file writer's data beyond the front is dropped.
        front.write_at(b"xyz", front.len() - 1).unwrap();
        let mut buf = [9u8; 5];
        front.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"\0abc\0");
        front.read_at(&mut buf, front.len() - 1).unwrap();
        assert_eq!(&buf, b"x\0\0\0\0");
        assert!(front.holds(b"abc", 1).unwrap());
        assert!(!front.holds(b"abd", 1).unwrap());
        assert!(!front.holds(b"x\0", front.len() - 1).unwrap());
        let mut sent = Vec::new();
        front
            .send(|piece| {
                sent.extend_from_slice(piece);
                Ok(())
            })
            .unwrap();
        assert_eq!(sent.len() as u64, front.len());
        assert_eq!(&sent[..4], b"\0abc");
        assert_eq!(*sent.last().unwrap(), b'x');
    }

    #[test]
    fn small_fronts_live_in_memory_and_large_ones_in_a_file() {
        let small = Front::new(4096);
        assert!(matches!(small.store, Store::Memory(_)));
        exercise(&small);
        let large = Front::new(IN_MEMORY + 3 * 4096);
        assert!(matches!(large.store, Store::File(_)));
        exercise(&large);
    }
}

//! Where image writers put their bytes, and what every writer offers the pipeline. The
//! formats write through [`Sink`] and know nothing of temporary files, renames or stdout;
//! the output layer implements it.

use std::fs::File;
use std::path::Path;

use crate::error::Result;
use crate::identity::Identity;
use crate::zero::is_zero;

/// A destination addressed by byte offset.
pub trait Sink: Send + Sync {
    /// The destination as the user named it (for messages).
    fn path(&self) -> &Path;

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;

    /// Reads back what was written (a writer reloading a table window it flushed).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    fn set_len(&self, len: u64) -> Result<()>;

    /// Copies `len` bytes of `src` at `src_offset` to `offset`, inside the kernel where the
    /// file systems allow it.
    fn copy_from(&self, src: &File, src_offset: u64, offset: u64, len: u64) -> Result<()>;

    /// Granularity at which all-zero pieces are left unwritten (holes, which read as
    /// zeros); 0 to write every byte.
    fn hole_piece(&self) -> usize;

    /// Writes `buf` at `offset`, skipping `hole_piece()`-sized pieces that are all zeros.
    /// Returns the bytes written.
    fn write_nonzero(&self, buf: &[u8], offset: u64) -> Result<u64> {
        let piece = self.hole_piece();
        if piece == 0 {
            self.write_at(buf, offset)?;
            return Ok(buf.len() as u64);
        }
        let mut written = 0u64;
        let mut start: Option<usize> = None;
        let mut pos = 0;
        while pos < buf.len() {
            let end = (pos + piece).min(buf.len());
            let zero = is_zero(&buf[pos..end]);
            match (zero, start) {
                (false, None) => start = Some(pos),
                (true, Some(s)) => {
                    self.write_at(&buf[s..pos], offset + s as u64)?;
                    written += (pos - s) as u64;
                    start = None;
                }
                _ => {}
            }
            pos = end;
        }
        if let Some(s) = start {
            self.write_at(&buf[s..], offset + s as u64)?;
            written += (buf.len() - s) as u64;
        }
        Ok(written)
    }
}

/// A writer owns its file's layout: it places the virtual disk's non-zero ranges, which
/// arrive in increasing order, and writes its tables and trailers in `finish`.
pub trait ImageWriter: Send {
    /// Pushes to `out` the (file offset, length) pieces where `len` bytes at virtual
    /// `offset` go, allocating blocks on first use. Ranges never placed read as zeros.
    fn place(&mut self, offset: u64, len: u64, out: &mut Vec<(u64, u64)>) -> Result<()>;

    /// Where the bytes go.
    fn sink(&self) -> &dyn Sink;

    /// Writes the disk's bytes `data` at virtual `offset`; all-zero pieces stay holes.
    /// Returns the bytes written.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<u64> {
        let mut pieces = Vec::new();
        self.place(offset, data.len() as u64, &mut pieces)?;
        let mut done = 0usize;
        let mut written = 0;
        for (at, len) in pieces {
            written += self
                .sink()
                .write_nonzero(&data[done..done + len as usize], at)?;
            done += len as usize;
        }
        Ok(written)
    }

    /// Copies `len` bytes of the disk at virtual `offset` from `src` at `src_offset`.
    fn copy(&mut self, offset: u64, len: u64, src: &File, src_offset: u64) -> Result<()> {
        let mut pieces = Vec::new();
        self.place(offset, len, &mut pieces)?;
        let mut done = 0u64;
        for (at, n) in pieces {
            self.sink().copy_from(src, src_offset + done, at, n)?;
            done += n;
        }
        Ok(())
    }

    /// Writes what remains (tables, footers), carrying `identity`'s ids and time. The
    /// sink's owner then commits it.
    fn finish(self: Box<Self>, identity: Identity) -> Result<()>;
}

/// Calls `f(block, offset within the block, length)` for each block's piece of a range.
pub fn for_each_block(
    offset: u64,
    len: u64,
    block_size: u64,
    mut f: impl FnMut(u64, u64, u64) -> Result<()>,
) -> Result<()> {
    let end = offset + len;
    let mut pos = offset;
    while pos < end {
        let within = pos % block_size;
        let n = (block_size - within).min(end - pos);
        f(pos / block_size, within, n)?;
        pos += n;
    }
    Ok(())
}

/// A table of entries in the sink, written a window at a time as entries are set: a
/// writer's BAT never has to be held whole (64 TiB in 1 MiB blocks is 512 MiB of entries).
/// Windows never set are left as they are in the file (holes read as zeros).
pub struct TableWriter {
    /// File offset of entry 0.
    offset: u64,
    entry_bytes: usize,
    count: u64,
    /// (first index, encoded bytes, dirty).
    window: Option<(u64, Vec<u8>, bool)>,
    /// Encoded value of an entry never set, for windows first touched.
    fill: Vec<u8>,
    /// Which windows were ever written (so a window re-entered is read back).
    written: Vec<bool>,
}

/// Entries per window: 1 MiB of 8-byte entries.
const WRITE_WINDOW: u64 = 128 * 1024;

impl TableWriter {
    /// `fill` is the encoding of an entry never set (e.g. 0xFFFFFFFF for a VHD BAT).
    pub fn new(offset: u64, count: u64, fill: Vec<u8>) -> Self {
        let windows = count.div_ceil(WRITE_WINDOW) as usize;
        TableWriter {
            offset,
            entry_bytes: fill.len(),
            count,
            window: None,
            fill,
            written: vec![false; windows],
        }
    }

    /// Entry `index` as encoded bytes (the fill value when never set).
    pub fn get(&mut self, sink: &dyn Sink, index: u64) -> Result<&[u8]> {
        let at = self.load(sink, index)?;
        let (_, bytes, _) = self.window.as_ref().expect("window just loaded");
        Ok(&bytes[at..at + self.entry_bytes])
    }

    /// Sets entry `index` to `encoded` (entry_bytes long).
    pub fn set(&mut self, sink: &dyn Sink, index: u64, encoded: &[u8]) -> Result<()> {
        debug_assert_eq!(encoded.len(), self.entry_bytes);
        let at = self.load(sink, index)?;
        let (_, bytes, dirty) = self.window.as_mut().expect("window just loaded");
        bytes[at..at + encoded.len()].copy_from_slice(encoded);
        *dirty = true;
        Ok(())
    }

    /// Makes the window holding `index` the one in hand (reading it back when it was
    /// flushed before); returns the entry's byte position in it.
    fn load(&mut self, sink: &dyn Sink, index: u64) -> Result<usize> {
        debug_assert!(index < self.count);
        let first = index / WRITE_WINDOW * WRITE_WINDOW;
        if self.window.as_ref().is_none_or(|(f, _, _)| *f != first) {
            self.flush(sink)?;
            let n = WRITE_WINDOW.min(self.count - first) as usize;
            let mut bytes = Vec::with_capacity(n * self.entry_bytes);
            if self.written[(first / WRITE_WINDOW) as usize] {
                bytes.resize(n * self.entry_bytes, 0);
                sink.read_at(&mut bytes, self.offset + first * self.entry_bytes as u64)?;
            } else {
                for _ in 0..n {
                    bytes.extend_from_slice(&self.fill);
                }
            }
            self.window = Some((first, bytes, false));
        }
        Ok((index - first) as usize * self.entry_bytes)
    }

    /// Writes the window in hand, if it changed.
    pub fn flush(&mut self, sink: &dyn Sink) -> Result<()> {
        if let Some((first, bytes, dirty)) = self.window.as_mut()
            && *dirty
        {
            sink.write_at(bytes, self.offset + *first * self.entry_bytes as u64)?;
            self.written[(*first / WRITE_WINDOW) as usize] = true;
            *dirty = false;
        }
        Ok(())
    }

    /// Writes every window never written with the fill value (for tables whose unset
    /// entries are not zero bytes), then flushes.
    pub fn finish(mut self, sink: &dyn Sink) -> Result<()> {
        self.flush(sink)?;
        if self.fill.iter().all(|&b| b == 0) {
            return Ok(());
        }
        for w in 0..self.written.len() as u64 {
            if self.written[w as usize] {
                continue;
            }
            let first = w * WRITE_WINDOW;
            let n = WRITE_WINDOW.min(self.count - first) as usize;
            let bytes: Vec<u8> = self
                .fill
                .iter()
                .copied()
                .cycle()
                .take(n * self.entry_bytes)
                .collect();
            sink.write_at(&bytes, self.offset + first * self.entry_bytes as u64)?;
        }
        Ok(())
    }
}

impl<T: Sink + ?Sized> Sink for std::sync::Arc<T> {
    fn path(&self) -> &Path {
        (**self).path()
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        (**self).write_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        (**self).read_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> Result<()> {
        (**self).set_len(len)
    }
    fn copy_from(&self, src: &File, src_offset: u64, offset: u64, len: u64) -> Result<()> {
        (**self).copy_from(src, src_offset, offset, len)
    }
    fn hole_piece(&self) -> usize {
        (**self).hole_piece()
    }
}

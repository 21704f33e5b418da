//! What every output format offers the conversion pipeline.

use std::fs::File;

use crate::error::Result;
use crate::output::Output;

/// A writer owns its file's layout: it places the virtual disk's non-zero ranges, which
/// arrive in increasing order, and writes its tables and trailers in `finish`.
pub trait ImageWriter: Send {
    /// Pushes to `out` the (file offset, length) pieces where `len` bytes at virtual
    /// `offset` go, allocating blocks on first use. Ranges never placed read as zeros.
    fn place(&mut self, offset: u64, len: u64, out: &mut Vec<(u64, u64)>) -> Result<()>;

    /// The file being written.
    fn output(&self) -> &Output;

    /// Writes the disk's bytes `data` at virtual `offset`; all-zero pieces stay holes.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let mut pieces = Vec::new();
        self.place(offset, data.len() as u64, &mut pieces)?;
        let mut done = 0usize;
        for (at, len) in pieces {
            self.output()
                .write_nonzero(&data[done..done + len as usize], at)?;
            done += len as usize;
        }
        Ok(())
    }

    /// Copies `len` bytes of the disk at virtual `offset` from `src` at `src_offset`,
    /// inside the kernel where the file systems allow it.
    fn copy(&mut self, offset: u64, len: u64, src: &File, src_offset: u64) -> Result<()> {
        let mut pieces = Vec::new();
        self.place(offset, len, &mut pieces)?;
        let mut done = 0u64;
        for (at, n) in pieces {
            self.output().copy_from(src, src_offset + done, at, n)?;
            done += n;
        }
        Ok(())
    }

    /// Writes what remains (tables, footers) and hands back the output, ready to commit.
    fn finish(self: Box<Self>) -> Result<Output>;
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

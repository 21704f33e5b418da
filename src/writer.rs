//! What every output format offers the conversion pipeline.

use crate::error::Result;
use crate::output::Output;

/// A writer owns its file's layout: it receives the virtual disk's non-zero pieces in
/// increasing order and writes its tables and trailers in `finish`.
pub trait ImageWriter {
    /// Stores `data` at virtual offset `offset`. Calls come in increasing, non-overlapping
    /// order; ranges never written read as zeros.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<()>;

    /// Writes what remains (tables, footers) and hands back the output, ready to commit.
    fn finish(self: Box<Self>) -> Result<Output>;
}

/// Calls `f(block, offset within the block, piece)` for each block-sized piece of a write.
pub fn for_each_block(
    offset: u64,
    data: &[u8],
    block_size: u64,
    mut f: impl FnMut(u64, u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut done = 0usize;
    while done < data.len() {
        let pos = offset + done as u64;
        let within = pos % block_size;
        let n = ((block_size - within) as usize).min(data.len() - done);
        f(pos / block_size, within, &data[done..done + n])?;
        done += n;
    }
    Ok(())
}

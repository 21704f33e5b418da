//! What every output format offers the conversion pipeline.

use crate::error::Result;
use crate::output::Output;

/// A writer owns its file's layout: it receives the virtual disk in units, in increasing
/// order, and writes its tables and trailers in `finish`.
pub trait ImageWriter {
    /// Bytes per unit; every unit but the last is whole.
    fn unit(&self) -> u64;

    /// Stores unit `index`, whose bytes are `data` (not all zero). Units never offered
    /// read as zeros.
    fn write_unit(&mut self, index: u64, data: &[u8]) -> Result<()>;

    /// Writes what remains (tables, footers) after the last unit and hands back the
    /// output, ready to commit.
    fn finish(self: Box<Self>) -> Result<Output>;
}

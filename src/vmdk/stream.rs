//! streamOptimized specifics: compressed grain records, metadata markers, and finding the
//! footer of an ESXi/ovftool export whose header says "grain directory at end".

use flate2::{Decompress, FlushDecompress, Status};

use crate::disk::InputFile;
use crate::error::{Error, Result};
use crate::vmdk::header::{MAGIC, SECTOR, SparseHeader};

/// Marker types.
const MARKER_EOS: u32 = 0;
const MARKER_FOOTER: u32 = 3;

/// How far back from the end of the file to look for the footer before walking markers
/// forward: covers tar padding after an OVA member and other short trailers.
const FOOTER_SCAN_BYTES: u64 = 1 << 20;

/// Finds the footer (a header copy holding the real gdOffset). Returns its file offset.
pub fn find_footer(file: &InputFile, over_head: u64) -> Result<u64> {
    if let Some(at) = scan_backwards(file)? {
        return Ok(at);
    }
    walk_markers(file, over_head)?.ok_or_else(|| {
        Error::corrupt(
            file.path(),
            "stream footer",
            file.len(),
            "header says the grain directory is at the end, but no footer marker was found",
        )
    })
}

/// Looks for a footer marker sector followed by a `KDMV` sector near the end of the file.
fn scan_backwards(file: &InputFile) -> Result<Option<u64>> {
    let end = file.len() / SECTOR * SECTOR;
    let start = end.saturating_sub(FOOTER_SCAN_BYTES);
    let mut buf = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut buf, start, "stream footer")?;
    let sectors = buf.len() / SECTOR as usize;
    for i in (1..sectors).rev() {
        let at = i * SECTOR as usize;
        if &buf[at..at + 4] == MAGIC && is_footer_marker(&buf[at - SECTOR as usize..at]) {
            return Ok(Some(start + at as u64));
        }
    }
    Ok(None)
}

fn is_footer_marker(sector: &[u8]) -> bool {
    let size = u32::from_le_bytes(sector[8..12].try_into().unwrap());
    let kind = u32::from_le_bytes(sector[12..16].try_into().unwrap());
    size == 0 && kind == MARKER_FOOTER
}

/// Walks grain records and markers from the end of the metadata to the footer marker.
/// Every step advances at least one sector, so the walk ends.
fn walk_markers(file: &InputFile, over_head: u64) -> Result<Option<u64>> {
    let mut pos = over_head.max(1).saturating_mul(SECTOR);
    let mut head = [0u8; 16];
    while pos.saturating_add(SECTOR) <= file.len() {
        file.read_exact_at(&mut head, pos, "stream marker")?;
        let num_sectors = u64::from_le_bytes(head[0..8].try_into().unwrap());
        let size = u32::from_le_bytes(head[8..12].try_into().unwrap());
        let kind = u32::from_le_bytes(head[12..16].try_into().unwrap());
        if size != 0 {
            // A compressed grain: 12 bytes of header, then `size` bytes, padded to a sector.
            pos += (12 + u64::from(size)).div_ceil(SECTOR) * SECTOR;
            continue;
        }
        match kind {
            MARKER_FOOTER => return Ok(Some(pos + SECTOR)),
            MARKER_EOS => return Ok(None),
            _ => {
                let skip = num_sectors.saturating_add(1).saturating_mul(SECTOR);
                pos = pos.saturating_add(skip);
            }
        }
    }
    Ok(None)
}

/// A reusable zlib decoder and the buffer compressed bytes are read into.
pub struct Inflater {
    decoder: Decompress,
    compressed: Vec<u8>,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            decoder: Decompress::new(true),
            compressed: Vec::new(),
        }
    }
}

/// Reads a compressed grain record at `offset`, checks it is the grain expected at virtual
/// sector `lba`, and inflates it into `out`, which must be filled at least to `needed`
/// bytes. Returns the inflated length.
pub fn read_compressed_grain(
    file: &InputFile,
    header: &SparseHeader,
    offset: u64,
    lba: u64,
    out: &mut [u8],
    needed: usize,
    inflater: &mut Inflater,
) -> Result<usize> {
    let mut head = [0u8; 12];
    file.read_exact_at(&mut head, offset, "compressed grain")?;
    let found_lba = u64::from_le_bytes(head[0..8].try_into().unwrap());
    let size = u32::from_le_bytes(head[8..12].try_into().unwrap()) as u64;
    let bad = |detail: String| Error::corrupt(file.path(), "compressed grain", offset, detail);
    if size == 0 {
        return Err(bad(
            "a grain table entry points at a marker, not a grain".into()
        ));
    }
    if found_lba != lba {
        return Err(bad(format!(
            "grain is for sector {found_lba}, but the grain table places it at sector {lba}"
        )));
    }
    // Deflate expands incompressible input by a few bytes per 16 KiB block at most.
    let limit = header.grain_bytes() + header.grain_bytes() / 8 + 4096;
    if size > limit {
        return Err(bad(format!(
            "compressed size {size} exceeds the {limit}-byte bound for a {}-byte grain",
            header.grain_bytes()
        )));
    }
    let Inflater {
        decoder,
        compressed,
    } = inflater;
    compressed.resize(size as usize, 0);
    file.read_exact_at(compressed, offset + 12, "compressed grain")?;
    decoder.reset(true);
    let status = decoder
        .decompress(compressed, out, FlushDecompress::Finish)
        .map_err(|e| bad(format!("deflate stream is corrupt: {e}")))?;
    let produced = decoder.total_out() as usize;
    match status {
        Status::StreamEnd if produced >= needed => Ok(produced),
        Status::StreamEnd => Err(bad(format!(
            "inflates to {produced} bytes, expected {needed}"
        ))),
        _ if produced == out.len() => Err(bad(format!(
            "inflates to more than the grain size of {} bytes",
            out.len()
        ))),
        _ => Err(bad("deflate stream is truncated".into())),
    }
}

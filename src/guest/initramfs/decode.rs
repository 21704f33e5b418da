//! Recognising a compressed member by its magic (the kernel's lib/decompress.c table) and
//! streaming it through a pure-Rust decoder into the cpio parser.

use std::io::{self, Read, Write};

use super::cpio::CpioParser;
use super::{Budget, Compression};
use crate::guest::error::{GuestError, GuestResult};

/// Decoded bytes handed to the parser at a time.
const CHUNK: usize = 64 * 1024;

/// The largest XZ or LZMA dictionary (the decoder's window) accepted, in KiB: `xz -9`
/// uses 64 MiB, the initramfs builders 1 to 32 MiB. The decoders stream: memory is the
/// window, not the output. (lzma-rs, used before, held an XZ member's whole output, and
/// an LZMA member's output up to the window its header declares, up to 4 GiB, before
/// the first byte reached the budget: an XZ member of 512 MiB of zeros peaked at 1 GiB.)
const MAX_DICTIONARY_KIB: u32 = 128 * 1024;

pub fn detect(data: &[u8]) -> GuestResult<Compression> {
    let magic = data.get(..2).unwrap_or(data);
    Ok(match magic {
        [0x1f, 0x8b] => Compression::Gzip,
        [0x28, 0xb5] => Compression::Zstd,
        [0xfd, 0x37] => Compression::Xz,
        [0x5d, 0x00] => Compression::Lzma,
        [0x02, 0x21] => Compression::Lz4,
        [0x1f, 0x9e] => return Err(unsupported("old-style gzip (1f 9e)")),
        [0x42, 0x5a] => return Err(unsupported("bzip2")),
        [0x89, 0x4c] => return Err(unsupported("lzo")),
        _ => {
            return Err(GuestError::Corrupt {
                structure: "initramfs",
                offset: 0,
                detail: format!(
                    "member starts with {magic:02x?}: neither cpio nor a known compression"
                ),
            });
        }
    })
}

fn unsupported(what: &str) -> GuestError {
    GuestError::Unsupported(format!(
        "{what}-compressed initramfs member: no pure-Rust decoder here, not read"
    ))
}

/// Decompresses the member at the start of `data` into `parser`. Returns the compressed
/// bytes consumed and the decompressed bytes produced.
pub fn decompress(
    compression: Compression,
    data: &[u8],
    parser: &mut CpioParser<'_>,
    budget: &mut Budget,
    cancelled: &dyn Fn() -> bool,
    notes: &mut Vec<String>,
) -> GuestResult<(usize, u64)> {
    let mut input = data;
    let mut sink = Sink {
        parser,
        budget,
        cancelled,
        produced: 0,
        error: None,
    };
    let outcome: io::Result<()> = match compression {
        Compression::Gzip => pump(flate2::bufread::GzDecoder::new(&mut input), &mut sink),
        Compression::Zstd => match ruzstd::decoding::StreamingDecoder::new(&mut input) {
            Ok(decoder) => pump(decoder, &mut sink),
            Err(e) => Err(io::Error::other(e.to_string())),
        },
        Compression::Lz4 => pump(lz4_flex::frame::FrameDecoder::new(&mut input), &mut sink),
        Compression::Xz => pump(
            lzma_rust2::XzReader::new_mem_limit(&mut input, false, MAX_DICTIONARY_KIB),
            &mut sink,
        ),
        Compression::Lzma => {
            match lzma_rust2::LzmaReader::new_mem_limit(&mut input, MAX_DICTIONARY_KIB, None) {
                Ok(decoder) => pump(decoder, &mut sink),
                Err(e) => Err(e),
            }
        }
        Compression::None => Ok(()),
    };
    // A limit, a parse error or cancellation raised inside the sink wins over the
    // decoder's view of it.
    if let Some(e) = sink.error.take() {
        return Err(e);
    }
    let produced = sink.produced;
    let name = format!("{compression:?}").to_lowercase();
    match outcome {
        Ok(()) => Ok((data.len() - input.len(), produced)),
        // The window the member's header asks for, refused before it is allocated.
        Err(e) if e.kind() == io::ErrorKind::OutOfMemory => Err(GuestError::Limit(format!(
            "{name} member needs a dictionary over {} MiB (the limit); not read",
            MAX_DICTIONARY_KIB / 1024
        ))),
        // What the kernel unpacked before a damaged tail is still in place; tolerate a
        // decoder that fails after a whole archive (legacy lz4 meeting padding does).
        Err(e) if parser_complete(sink.parser) => {
            notes.push(format!(
                "{name} member: {e} after its cpio trailer; rest ignored"
            ));
            Ok((data.len(), produced))
        }
        Err(e) => Err(GuestError::Corrupt {
            structure: "initramfs",
            offset: (data.len() - input.len()) as u64,
            detail: format!("{name} member does not decompress: {e}"),
        }),
    }
}

fn parser_complete(parser: &CpioParser<'_>) -> bool {
    parser.trailers > 0 && parser.at_boundary()
}

/// Reads a decoder dry into the sink.
fn pump<R: Read>(mut decoder: R, sink: &mut Sink<'_, '_>) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sink.write_all(buf.get(..n).unwrap_or_default())?;
    }
}

/// The Write end decoders push into: counts against the budget, feeds the parser, and
/// keeps the typed error that stopped it.
struct Sink<'p, 'l> {
    parser: &'p mut CpioParser<'l>,
    budget: &'p mut Budget,
    cancelled: &'p dyn Fn() -> bool,
    produced: u64,
    error: Option<GuestError>,
}

impl Sink<'_, '_> {
    fn absorb(&mut self, buf: &[u8]) -> GuestResult<()> {
        if (self.cancelled)() {
            return Err(GuestError::Interrupted);
        }
        self.budget.take(buf.len() as u64)?;
        self.produced += buf.len() as u64;
        self.parser.feed(buf)?;
        Ok(())
    }
}

impl Write for Sink<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.error.is_some() {
            return Err(io::Error::other("stopped"));
        }
        match self.absorb(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                let msg = e.to_string();
                self.error = Some(e);
                Err(io::Error::other(msg))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

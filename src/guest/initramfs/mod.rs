//! Linux initramfs images: which files they hold, read the way the kernel unpacks them
//! (Documentation/driver-api/early-userspace/buffer-format.rst, GUEST.md 1.4):
//!
//! ```text
//! initramfs := ("\0" | cpio_archive | cpio_compressed_archive)*
//! ```
//!
//! so uncompressed newc archives (early microcode), zero padding, then compressed members
//! recognised by their magic (gzip, zstd, xz, lzma, legacy lz4), each holding cpio
//! archives. Decompressed bytes are fed to a streaming cpio parser and never held; the
//! decompressed total, the entries and every header's sizes are bounded.

mod cpio;
mod decode;

use serde::Serialize;

use super::error::{GuestError, GuestResult};
use cpio::CpioParser;
pub use cpio::MAX_CAPTURE;

/// Bounds on the work of listing one image.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Decompressed bytes over all members; past it the listing fails (a bomb).
    pub max_decompressed: u64,
    /// Entries over all archives.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed: 512 << 20,
            max_entries: 200_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One file of the image, its name without a leading `./` or `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub kind: EntryKind,
}

/// How one member of the image was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Lzma,
    Lz4,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Byte offset in the image where the member starts.
    pub offset: u64,
    pub compression: Compression,
    /// Bytes of cpio data the member held.
    pub decompressed: u64,
}

/// What an image holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Listing {
    pub members: Vec<Member>,
    pub entries: Vec<Entry>,
    /// Contents of the small files the caller asked for (at most `MAX_CAPTURE` bytes each).
    #[serde(skip)]
    pub captured: Vec<(String, Vec<u8>)>,
    /// Oddities tolerated (bytes after the last member that do not decode, ...).
    pub notes: Vec<String>,
}

impl Listing {
    /// The entry with this name (without leading `/`), if any.
    pub fn find(&self, name: &str) -> Option<&Entry> {
        let name = name.trim_start_matches('/');
        self.entries.iter().find(|e| e.name == name)
    }
}

/// Lists an initramfs image. `capture` says which small files' contents to keep (for
/// example `etc/modprobe.d/*`); `cancelled` is asked between pieces of work.
pub fn list(
    image: &[u8],
    limits: &Limits,
    capture: &dyn Fn(&str) -> bool,
    cancelled: &dyn Fn() -> bool,
) -> GuestResult<Listing> {
    let mut listing = Listing::default();
    let mut budget = Budget {
        used: 0,
        limit: limits.max_decompressed,
    };
    let mut offset = 0usize;
    while let Some(rest) = image.get(offset..).filter(|r| !r.is_empty()) {
        if cancelled() {
            return Err(GuestError::Interrupted);
        }
        let first = rest.first().copied().unwrap_or(0);
        if first == 0 {
            offset += rest.iter().take_while(|&&b| b == 0).count();
            continue;
        }
        let compression = if first == b'0' && offset % 4 == 0 {
            Compression::None
        } else {
            match decode::detect(rest) {
                Ok(c) => c,
                Err(e) if !listing.members.is_empty() => {
                    // The kernel would fail here too, after unpacking what came before;
                    // what was listed is still what it would have unpacked.
                    listing
                        .notes
                        .push(format!("at offset {offset}: {e}; the rest is not read"));
                    break;
                }
                Err(e) => return Err(e),
            }
        };
        let mut parser = CpioParser::new(limits, capture, compression == Compression::None);
        let member_start = offset;
        let (consumed, decompressed) = if compression == Compression::None {
            let used = parser.feed(rest)?;
            budget.take(used as u64)?;
            (used, used as u64)
        } else {
            decode::decompress(
                compression,
                rest,
                &mut parser,
                &mut budget,
                cancelled,
                &mut listing.notes,
            )?
        };
        if !parser.at_boundary() {
            return Err(GuestError::Corrupt {
                structure: "initramfs",
                offset: member_start as u64,
                detail: format!("{compression:?} member ends inside a cpio entry (truncated)")
                    .to_lowercase(),
            });
        }
        if parser.trailers == 0 {
            listing.notes.push(format!(
                "member at offset {member_start} has no cpio trailer"
            ));
        }
        listing.entries.append(&mut parser.entries);
        listing.captured.append(&mut parser.captured);
        listing.members.push(Member {
            offset: member_start as u64,
            compression,
            decompressed,
        });
        if listing.entries.len() > limits.max_entries {
            return Err(GuestError::Limit(format!(
                "initramfs holds more than {} entries",
                limits.max_entries
            )));
        }
        // A decoder that cannot tell where its stream ends consumes everything.
        offset += consumed.max(1);
    }
    Ok(listing)
}

/// Decompressed bytes spent so far against the limit.
pub(crate) struct Budget {
    used: u64,
    limit: u64,
}

impl Budget {
    pub(crate) fn take(&mut self, bytes: u64) -> GuestResult<()> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(GuestError::Limit(format!(
                "initramfs decompresses to more than {} bytes (the limit); not read further",
                self.limit
            )));
        }
        Ok(())
    }
}

/// Fuzz entry point: lists arbitrary bytes with small limits. Never panics.
///
/// The decompression limit is 1 MiB here (512 MiB in use): the paths are the same, and
/// fuzzed streams that expand to the limit cost 1 MiB of decoding per input, not 16.
pub fn fuzz_initramfs(bytes: &[u8]) {
    let limits = Limits {
        max_decompressed: 1 << 20,
        max_entries: 10_000,
    };
    let _ = list(bytes, &limits, &|name| name.starts_with("etc/"), &|| false);
}

//! Reading a tar archive in place, never unpacking it: an index of members (name, where
//! the data lies, size) from a file, or one member after another from a pipe.
//!
//! Handles the flavours OVAs are written in: POSIX ustar (name split into prefix and
//! name), GNU (long names in `L` records, base-256 sizes) and pax (`x` records with `path`
//! and `size`). GNU sparse members are refused: their data is not the file's bytes.
//!
//! Everything read from a header is hostile: checksums are verified, numbers are checked
//! for overflow, extension records and member counts are bounded, a member whose data runs
//! past the end of the file is an error naming it, and names that are absolute or have a
//! `..` component are refused.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::error::{OvaError, OvaResult, Place};
use super::names;

/// Tar's unit: headers and data padding.
pub const BLOCK: u64 = 512;
/// At most this many members (a package has a handful; chunked disks a few thousand).
pub const MAX_MEMBERS: usize = 65_536;
/// GNU long-name and pax extended-header records are read into memory up to this size.
pub const MAX_EXTENSION: u64 = 64 << 10;

/// What a member is. Only regular files carry package files; the rest are listed so the
/// caller can say what was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    File,
    Directory,
    Symlink,
    HardLink,
    /// Devices, FIFOs, vendor types: the typeflag byte.
    Other(u8),
}

/// One member of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Normalised: relative, `/`-separated, no `.` or `..` components.
    pub name: String,
    pub kind: MemberKind,
    /// Where its first header (including GNU/pax extension headers) starts.
    pub header_offset: u64,
    /// Where its data starts in the archive; `size` bytes from there are the file.
    pub offset: u64,
    pub size: u64,
}

impl Member {
    /// The archive offset just past the member's padded data: the next header.
    fn next_header(&self) -> u64 {
        self.offset
            .saturating_add(self.size.div_ceil(BLOCK).saturating_mul(BLOCK))
    }
}

/// Every member of an archive read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarIndex {
    pub members: Vec<Member>,
    /// Anomalies tolerated: no end-of-archive blocks, a lone zero block.
    pub warnings: Vec<String>,
}

impl TarIndex {
    /// The regular-file member with this normalised name.
    pub fn file(&self, name: &str) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| m.kind == MemberKind::File && m.name == name)
    }
}

/// Indexes the members of the tar archive in `file` (its path only names it in errors).
/// Reads only headers: one 512-byte block per member plus extension records.
pub fn index_file(file: &File, path: &Path) -> OvaResult<TarIndex> {
    let len = file
        .metadata()
        .map_err(|e| OvaError::io(Place::package(path), "the archive's metadata", e))?
        .len();
    index(
        &mut Positioned {
            at: file,
            pos: 0,
            len,
        },
        path,
    )
}

/// As `index_file`, over bytes in memory (tests and fuzzing).
pub fn index_bytes(bytes: &[u8], path: &Path) -> OvaResult<TarIndex> {
    index(
        &mut Positioned {
            at: bytes,
            pos: 0,
            len: bytes.len() as u64,
        },
        path,
    )
}

fn index<A: ReadAt>(src: &mut Positioned<A>, path: &Path) -> OvaResult<TarIndex> {
    let mut walker = Walker::new(path);
    let mut members = Vec::new();
    while let Some(member) = walker.next_header(src)? {
        // A member runs past the end: named here, before anyone reads it.
        let end = member.offset.checked_add(member.size);
        if end.is_none_or(|end| end > src.len) {
            return Err(OvaError::corrupt(
                Place::member(path, &member.name),
                "tar member",
                member.header_offset,
                format!(
                    "declares {} bytes of data at offset {}, past the end of the archive ({} bytes)",
                    member.size, member.offset, src.len
                ),
            ));
        }
        src.pos = member.next_header();
        members.push(member);
    }
    Ok(TarIndex {
        members,
        warnings: walker.warnings,
    })
}

/// A tar archive read front to back from a pipe: one member at a time, each readable
/// exactly to its end, then skipped past. Memory is one block plus extension records.
pub struct TarStream<R> {
    src: Streamed<R>,
    walker: Walker,
    /// Data bytes of the current member not yet read, and its padding.
    remaining: u64,
    padding: u64,
    current: Option<String>,
}

impl<R: Read> TarStream<R> {
    /// `package` names the stream in errors.
    pub fn new(reader: R, package: &Path) -> Self {
        TarStream {
            src: Streamed {
                inner: reader,
                pos: 0,
            },
            walker: Walker::new(package),
            remaining: 0,
            padding: 0,
            current: None,
        }
    }

    /// The next member, after skipping whatever of the previous one was not read.
    /// None at the end of the archive.
    pub fn next_member(&mut self) -> OvaResult<Option<MemberReader<'_, R>>> {
        Ok(self.next_header()?.map(|member| MemberReader {
            stream: self,
            member,
        }))
    }

    /// As `next_member`, returning only the header; the data is then read with
    /// `read_current` (or skipped by the next call).
    pub fn next_header(&mut self) -> OvaResult<Option<Member>> {
        self.skip_rest()?;
        let Some(member) = self.walker.next_header(&mut self.src)? else {
            return Ok(None);
        };
        self.remaining = member.size;
        self.padding = member.size.div_ceil(BLOCK) * BLOCK - member.size;
        self.current = Some(member.name.clone());
        Ok(Some(member))
    }

    /// A reader of the current member's remaining data (after `next_header`).
    pub fn current_reader(&mut self, member: Member) -> MemberReader<'_, R> {
        MemberReader {
            stream: self,
            member,
        }
    }

    /// Anomalies tolerated so far.
    pub fn warnings(&self) -> &[String] {
        &self.walker.warnings
    }

    /// Bytes consumed from the pipe so far.
    pub fn position(&self) -> u64 {
        self.src.pos
    }

    fn skip_rest(&mut self) -> OvaResult<()> {
        let Some(name) = self.current.take() else {
            return Ok(());
        };
        let want = self.remaining;
        let got = self
            .src
            .skip(want)
            .map_err(|e| OvaError::io(self.walker.member(&name), "the member's data", e))?;
        if got < want {
            return Err(truncated(
                self.walker.member(&name),
                self.src.pos,
                want - got,
            ));
        }
        self.remaining = 0;
        // Missing padding after the last member is tolerated: the data is whole.
        let padding = std::mem::take(&mut self.padding);
        self.src
            .skip(padding)
            .map_err(|e| OvaError::io(self.walker.member(&name), "the member's padding", e))?;
        Ok(())
    }

    /// Reads from the current member's data (what a dropped `MemberReader` left); 0 at
    /// its end or when there is no current member.
    pub fn read_current(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = loop {
            match self.src.inner.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.src.pos += n as u64;
        self.remaining -= n as u64;
        if n == 0 {
            let name = self.current.clone().unwrap_or_default();
            return Err(io::Error::other(truncated(
                self.walker.member(&name),
                self.src.pos,
                self.remaining,
            )));
        }
        Ok(n)
    }
}

fn truncated(place: Place, at: u64, missing: u64) -> OvaError {
    OvaError::corrupt(
        place,
        "tar member",
        at,
        format!("the archive ends {missing} bytes before the member's data does"),
    )
}

/// The current member of a `TarStream`: its header, and a `Read` of exactly its data.
/// A truncated archive makes `read` fail with an `io::Error` wrapping an `OvaError`
/// (see `OvaError::from_io`).
pub struct MemberReader<'a, R> {
    stream: &'a mut TarStream<R>,
    member: Member,
}

impl<R> MemberReader<'_, R> {
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// Data bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.stream.remaining
    }
}

impl<R: Read> Read for MemberReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read_current(buf)
    }
}

// ---------------------------------------------------------------------------------------
// Sources: positioned reads from a file (or bytes), or a pipe read front to back.

trait ReadAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for &File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(*self, buf, offset)
    }
}

impl ReadAt for &[u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

/// What the header walk needs of a source.
trait Source {
    /// Fills `buf` from the current position as far as the source goes; returns the
    /// count (short only at the end of the source).
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Moves past `n` bytes; returns how many there were.
    fn skip(&mut self, n: u64) -> io::Result<u64>;
    fn pos(&self) -> u64;
}

struct Positioned<A> {
    at: A,
    pos: u64,
    len: u64,
}

impl<A: ReadAt> Source for Positioned<A> {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let n = match self.at.read_at(&mut buf[done..], self.pos) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => r?,
            };
            if n == 0 {
                break;
            }
            done += n;
            self.pos += n as u64;
        }
        Ok(done)
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let step = n.min(self.len.saturating_sub(self.pos));
        self.pos += step;
        Ok(step)
    }

    fn pos(&self) -> u64 {
        self.pos
    }
}

struct Streamed<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Source for Streamed<R> {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let n = match self.inner.read(&mut buf[done..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => r?,
            };
            if n == 0 {
                break;
            }
            done += n;
            self.pos += n as u64;
        }
        Ok(done)
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let skipped = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.pos += skipped;
        Ok(skipped)
    }

    fn pos(&self) -> u64 {
        self.pos
    }
}

// ---------------------------------------------------------------------------------------
// The header walk, shared by both modes.

/// Walks headers, folding GNU long names and pax records into the member they precede.
struct Walker {
    package: std::path::PathBuf,
    count: usize,
    ended: bool,
    warnings: Vec<String>,
}

/// What extension records said about the next member.
#[derive(Default)]
struct Pending {
    long_name: Option<String>,
    pax_path: Option<String>,
    pax_size: Option<u64>,
    /// A pax `GNU.sparse.*` key: the member's data is a sparse map, not the file.
    pax_sparse: bool,
    first_header: Option<u64>,
}

impl Walker {
    fn new(package: &Path) -> Self {
        Walker {
            package: package.to_path_buf(),
            count: 0,
            ended: false,
            warnings: Vec::new(),
        }
    }

    fn here(&self) -> Place {
        Place::package(&self.package)
    }

    fn member(&self, name: &str) -> Place {
        Place::member(&self.package, name)
    }

    fn corrupt(&self, offset: u64, detail: impl Into<String>) -> OvaError {
        OvaError::corrupt(self.here(), "tar header", offset, detail)
    }

    /// Reads headers up to the next member and leaves the source at its data. None at
    /// the end of the archive (two zero blocks, or the end of the source).
    fn next_header<S: Source>(&mut self, src: &mut S) -> OvaResult<Option<Member>> {
        if self.ended {
            return Ok(None);
        }
        let mut pending = Pending::default();
        let mut block = [0u8; BLOCK as usize];
        loop {
            let at = src.pos();
            let n = src
                .fill(&mut block)
                .map_err(|e| OvaError::io(self.here(), format!("the tar header at {at}"), e))?;
            if n == 0 {
                self.ended = true;
                if pending.first_header.is_some() {
                    return Err(self.corrupt(at, "the archive ends after an extension header"));
                }
                self.warnings.push(format!(
                    "the archive ends at offset {at} without its end-of-archive blocks"
                ));
                return Ok(None);
            }
            if n < block.len() {
                return Err(self.corrupt(
                    at,
                    format!("truncated: {n} bytes of a 512-byte header at the end of the archive"),
                ));
            }
            if block.iter().all(|&b| b == 0) {
                self.ended = true;
                self.end_blocks(src, at)?;
                return Ok(None);
            }
            self.verify_checksum(&block, at)?;
            let size = numeric(&block[124..136])
                .map_err(|e| self.corrupt(at, format!("size field: {e}")))?;
            let typeflag = block[156];
            let first = *pending.first_header.get_or_insert(at);
            match typeflag {
                b'L' | b'K' => {
                    let data = self.read_extension(src, at, size, "GNU long name")?;
                    if typeflag == b'L' {
                        let name = until_nul(&data);
                        pending.long_name = Some(self.utf8(name, at, "GNU long name")?);
                    }
                    continue;
                }
                b'x' => {
                    let data = self.read_extension(src, at, size, "pax extended header")?;
                    self.pax(&data, at, &mut pending)?;
                    continue;
                }
                b'g' | b'V' => {
                    // Global pax defaults and volume labels say nothing about one member.
                    self.skip_data(src, at, size)?;
                    continue;
                }
                _ => {}
            }
            let raw = match (&pending.pax_path, &pending.long_name) {
                (Some(p), _) => p.clone(),
                (None, Some(l)) => l.clone(),
                (None, None) => self.header_name(&block, at)?,
            };
            let place = Place::member(&self.package, raw.clone());
            if typeflag == b'S' || pending.pax_sparse {
                return Err(OvaError::unsupported(
                    place,
                    "is a GNU sparse member; its data is not the file's bytes (re-create the archive without --sparse)",
                ));
            }
            if typeflag == b'M' || typeflag == b'N' {
                return Err(OvaError::unsupported(
                    place,
                    format!(
                        "has the GNU typeflag {:?} (multi-volume or old long names)",
                        typeflag as char
                    ),
                ));
            }
            let name = names::member_name(&raw)
                .map_err(|why| OvaError::refused(place, format!("the member name {why}")))?;
            self.count += 1;
            if self.count > MAX_MEMBERS {
                return Err(OvaError::limit(
                    self.here(),
                    format!("more than {MAX_MEMBERS} members; not an OVF package"),
                ));
            }
            let kind = match typeflag {
                b'0' | 0 | b'7' => MemberKind::File,
                b'1' => MemberKind::HardLink,
                b'2' => MemberKind::Symlink,
                b'5' | b'D' => MemberKind::Directory,
                other => MemberKind::Other(other),
            };
            return Ok(Some(Member {
                name,
                kind,
                header_offset: first,
                offset: src.pos(),
                size: pending.pax_size.unwrap_or(size),
            }));
        }
    }

    /// After a zero block: a second one (or the end of the source) ends the archive. A
    /// lone zero block followed by a header also ends it, as GNU tar reads it, with a
    /// warning: whatever follows is not part of the package.
    fn end_blocks<S: Source>(&mut self, src: &mut S, at: u64) -> OvaResult<()> {
        let mut block = [0u8; BLOCK as usize];
        let n = src
            .fill(&mut block)
            .map_err(|e| OvaError::io(self.here(), "the end-of-archive blocks", e))?;
        if block[..n].iter().any(|&b| b != 0) {
            self.warnings.push(format!(
                "a lone zero block at offset {at} ends the archive; the data after it is ignored"
            ));
        } else if n < block.len() {
            self.warnings.push(format!(
                "the archive ends at offset {} with one end-of-archive block of two",
                at + BLOCK
            ));
        }
        Ok(())
    }

    /// The checksum covers the header with its own field read as spaces. Historic tars
    /// summed signed bytes; both sums are accepted, as GNU tar does.
    fn verify_checksum(&self, block: &[u8; BLOCK as usize], at: u64) -> OvaResult<()> {
        let stored = numeric(&block[148..156])
            .map_err(|e| self.corrupt(at, format!("checksum field: {e}")))?;
        let mut unsigned: u64 = 0;
        let mut signed: i64 = 0;
        for (i, &b) in block.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += u64::from(b);
            signed += i64::from(b as i8);
        }
        if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
            return Err(self.corrupt(
                at,
                format!(
                    "checksum mismatch: the header says {stored:o}, its bytes sum to {unsigned:o}"
                ),
            ));
        }
        Ok(())
    }

    /// The name of a plain header: ustar puts a prefix before it; GNU's header uses those
    /// bytes for other fields, so the prefix counts only with the POSIX magic.
    fn header_name(&self, block: &[u8; BLOCK as usize], at: u64) -> OvaResult<String> {
        let name = self.utf8(until_nul(&block[0..100]), at, "member name")?;
        if &block[257..263] == b"ustar\0" {
            let prefix = until_nul(&block[345..500]);
            if !prefix.is_empty() {
                let prefix = self.utf8(prefix, at, "member name prefix")?;
                return Ok(format!("{prefix}/{name}"));
            }
        }
        Ok(name)
    }

    fn utf8(&self, bytes: &[u8], at: u64, what: &str) -> OvaResult<String> {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.corrupt(at, format!("the {what} is not UTF-8")))
    }

    /// Reads an extension record's data (bounded) and its padding.
    fn read_extension<S: Source>(
        &self,
        src: &mut S,
        at: u64,
        size: u64,
        what: &str,
    ) -> OvaResult<Vec<u8>> {
        if size > MAX_EXTENSION {
            return Err(OvaError::limit(
                self.here(),
                format!(
                    "the {what} at offset {at} is {size} bytes; at most {MAX_EXTENSION} are read"
                ),
            ));
        }
        let mut data = vec![0u8; size as usize];
        let n = src
            .fill(&mut data)
            .map_err(|e| OvaError::io(self.here(), format!("the {what} at {at}"), e))?;
        if n < data.len() {
            return Err(self.corrupt(at, format!("the archive ends inside the {what}")));
        }
        self.skip_padding(src, size)?;
        Ok(data)
    }

    fn skip_data<S: Source>(&self, src: &mut S, at: u64, size: u64) -> OvaResult<()> {
        let got = src
            .skip(size)
            .map_err(|e| OvaError::io(self.here(), format!("the record at {at}"), e))?;
        if got < size {
            return Err(self.corrupt(at, "the archive ends inside this record's data"));
        }
        self.skip_padding(src, size)
    }

    fn skip_padding<S: Source>(&self, src: &mut S, size: u64) -> OvaResult<()> {
        let pad = size.div_ceil(BLOCK) * BLOCK - size;
        src.skip(pad)
            .map_err(|e| OvaError::io(self.here(), "tar padding", e))?;
        Ok(())
    }

    /// pax records: `LEN KEY=VALUE\n`, LEN counting the whole record in decimal.
    fn pax(&self, data: &[u8], at: u64, pending: &mut Pending) -> OvaResult<()> {
        let bad = |detail: &str| self.corrupt(at, format!("pax extended header: {detail}"));
        let mut rest = data;
        while !rest.is_empty() {
            // Some writers pad the record area with NULs.
            if rest.iter().all(|&b| b == 0) {
                break;
            }
            let space = rest
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| bad("a record has no length"))?;
            let len: usize = std::str::from_utf8(&rest[..space])
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("a record length is not a decimal number"))?;
            if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
                return Err(bad("a record length does not match its record"));
            }
            let record = &rest[space + 1..len - 1];
            rest = &rest[len..];
            let eq = record
                .iter()
                .position(|&b| b == b'=')
                .ok_or_else(|| bad("a record has no '='"))?;
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            match key {
                b"path" => pending.pax_path = Some(self.utf8(value, at, "pax path")?),
                b"size" => {
                    let text = std::str::from_utf8(value).unwrap_or("");
                    let size = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| text.parse::<u64>().ok())
                        .flatten()
                        .ok_or_else(|| bad("size is not a decimal number that fits 64 bits"))?;
                    pending.pax_size = Some(size);
                }
                k if k.starts_with(b"GNU.sparse.") => pending.pax_sparse = true,
                _ => {}
            }
        }
        Ok(())
    }
}

/// The bytes of a NUL-terminated field.
fn until_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// A numeric header field: octal digits (leading spaces, ended by NUL or space), or
/// GNU base-256 when the first byte has its high bit set. Overflow and stray bytes are
/// errors; an empty field is 0.
pub fn numeric(field: &[u8]) -> Result<u64, String> {
    let Some(&first) = field.first() else {
        return Ok(0);
    };
    if first & 0x80 != 0 {
        if first == 0xff {
            return Err("negative base-256 number".into());
        }
        let mut value: u64 = u64::from(first & 0x7f);
        for &b in &field[1..] {
            value = value
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or("base-256 number does not fit 64 bits")?;
        }
        return Ok(value);
    }
    let mut i = 0;
    while i < field.len() && field[i] == b' ' {
        i += 1;
    }
    let mut value: u64 = 0;
    while i < field.len() && (b'0'..=b'7').contains(&field[i]) {
        value = value
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(field[i] - b'0')))
            .ok_or("octal number does not fit 64 bits")?;
        i += 1;
    }
    if field[i..].iter().any(|&b| b != 0 && b != b' ') {
        return Err(format!(
            "{:?} is not an octal number",
            String::from_utf8_lossy(field)
        ));
    }
    Ok(value)
}

/// Small archives for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// A ustar header for `name` with `size` bytes of data, checksum set.
    pub fn header(name: &str, size: u64, typeflag: u8) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[156] = typeflag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    pub fn archive(members: &[(&str, &[u8], u8)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data, t) in members {
            out.extend_from_slice(&header(name, data.len() as u64, *t));
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{archive, header};
    use super::*;

    #[test]
    fn numeric_fields() {
        assert_eq!(numeric(b"00000001750\0"), Ok(0o1750));
        assert_eq!(numeric(b"  1750 \0\0\0\0\0"), Ok(0o1750));
        assert_eq!(numeric(b"\0\0\0\0"), Ok(0));
        assert_eq!(
            numeric(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            Ok(1 << 32)
        );
        assert!(numeric(&[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(numeric(&[0xff; 12]).is_err());
        assert!(numeric(b"7777777777777777777777777").is_err());
        assert!(numeric(b"12x4").is_err());
    }

    #[test]
    fn indexes_members_with_offsets() {
        let bytes = archive(&[
            ("./a.ovf", b"hello", b'0'),
            ("dir/", b"", b'5'),
            ("b", &[7u8; 600], 0),
        ]);
        let index = index_bytes(&bytes, Path::new("t.ova")).unwrap();
        let got: Vec<_> = index
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.kind, m.offset, m.size))
            .collect();
        assert_eq!(
            got,
            [
                ("a.ovf", MemberKind::File, 512, 5),
                ("dir", MemberKind::Directory, 1536, 0),
                ("b", MemberKind::File, 2048, 600),
            ]
        );
        assert!(index.warnings.is_empty());
    }

    #[test]
    fn pax_path_and_size_apply_to_the_next_member() {
        let path = format!("{}/disk.vmdk", "d".repeat(150));
        let record = |k: &str, v: &str| {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            while len.to_string().len() + body.len() != len {
                len = len.to_string().len() + body.len();
            }
            format!("{len}{body}")
        };
        let pax = format!("{}{}", record("path", &path), record("size", "3"));
        let bytes = archive(&[("PaxHeader", pax.as_bytes(), b'x'), ("short", b"abc", b'0')]);
        let index = index_bytes(&bytes, Path::new("t.ova")).unwrap();
        assert_eq!(index.members[0].name, path);
        assert_eq!(index.members[0].size, 3);
        assert_eq!(index.members[0].header_offset, 0);
    }

    #[test]
    fn hostile_headers_are_typed_errors() {
        let p = Path::new("t.ova");
        let mut bad_sum = archive(&[("a", b"x", b'0')]);
        bad_sum[0] = b'b';
        assert!(matches!(
            index_bytes(&bad_sum, p),
            Err(OvaError::Corrupt {
                structure: "tar header",
                offset: 0,
                ..
            })
        ));
        let escape = archive(&[("../x", b"x", b'0')]);
        let e = index_bytes(&escape, p).unwrap_err();
        assert!(
            matches!(&e, OvaError::Refused { place, .. } if place.member.as_deref() == Some("../x")),
            "{e}"
        );
        let mut long = archive(&[("big", b"x", b'0')]);
        long.truncate(1024);
        let h = header("big", 1 << 32, b'0');
        long[..512].copy_from_slice(&h);
        let e = index_bytes(&long, p).unwrap_err();
        assert!(e.to_string().contains("\"big\""), "{e}");
        let sparse = archive(&[("s", b"", b'S')]);
        assert!(matches!(
            index_bytes(&sparse, p),
            Err(OvaError::Unsupported { .. })
        ));
        let huge_name = archive(&[("././@LongLink", &vec![b'a'; 70_000], b'L')]);
        assert!(matches!(
            index_bytes(&huge_name, p),
            Err(OvaError::Limit { .. })
        ));
    }

    #[test]
    fn stream_reads_members_in_turn_and_reports_truncation() {
        let bytes = archive(&[("a", b"hello", b'0'), ("b", &[1u8; 1000], b'0')]);
        let mut stream = TarStream::new(&bytes[..], Path::new("t.ova"));
        let first = stream.next_member().unwrap().unwrap();
        assert_eq!(first.member().name, "a");
        // Not read: skipped by the next call.
        let mut second = stream.next_member().unwrap().unwrap();
        let mut data = Vec::new();
        second.read_to_end(&mut data).unwrap();
        assert_eq!(data, vec![1u8; 1000]);
        assert!(stream.next_member().unwrap().is_none());

        let cut = &bytes[..1536];
        let mut stream = TarStream::new(cut, Path::new("t.ova"));
        stream.next_member().unwrap();
        let mut second = stream.next_member().unwrap().unwrap();
        let e = second.read_to_end(&mut Vec::new()).unwrap_err();
        let e = OvaError::from_io(Place::package(Path::new("t.ova")), "b", e);
        assert!(
            matches!(&e, OvaError::Corrupt { place, .. } if place.member.as_deref() == Some("b")),
            "{e}"
        );
    }
}

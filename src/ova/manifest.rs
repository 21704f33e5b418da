//! The `.mf` manifest: one digest per package file, `SHA256(disk1.vmdk)= 3f…`. Parsed as
//! tolerantly as the tools that write it (CRLF, `SHA1 (name) = hex` with spaces), but
//! never silently: a line that is not understood is a warning, and a line that has the
//! shape of an entry but a digest of the wrong length is an error (a file must not pass
//! unverified because its line was mangled).
//!
//! Digests are computed while the files are read (`DigestSet`, `HashingReader`), so that
//! verifying costs no extra pass over a disk.

use std::io::{self, Read};

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::error::{Algorithm, OvaError, OvaResult, Place};
use super::names;
use crate::quote::{LineWarnings, excerpt};

/// Manifests larger than this are refused unread (one line per file: a few hundred bytes).
pub const MAX_MANIFEST: u64 = 1 << 20;

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalised file name, relative to the descriptor's folder.
    pub name: String,
    pub algorithm: Algorithm,
    /// Lower-case hex.
    pub digest: String,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub entries: Vec<Entry>,
    /// Lines skipped (unknown algorithms, not entries at all).
    pub warnings: Vec<String>,
}

impl Manifest {
    /// Parses a manifest; `place` names it in errors.
    pub fn parse(bytes: &[u8], place: &Place) -> OvaResult<Manifest> {
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(OvaError::limit(
                place.clone(),
                format!(
                    "the manifest is {} bytes; at most {MAX_MANIFEST} are read",
                    bytes.len()
                ),
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            OvaError::corrupt(
                place.clone(),
                "manifest",
                e.valid_up_to() as u64,
                "not UTF-8",
            )
        })?;
        let mut manifest = Manifest::default();
        let mut warnings = Vec::new();
        let mut skipped = LineWarnings::new(&mut warnings);
        let mut offset = 0u64;
        for (i, raw) in text.split('\n').enumerate() {
            let line_offset = offset;
            offset += raw.len() as u64 + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                continue;
            }
            match parse_line(line) {
                Line::Entry(algorithm, name, hex) => {
                    let bad = |detail: String| {
                        OvaError::corrupt(
                            place.clone(),
                            "manifest",
                            line_offset,
                            format!("line {}: {detail}", i + 1),
                        )
                    };
                    if hex.len() != algorithm.digest_len() * 2 {
                        return Err(bad(format!(
                            "a {algorithm} digest has {} hex digits, not {}",
                            hex.len(),
                            algorithm.digest_len() * 2
                        )));
                    }
                    let name = names::member_name(name)
                        .map_err(|why| bad(format!("the file name {name:?} {why}")))?;
                    let digest = hex.to_ascii_lowercase();
                    if let Some(prev) = manifest
                        .entries
                        .iter()
                        .find(|e| e.name == name && e.algorithm == algorithm)
                    {
                        if prev.digest != digest {
                            return Err(bad(format!(
                                "{name:?} is listed twice with different {algorithm} digests"
                            )));
                        }
                        continue;
                    }
                    manifest.entries.push(Entry {
                        name,
                        algorithm,
                        digest,
                    });
                }
                Line::Unknown(algorithm) => skipped.push(|| {
                    format!(
                        "manifest line {}: algorithm {} is not understood; the line is skipped",
                        i + 1,
                        excerpt(algorithm)
                    )
                }),
                Line::Other => skipped
                    .push(|| format!("manifest line {} is not a digest line; skipped", i + 1)),
            }
        }
        skipped.finish("manifest lines skipped");
        manifest.warnings = warnings;
        Ok(manifest)
    }

    /// The entries for one file.
    pub fn entries_for<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.name == name)
    }

    /// The algorithms the manifest uses for this file (what to hash it with).
    pub fn algorithms_for(&self, name: &str) -> Vec<Algorithm> {
        let mut algorithms: Vec<_> = self.entries_for(name).map(|e| e.algorithm).collect();
        algorithms.sort();
        algorithms.dedup();
        algorithms
    }

    /// Checks a file's digests against its entries. Ok(true) when every entry matched
    /// (and there was one), Ok(false) when the manifest does not list the file; a
    /// mismatch is `OvaError::ManifestMismatch` naming the file. An algorithm listed but
    /// not computed is an error too: it would otherwise pass unchecked.
    pub fn verify(&self, name: &str, digests: &Digests, place: &Place) -> OvaResult<bool> {
        let mut listed = false;
        for entry in self.entries_for(name) {
            listed = true;
            let Some(found) = digests.get(entry.algorithm) else {
                return Err(OvaError::corrupt(
                    place.clone(),
                    "manifest",
                    0,
                    format!("{name:?} was not hashed with {}", entry.algorithm),
                ));
            };
            if found != entry.digest {
                return Err(OvaError::ManifestMismatch {
                    place: place.clone(),
                    algorithm: entry.algorithm,
                    expected: entry.digest.clone(),
                    found: found.to_string(),
                });
            }
        }
        Ok(listed)
    }
}

enum Line<'a> {
    Entry(Algorithm, &'a str, &'a str),
    Unknown(&'a str),
    Other,
}

/// `ALG(name)= hex`, spaces allowed around the parentheses and `=`. The name runs to the
/// last `)` that is followed by `=`, so names with parentheses survive.
fn parse_line(line: &str) -> Line<'_> {
    let Some(open) = line.find('(') else {
        return Line::Other;
    };
    let algorithm = line[..open].trim();
    let rest = &line[open + 1..];
    let Some((close, after)) = rest
        .rmatch_indices(')')
        .map(|(i, _)| (i, rest[i + 1..].trim_start()))
        .find(|(_, after)| after.starts_with('='))
    else {
        return Line::Other;
    };
    let name = &rest[..close];
    let hex = after[1..].trim();
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || name.is_empty() {
        return Line::Other;
    }
    match algorithm.to_ascii_uppercase().as_str() {
        "SHA1" => Line::Entry(Algorithm::Sha1, name, hex),
        "SHA256" => Line::Entry(Algorithm::Sha256, name, hex),
        "SHA512" => Line::Entry(Algorithm::Sha512, name, hex),
        _ if !algorithm.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Line::Unknown(algorithm)
        }
        _ => Line::Other,
    }
}

/// Hashers for some algorithms, fed as a file is read.
#[derive(Clone, Default)]
pub struct DigestSet {
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
}

impl DigestSet {
    pub fn new(algorithms: &[Algorithm]) -> Self {
        let mut set = DigestSet::default();
        for a in algorithms {
            match a {
                Algorithm::Sha1 => set.sha1 = Some(Sha1::new()),
                Algorithm::Sha256 => set.sha256 = Some(Sha256::new()),
                Algorithm::Sha512 => set.sha512 = Some(Sha512::new()),
            }
        }
        set
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.sha1 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha1: self.sha1.map(|h| hex(&h.finalize())),
            sha256: self.sha256.map(|h| hex(&h.finalize())),
            sha512: self.sha512.map(|h| hex(&h.finalize())),
        }
    }
}

/// Finished digests, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Digests {
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub sha512: Option<String>,
}

impl Digests {
    pub fn get(&self, algorithm: Algorithm) -> Option<&str> {
        match algorithm {
            Algorithm::Sha1 => self.sha1.as_deref(),
            Algorithm::Sha256 => self.sha256.as_deref(),
            Algorithm::Sha512 => self.sha512.as_deref(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    digests: DigestSet,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, algorithms: &[Algorithm]) -> Self {
        HashingReader {
            inner,
            digests: DigestSet::new(algorithms),
            bytes: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The digests of everything read, and the inner reader.
    pub fn finish(self) -> (Digests, R) {
        (self.digests.finish(), self.inner)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digests.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const ABC_SHA1: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";
    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn place() -> Place {
        Place::member(Path::new("t.ova"), "t.mf")
    }

    #[test]
    fn lines_as_seen_in_the_wild() {
        let text = format!(
            "SHA256(vm.ovf)= {ABC_SHA256}\r\nSHA1 (disk (1).vmdk) = {}\nMD5(x)= 00\nrubbish\n\n",
            ABC_SHA1.to_uppercase()
        );
        let m = Manifest::parse(text.as_bytes(), &place()).unwrap();
        assert_eq!(
            m.entries,
            [
                Entry {
                    name: "vm.ovf".into(),
                    algorithm: Algorithm::Sha256,
                    digest: ABC_SHA256.into()
                },
                Entry {
                    name: "disk (1).vmdk".into(),
                    algorithm: Algorithm::Sha1,
                    digest: ABC_SHA1.into()
                },
            ]
        );
        assert_eq!(m.warnings.len(), 2);
    }

    #[test]
    fn wrong_lengths_and_escapes_are_errors() {
        let p = place();
        assert!(Manifest::parse(b"SHA256(a)= abcd\n", &p).is_err());
        let escape = format!("SHA1(../a)= {ABC_SHA1}\n");
        assert!(Manifest::parse(escape.as_bytes(), &p).is_err());
        let twice = format!("SHA1(a)= {ABC_SHA1}\nSHA1(a)= {}\n", "0".repeat(40));
        assert!(Manifest::parse(twice.as_bytes(), &p).is_err());
    }

    #[test]
    fn many_skipped_lines_are_counted_not_each_warned() {
        let mut text = format!("SHA1(a)= {ABC_SHA1}\n");
        let long_algorithm = "X".repeat(10_000);
        text.push_str(&format!("{long_algorithm}(b)= {ABC_SHA1}\n"));
        for _ in 0..30 {
            text.push_str("not a digest line\n");
        }
        let m = Manifest::parse(text.as_bytes(), &place()).unwrap();
        assert_eq!(m.entries.len(), 1);
        assert_eq!(m.warnings.len(), 9, "{:?}", m.warnings);
        assert!(m.warnings[0].ends_with("(10000 bytes) is not understood; the line is skipped"));
        assert_eq!(m.warnings[8], "23 more manifest lines skipped");
    }

    #[test]
    fn verify_reports_a_typed_mismatch() {
        let m = Manifest::parse(format!("SHA256(a)= {ABC_SHA256}\n").as_bytes(), &place()).unwrap();
        let mut r = HashingReader::new(&b"abc"[..], &m.algorithms_for("a"));
        io::copy(&mut r, &mut io::sink()).unwrap();
        let (d, _) = r.finish();
        let p = Place::member(Path::new("t.ova"), "a");
        assert!(m.verify("a", &d, &p).unwrap());
        assert!(!m.verify("b", &d, &p).unwrap());
        let mut other = DigestSet::new(&[Algorithm::Sha256]);
        other.update(b"abd");
        match m.verify("a", &other.finish(), &p) {
            Err(OvaError::ManifestMismatch {
                place,
                algorithm: Algorithm::Sha256,
                expected,
                ..
            }) => {
                assert_eq!(place.member.as_deref(), Some("a"));
                assert_eq!(expected, ABC_SHA256);
            }
            other => panic!("{other:?}"),
        }
    }
}

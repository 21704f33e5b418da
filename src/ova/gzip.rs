//! Disks stored with `ovf:compression="gzip"`: a gzip stream can only be read front to
//! back, so such a disk has no positioned view; this wrapper decodes it and stops with an
//! error once it has produced more than a bound (a small gzip file can inflate to
//! terabytes, and nothing it holds may be trusted to say how much).

use std::io::{self, Read};

use flate2::read::MultiGzDecoder;

use super::error::{OvaError, Place};

/// Decodes gzip (all members, as RFC 1952 allows) from `inner`, failing once more than
/// `limit` bytes come out. Errors are `io::Error`s; those carrying an `OvaError` (the
/// bound, a corrupt stream) unwrap with `OvaError::from_io`.
pub struct BoundedGunzip<R: Read> {
    decoder: MultiGzDecoder<R>,
    limit: u64,
    produced: u64,
    place: Place,
}

impl<R: Read> BoundedGunzip<R> {
    pub fn new(inner: R, limit: u64, place: Place) -> Self {
        BoundedGunzip {
            decoder: MultiGzDecoder::new(inner),
            limit,
            produced: 0,
            place,
        }
    }

    /// Bytes produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }
}

impl<R: Read> Read for BoundedGunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte past the bound at most, so that crossing it is seen.
        let room = self.limit.saturating_sub(self.produced).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.decoder.read(&mut buf[..want]).map_err(|e| {
            if e.get_ref().is_some_and(|i| i.is::<OvaError>()) {
                return e;
            }
            io::Error::other(OvaError::corrupt(
                self.place.clone(),
                "gzip stream",
                self.produced,
                format!(
                    "cannot be decoded after {} output bytes: {e}",
                    self.produced
                ),
            ))
        })?;
        self.produced += n as u64;
        if self.produced > self.limit {
            return Err(io::Error::other(OvaError::limit(
                self.place.clone(),
                format!(
                    "the gzip-compressed file inflates to more than {} bytes, its bound",
                    self.limit
                ),
            )));
        }
        Ok(n)
    }
}

/// The bound for a gzip-compressed disk of `capacity` bytes: the VMDK inside holds at
/// most the capacity in data, plus its metadata (grain tables are 1/128 of the data for
/// streamOptimized and sparse; markers and headers a few MiB). A sixteenth plus 64 MiB
/// covers every VMDK layout with room to spare.
pub fn inflate_limit(capacity: u64) -> u64 {
    capacity
        .saturating_add(capacity / 16)
        .saturating_add(64 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;
    use std::path::Path;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn stops_at_the_bound() {
        let place = Place::member(Path::new("t.ova"), "d.vmdk");
        let packed = gz(&vec![0u8; 1 << 20]);
        let mut ok = BoundedGunzip::new(&packed[..], 1 << 20, place.clone());
        assert_eq!(io::copy(&mut ok, &mut io::sink()).unwrap(), 1 << 20);
        let mut over = BoundedGunzip::new(&packed[..], (1 << 20) - 1, place.clone());
        let e = io::copy(&mut over, &mut io::sink()).unwrap_err();
        assert!(matches!(
            OvaError::from_io(place.clone(), "d", e),
            OvaError::Limit { .. }
        ));
        let mut corrupt = packed.clone();
        corrupt[20] ^= 0xff;
        let mut bad = BoundedGunzip::new(&corrupt[..], 1 << 30, place.clone());
        let e = io::copy(&mut bad, &mut io::sink()).unwrap_err();
        assert!(matches!(
            OvaError::from_io(place, "d", e),
            OvaError::Corrupt { .. }
        ));
    }
}

//! The identifiers and timestamps a written image carries (VHD unique id and timestamp,
//! VHDX write GUIDs and page 83 id): random and now by default, or derived from a seed for
//! reproducible output, so that two runs over the same source write the same bytes.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy)]
pub struct Identity {
    /// None: fresh random ids.
    seed: Option<[u8; 32]>,
    /// Seconds since the Unix epoch.
    time: u64,
}

impl Identity {
    /// Random ids, the current time.
    pub fn random_now() -> Self {
        Identity {
            seed: None,
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// Ids derived from `seed`, and `time` as the timestamp.
    pub fn reproducible(seed: [u8; 32], time: u64) -> Self {
        Identity {
            seed: Some(seed),
            time,
        }
    }

    pub fn time(&self) -> u64 {
        self.time
    }

    /// A version-4-shaped UUID for the field named `label` (each field gets its own).
    pub fn uuid(&self, label: &str) -> [u8; 16] {
        let Some(seed) = self.seed else {
            return *uuid::Uuid::new_v4().as_bytes();
        };
        let digest = Sha256::new()
            .chain_update(seed)
            .chain_update(label.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        *uuid::Builder::from_random_bytes(bytes).as_uuid().as_bytes()
    }
}

/// Bytes of the disk the content seed takes at a time, at multiples of its size.
const SEED_PIECE: usize = 64 << 10;

/// The digest reproducible ids are derived from: SHA-256 over each 64 KiB piece of the
/// disk that holds a non-zero byte, with its index. Zeros cost nothing, so an empty
/// multi-TiB disk is seeded as fast as it is converted (a SHA-256 of the whole contents
/// took hours), and the result does not depend on how a caller splits the disk: pieces
/// may arrive in any sizes, in ascending order, and zero ranges may be left out.
pub struct ContentSeed {
    hasher: Sha256,
    /// The piece being filled from several calls: its index and its bytes.
    partial: Option<(u64, Box<[u8]>)>,
}

impl Default for ContentSeed {
    fn default() -> Self {
        Self::new()
    }
}

impl ContentSeed {
    pub fn new() -> Self {
        ContentSeed {
            hasher: Sha256::new(),
            partial: None,
        }
    }

    /// Takes `data`, the disk's bytes at `offset`. Calls come in ascending offsets.
    pub fn update(&mut self, offset: u64, data: &[u8]) {
        let piece = SEED_PIECE as u64;
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let index = at / piece;
            let within = (at % piece) as usize;
            let n = rest.len().min(SEED_PIECE - within);
            let part = &rest[..n];
            if self.partial.as_ref().is_some_and(|(i, _)| *i != index) {
                self.flush();
            }
            if self.partial.is_none() && n == SEED_PIECE {
                self.piece(index, part);
            } else if self.partial.is_some() || !crate::zero::is_zero(part) {
                let (_, bytes) = self
                    .partial
                    .get_or_insert_with(|| (index, vec![0; SEED_PIECE].into_boxed_slice()));
                bytes[within..within + n].copy_from_slice(part);
            }
            at += n as u64;
            rest = &rest[n..];
        }
    }

    pub fn finish(mut self) -> [u8; 32] {
        self.flush();
        self.hasher.finalize().into()
    }

    fn flush(&mut self) {
        if let Some((index, bytes)) = self.partial.take() {
            self.piece(index, &bytes);
        }
    }

    fn piece(&mut self, index: u64, bytes: &[u8]) {
        if !crate::zero::is_zero(bytes) {
            self.hasher.update(index.to_le_bytes());
            self.hasher.update(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_ids_repeat_and_differ_by_label() {
        let a = Identity::reproducible([1; 32], 5);
        let b = Identity::reproducible([1; 32], 5);
        assert_eq!(a.uuid("x"), b.uuid("x"));
        assert_ne!(a.uuid("x"), a.uuid("y"));
        let r = Identity::random_now();
        assert_ne!(r.uuid("x"), r.uuid("x"));
    }
    fn seed_of(disk: &[u8], splits: &[usize]) -> [u8; 32] {
        let mut seed = ContentSeed::new();
        let mut at = 0;
        let mut k = 0;
        while at < disk.len() {
            let n = splits[k % splits.len()].min(disk.len() - at);
            // Zero ranges may be left out altogether, as converters skip them.
            if !crate::zero::is_zero(&disk[at..at + n]) || k % 2 == 0 {
                seed.update(at as u64, &disk[at..at + n]);
            }
            at += n;
            k += 1;
        }
        seed.finish()
    }

    #[test]
    fn the_content_seed_ignores_how_the_disk_is_split_and_zeros_cost_nothing() {
        let mut disk = vec![0u8; 5 << 20];
        for (i, b) in disk[100_000..180_000].iter_mut().enumerate() {
            *b = (i % 251) as u8 + 1;
        }
        disk[3 << 20] = 7;
        disk[(5 << 20) - 1] = 9;
        let whole = seed_of(&disk, &[1 << 20]);
        for splits in [
            &[512][..],
            &[4096, 65536, 7],
            &[3 << 20],
            &[65536],
            &[100_003, 1],
        ] {
            assert_eq!(seed_of(&disk, splits), whole, "{splits:?}");
        }
        // An empty disk of any size seeds like nothing at all; a byte anywhere changes it.
        assert_eq!(
            seed_of(&vec![0u8; 3 << 20], &[1 << 20]),
            ContentSeed::new().finish()
        );
        let mut other = disk.clone();
        other[4 << 20] = 1;
        assert_ne!(seed_of(&other, &[1 << 20]), whole);
    }
}

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
}

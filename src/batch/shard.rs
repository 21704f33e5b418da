//! `--shard I/N`: N runs of one plan split it between them with no coordinator and no
//! overlap. Shard I takes the lines whose 1-based number L has (L - 1) mod N = I, so the
//! indexes 0..N-1 match a Kubernetes Indexed Job's JOB_COMPLETION_INDEX, and which shard
//! an item belongs to depends only on its line, never on what other runs do.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    /// 0-based: 0..count.
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole plan.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; None unless 0 <= index < count.
    pub fn new(index: u64, count: u64) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    /// Whether the item on 1-based `line` is this shard's.
    pub fn takes(self, line: u64) -> bool {
        line >= 1 && (line - 1) % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    /// "I/N", e.g. "0/4" .. "3/4".
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not I/N with 0 <= I < N (e.g. 0/4 .. 3/4)");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let i: u64 = i.trim().parse().map_err(|_| bad())?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n).ok_or_else(bad)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_every_line() {
        for n in 1..=7u64 {
            for line in 1..=50u64 {
                let owners: Vec<u64> = (0..n)
                    .filter(|&i| Shard::new(i, n).unwrap().takes(line))
                    .collect();
                assert_eq!(owners.len(), 1, "line {line} of {n} shards: {owners:?}");
            }
        }
        assert!(Shard::new(0, 3).unwrap().takes(1));
        assert!(Shard::new(0, 3).unwrap().takes(4));
        assert!(Shard::new(2, 3).unwrap().takes(3));
    }

    #[test]
    fn shard_text_is_checked() {
        assert_eq!("3/4".parse::<Shard>(), Ok(Shard { index: 3, count: 4 }));
        for bad in ["4/4", "1/0", "0", "-1/2", "a/b", "1/2/3", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(Shard::new(1, 5).unwrap().to_string(), "1/5");
    }
}

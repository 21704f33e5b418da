//! How many threads one conversion may keep busy with CPU work (inflating compressed
//! grains). A lone conversion uses every core; a batch running N conversions side by side
//! sets the budget to cores / N, so that N conversions share the machine instead of each
//! starting a thread per core (N x cores threads fighting over the same cores only adds
//! switching and cache misses).
//!
//! Process-wide because every conversion in a process runs under the same budget: the
//! batch runner sets it once before starting its workers.

use std::sync::atomic::{AtomicUsize, Ordering};

/// 0: no budget set, use every core.
static PER_CONVERSION: AtomicUsize = AtomicUsize::new(0);

/// The cores this process may use (its CPU affinity and cgroup quota, as the standard
/// library reads them), at least 1.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Caps the threads each conversion keeps busy at `threads` (None: every core again).
/// A cap of 0 is taken as 1: the converting thread itself always works.
pub fn set_per_conversion(threads: Option<usize>) {
    PER_CONVERSION.store(threads.map_or(0, |n| n.max(1)), Ordering::Relaxed);
}

/// Threads one conversion may keep busy: the budget when one is set, else every core.
pub fn per_conversion() -> usize {
    match PER_CONVERSION.load(Ordering::Relaxed) {
        0 => cores(),
        n => n.min(cores()),
    }
}

/// The budget a batch of `jobs` conversions side by side gives each: an equal share of
/// the cores, at least one.
pub fn share(jobs: usize) -> usize {
    (cores() / jobs.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_caps_and_resets() {
        let all = cores();
        assert!(all >= 1);
        assert_eq!(share(1), all);
        assert_eq!(share(all * 4), 1, "never below one");
        set_per_conversion(Some(0));
        assert_eq!(per_conversion(), 1, "the converting thread always works");
        set_per_conversion(Some(all + 10));
        assert_eq!(per_conversion(), all, "never above the cores");
        set_per_conversion(None);
        assert_eq!(per_conversion(), all);
    }
}

//! How many threads one conversion may keep busy with CPU work (inflating compressed
//! grains). A lone conversion uses every core. Conversions running side by side in one
//! process (a batch) each register while they run, and the cores are divided between
//! those running at the moment: N at a time get cores / N each (N x cores threads
//! fighting over the same cores would only add switching and cache misses), and the
//! last one left at the end of a batch gets the whole machine again.
//!
//! Process-wide because every conversion in a process shares the same cores.

use std::sync::atomic::{AtomicUsize, Ordering};

/// 0: no cap set, use every core.
static CAP: AtomicUsize = AtomicUsize::new(0);
/// Conversions registered as running side by side.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// The cores this process may use (its CPU affinity and cgroup quota, as the standard
/// library reads them), at least 1.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Caps the threads each conversion keeps busy at `threads` (None: no cap). A cap of 0
/// is taken as 1: the converting thread itself always works.
pub fn set_per_conversion(threads: Option<usize>) {
    CAP.store(threads.map_or(0, |n| n.max(1)), Ordering::Relaxed);
}

/// Threads one conversion may keep busy now: its share of the cores among the
/// conversions running, within the cap.
pub fn per_conversion() -> usize {
    let all = cores();
    let cap = match CAP.load(Ordering::Relaxed) {
        0 => all,
        n => n.min(all),
    };
    cap.min(share_of(all, RUNNING.load(Ordering::Relaxed)))
}

/// An equal share of `cores` for each of `running` conversions, at least one.
fn share_of(cores: usize, running: usize) -> usize {
    (cores / running.max(1)).max(1)
}

/// The share each of `jobs` conversions side by side gets while all of them run.
pub fn share(jobs: usize) -> usize {
    share_of(cores(), jobs)
}

/// A conversion counted as running side by side with others, until dropped.
#[must_use = "the conversion counts as running only while this is held"]
pub struct Running(());

/// Counts a conversion as running until the returned guard is dropped.
pub fn running() -> Running {
    RUNNING.fetch_add(1, Ordering::Relaxed);
    Running(())
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cores_are_shared_between_those_running() {
        assert_eq!(share_of(8, 0), 8, "a lone conversion gets every core");
        assert_eq!(share_of(8, 1), 8);
        assert_eq!(share_of(8, 3), 2);
        assert_eq!(share_of(2, 4), 1, "never below one");
        assert!(share(1) >= 1);
    }

    #[test]
    fn the_cap_bounds_the_share() {
        // The only test touching the process-wide state.
        let all = cores();
        set_per_conversion(Some(0));
        assert_eq!(per_conversion(), 1, "the converting thread always works");
        set_per_conversion(Some(all + 10));
        assert_eq!(per_conversion(), all, "never above the cores");
        set_per_conversion(None);
        {
            let _a = running();
            let _b = running();
            assert_eq!(per_conversion(), share_of(all, 2));
        }
        assert_eq!(per_conversion(), all);
    }
}

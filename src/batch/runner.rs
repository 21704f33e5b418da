//! Runs a plan's items N at a time: N worker threads claim the next item in line order,
//! and this thread hands each finished item's report to the caller as it comes (so a
//! report line appears the moment its item ends, whatever the others are doing).
//!
//! Each conversion counts as running while it runs (`threads::running`), so the cores are
//! divided between the conversions running at the moment: cores / N each while N run,
//! instead of each starting a helper per core, and more for the last ones when the
//! others are done. Cancellation (SIGINT,
//! SIGTERM): no item starts after it; running ones stop, their temporary files removed;
//! the summary counts what never started.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use crate::batch::item;
use crate::batch::plan::Plan;
use crate::batch::report::{ItemReport, Summary};
use crate::batch::shard::Shard;
use crate::cancel::Cancel;
use crate::threads;

/// The most conversions side by side.
pub const MAX_JOBS: usize = 256;

#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Conversions side by side (1..=MAX_JOBS).
    pub jobs: usize,
    /// Which share of the plan `plan` holds (for the summary).
    pub shard: Shard,
    /// SOURCE_DATE_EPOCH: reproducible ids for every item.
    pub reproducible_time: Option<u64>,
    /// A cap on the threads each conversion may keep busy; None: its share of the cores
    /// among the conversions running.
    pub threads_per_item: Option<usize>,
}

/// Runs every item of `plan`, calling `on_item` (on this thread) as each finishes;
/// returns the summary.
pub fn run(
    plan: &Plan,
    options: &BatchOptions,
    cancel: &Cancel,
    on_item: &mut dyn FnMut(&ItemReport),
) -> Summary {
    let started = Instant::now();
    let jobs = options.jobs.clamp(1, MAX_JOBS);
    threads::set_per_conversion(options.threads_per_item);
    // What each gets while `jobs` of them run (the last ones get more).
    let share = threads::share(jobs);
    let mut summary = Summary::new(
        plan.path.display().to_string(),
        options.shard,
        jobs,
        options
            .threads_per_item
            .map_or(share, |cap| cap.clamp(1, share)),
        plan.total_items,
        plan.items.len() as u64,
    );
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<ItemReport>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(plan.items.len()) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                // Claim items until there are none, or until cancelled: an item not
                // claimed is never started.
                while !cancel.is_cancelled() {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(it) = plan.items.get(i) else { break };
                    let running = threads::running();
                    let report = item::run(it, options.reproducible_time, cancel);
                    drop(running);
                    if tx.send(report).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for report in rx {
            summary.count(report.status);
            on_item(&report);
        }
    });
    threads::set_per_conversion(None);
    let claimed = next.load(Ordering::SeqCst).min(plan.items.len());
    summary.not_started = (plan.items.len() - claimed) as u64;
    summary.interrupted = cancel.is_cancelled();
    summary.seconds = started.elapsed().as_secs_f64();
    summary
}

//! Bulk migrations: a plan of conversions (JSON lines, one per line), run N at a time,
//! resumable, and shardable across machines with no coordinator.
//!
//! - [`plan`]: reading a plan; a bad line is that item's failure, not the batch's.
//! - [`shard`]: `--shard I/N`, which lines a run takes.
//! - [`record`]: the record a finished item leaves beside its output, which makes a
//!   second run skip it.
//! - [`item`]: one item, run as `convert` runs it.
//! - [`runner`]: N items side by side, sharing the cores, stopping on cancellation.
//! - [`report`]: the per-item lines and the summary.
//!
//! ```no_run
//! use std::path::Path;
//! use vdconv::Cancel;
//! use vdconv::batch::{BatchOptions, LineDefaults, Plan, Shard};
//!
//! let plan = Plan::read(Path::new("plan.jsonl"), Shard::WHOLE, LineDefaults::default())?;
//! let options = BatchOptions { jobs: 2, shard: Shard::WHOLE, reproducible_time: None, threads_per_item: None };
//! let summary = vdconv::batch::run(&plan, &options, &Cancel::new(), &mut |item| {
//!     println!("line {}: {}", item.line, item.status.name());
//! });
//! std::process::exit(summary.exit_code().into());
//! # Ok::<(), vdconv::Error>(())
//! ```

pub mod item;
pub mod plan;
pub mod record;
pub mod report;
pub mod runner;
pub mod shard;

pub use plan::{Item, ItemSpec, LineDefaults, Plan};
pub use report::{ItemReport, Status, Summary};
pub use runner::{BatchOptions, MAX_JOBS, run};
pub use shard::Shard;

//! `vdconv batch PLAN [-j N] [--shard I/N] [--json]`: the library's runner, with a line
//! per item as it finishes (JSON lines on stdout with --json, else a sentence on stderr)
//! and a closing summary.
//!
//! Exit: 0 when every item was converted or skipped, 1 when any failed (the others still
//! ran), 2 usage, 3 the plan cannot be read; SIGINT/SIGTERM: the summary, then the signal
//! re-raised.

use std::io::Write;

use serde::Serialize;
use vdconv::batch::{BatchOptions, ItemReport, LineDefaults, Plan, Shard, Status, Summary};
use vdconv::{Cancel, Error};

use crate::cli::BatchArgs;

pub fn run(args: &BatchArgs, cancel: &Cancel) -> Result<u8, Error> {
    keep_freed_buffers();
    let common = &args.common;
    let reproducible_time = source_date_epoch()?;
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let defaults = LineDefaults {
        allow_outside_paths: common.allow_outside_paths,
        raw_fallback: common.input_format.is_some(),
    };
    let plan = Plan::read(&args.plan, shard, defaults)?;
    let options = BatchOptions {
        jobs: args.jobs,
        shard,
        reproducible_time,
        threads_per_item: None,
    };
    let summary = vdconv::batch::run(&plan, &options, cancel, &mut |item| {
        if common.json {
            json_line(item);
        } else {
            say_item(item, common.quiet);
        }
    });
    if common.json {
        json_line(&summary);
    } else if !common.quiet {
        say_summary(&summary);
    }
    if let Some(signal) = cancel.signal() {
        crate::reraise(signal);
        return Ok(vdconv::ExitClass::Interrupted.code());
    }
    Ok(summary.exit_code())
}

/// Every conversion allocates a few MiB of chunk buffers and frees them when done. By
/// default glibc maps each such buffer afresh (mmap above 128 KiB) and hands freed memory
/// back to the kernel, so the next item faults it all in again: measured on the 16-disk
/// benchmark plan, 6x the page faults and a tenth more CPU time than keeping it. Kept
/// memory never exceeds the batch's peak (a few MiB per conversion side by side).
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before the workers start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// SOURCE_DATE_EPOCH, as `convert` reads it: reproducible ids for every item.
fn source_date_epoch() -> Result<Option<u64>, Error> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            Error::usage(
                Some("SOURCE_DATE_EPOCH"),
                format!("{v:?} is not a number of seconds since 1970"),
            )
        }),
        Err(_) => Ok(None),
    }
}

/// One compact JSON line on stdout, flushed so a consumer sees each item as it ends. A
/// stdout that went away loses the report, not the conversions: the batch goes on and
/// its exit code still tells.
fn json_line<T: Serialize>(doc: &T) {
    if let Ok(mut text) = serde_json::to_vec(doc) {
        text.push(b'\n');
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&text).and_then(|()| out.flush());
    }
}

fn say_item(item: &ItemReport, quiet: bool) {
    let mut err = std::io::stderr().lock();
    let what = match (&item.source, &item.destination) {
        (Some(s), Some(d)) => format!(" {s} -> {d}"),
        _ => String::new(),
    };
    match item.status {
        Status::Failed => {
            let message = item.error.as_ref().map_or("", |e| e.message.as_str());
            let _ = writeln!(err, "vdconv: line {}: failed{what}: {message}", item.line);
        }
        _ if quiet => return,
        Status::Converted => {
            let _ = writeln!(
                err,
                "vdconv: line {}: converted{what} ({} bytes virtual, {} bytes of data) in {:.2}s",
                item.line,
                item.virtual_size.unwrap_or(0),
                item.data_bytes_written.unwrap_or(0),
                item.seconds
            );
        }
        Status::Skipped => {
            let _ = writeln!(
                err,
                "vdconv: line {}: skipped{what} (up to date)",
                item.line
            );
        }
    }
    if !quiet {
        for w in &item.warnings {
            let _ = writeln!(err, "vdconv: line {}: warning: {w}", item.line);
        }
    }
}

fn say_summary(s: &Summary) {
    let stopped = if s.interrupted {
        format!("; interrupted, {} not started", s.not_started)
    } else {
        String::new()
    };
    let _ = writeln!(
        std::io::stderr(),
        "vdconv: batch {} (shard {}, -j {}): {} converted, {} skipped, {} failed of {} items in {:.2}s{stopped}",
        s.plan,
        s.shard,
        s.jobs,
        s.converted,
        s.skipped,
        s.failed,
        s.items,
        s.seconds
    );
}

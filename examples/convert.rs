//! Converting a disk through the library, as another Rust tool would: open the source
//! (its format detected from its content), validate a plan, convert with progress and a
//! cancel token, and read the typed report or error.
//!
//!     cargo run --example convert -- SRC DST
//!
//! A tool that needs no command line can depend on vdconv with
//! `default-features = false`: the library pulls in no clap, indicatif or signal handling.

use std::path::{Path, PathBuf};

use vdconv::plan::{ConvertPlan, ConvertRequest, DiskType};
use vdconv::{Cancel, OpenOptions};

fn main() -> std::process::ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [src, dst] = args.as_slice() else {
        eprintln!("usage: convert SRC DST");
        return std::process::ExitCode::from(2);
    };
    match run(src, dst) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Typed: a program can match on the kind, the file and the offset.
            eprintln!("{} error ({}): {e}", e.kind().name(), e.class().code());
            std::process::ExitCode::from(e.class().code())
        }
    }
}

fn run(src: &Path, dst: &Path) -> Result<(), vdconv::Error> {
    // A token the caller owns: set it (from another thread, a signal handler, a UI) and
    // every long walk stops, leaving nothing behind.
    let cancel = Cancel::new();
    let options = OpenOptions {
        cancel: cancel.clone(),
        ..Default::default()
    };
    let mut disk = vdconv::open(src, &options)?;
    for w in disk.warnings() {
        eprintln!("warning: {w}");
    }
    // Everything not asked is decided by the plan: the format from DST's extension, the
    // block size from the format.
    let plan = ConvertPlan::new(
        dst,
        &ConvertRequest {
            disk_type: Some(DiskType::Dynamic),
            verify: true,
            ..Default::default()
        },
    )?;
    let report = vdconv::convert::convert(disk.as_mut(), &plan, &cancel, &mut |p| {
        if p.done == p.total {
            eprintln!("{:?} done: {} bytes", p.phase, p.total);
        }
    })?;
    println!(
        "{}: {} bytes virtual, {} bytes of data, SHA-256 {}",
        report.destination.display(),
        report.virtual_size,
        report.data_bytes_written,
        report.sha256.as_deref().unwrap_or("-")
    );
    Ok(())
}

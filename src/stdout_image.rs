//! DST `-`: the image goes to stdout, forward, in one pass over the output
//! (`vdconv::stream_out`). stdout then carries the image alone: --json is refused, and
//! progress, warnings and the closing line go to stderr as always.

use std::fs::File;
use std::io::IsTerminal;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

use vdconv::convert::{ConvertReport, Progress};
use vdconv::plan::ConvertPlan;
use vdconv::{Cancel, Disk, Error};

use crate::cli::ConvertArgs;

/// Refuses, before the source is opened, what cannot go with an image on stdout.
pub fn check(args: &ConvertArgs, plan: &ConvertPlan) -> Result<(), Error> {
    if args.common.json {
        return Err(Error::usage(
            Some("--json"),
            "stdout carries the image when DST is -; drop --json (the summary goes to stderr)",
        ));
    }
    vdconv::stream_out::check_plan(plan)?;
    if std::io::stdout().is_terminal() {
        return Err(Error::usage(
            None,
            "DST - writes a disk image to stdout, which is a terminal; redirect it or pipe it into a program",
        ));
    }
    Ok(())
}

/// Converts into stdout. Writes go straight to descriptor 1 in large pieces (not through
/// the line-buffered `Stdout`).
pub fn convert(
    disk: &mut dyn Disk,
    plan: &ConvertPlan,
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<ConvertReport, Error> {
    // SAFETY: descriptor 1 stays open for the life of the process; ManuallyDrop never
    // closes it, and nothing else writes to stdout meanwhile.
    let mut stdout = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    vdconv::stream_out::convert_to_writer(disk, plan, &mut *stdout, cancel, progress)
}

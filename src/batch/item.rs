//! One item of a batch, run as `convert` would run it (the same plan validation, the same
//! pipeline), between a look at its record (skip what is done) and writing a new one.

use std::time::Instant;

use crate::batch::plan::{Item, ItemSpec};
use crate::batch::record::{self, Options, Record, SourceIdentity, Verdict};
use crate::batch::report::{ItemReport, Status};
use crate::cancel::Cancel;
use crate::disk::OpenOptions;
use crate::error::{Error, ErrorKind, Result, Subject};
use crate::plan::{ConvertPlan, DiskType};

/// Runs `item`; never fails (a failure is the report's).
pub fn run(item: &Item, reproducible_time: Option<u64>, cancel: &Cancel) -> ItemReport {
    let started = Instant::now();
    let mut report = ItemReport::new(item.line, Status::Failed);
    match &item.spec {
        Err(bad) => {
            report.id = bad.id.clone();
            report.source = bad.source.clone();
            report.destination = bad.destination.clone();
            report.fail(&bad.error);
        }
        Ok(spec) => {
            report.id = spec.id.clone();
            report.source = Some(spec.source_text.clone());
            report.destination = Some(spec.destination_text.clone());
            if let Err(e) = convert(spec, reproducible_time, cancel, &mut report) {
                report.fail(&as_plan_key(e));
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}

fn convert(
    spec: &ItemSpec,
    reproducible_time: Option<u64>,
    cancel: &Cancel,
    report: &mut ItemReport,
) -> Result<()> {
    let mut request = spec.request.clone();
    request.reproducible_time = reproducible_time;
    let mut plan = ConvertPlan::new(&spec.destination, &request)?;
    report.format = Some(plan.format.name());
    report.disk_type = Some(match plan.disk_type {
        DiskType::Fixed => "fixed",
        DiskType::Dynamic => "dynamic",
    });
    cancel.check()?;
    let options = OpenOptions {
        allow_outside_paths: spec.allow_outside_paths,
        cancel: cancel.clone(),
        raw_fallback: spec.raw_fallback,
        ..Default::default()
    };
    let mut disk = crate::open(&spec.source, &options)?;
    let source = SourceIdentity::of(disk.as_ref(), &spec.source_text)?;
    let wanted = Options::of(&plan);
    let record_path = record::path_for(&plan.destination);
    match record::judge(&record_path, &plan.destination, &source, &wanted) {
        Verdict::UpToDate(done) => {
            report.status = Status::Skipped;
            report.virtual_size = Some(done.output.virtual_size);
            report.file_size = Some(done.output.size);
            report.data_bytes_written = Some(0);
            report.verified = done.options.verify.then_some(true);
            report.sha256 = done.output.sha256.clone();
            report.record = Some(record_path.display().to_string());
            return Ok(());
        }
        Verdict::Stale => {
            // Ours to redo: the record goes first, so it never outlives the output it
            // describes, and the output is replaced when the new one is committed.
            record::remove(&record_path)?;
            plan.force = true;
        }
        Verdict::None => {
            if std::fs::symlink_metadata(&record_path).is_ok() {
                return Err(record::foreign_record(&record_path));
            }
            if std::fs::symlink_metadata(&plan.destination).is_ok() {
                // Left by a run killed between its output and its record, or not ours.
                if record::written_by_vdconv(&plan.destination) || spec.request.force {
                    plan.force = true;
                } else {
                    return Err(record::foreign_output(&plan.destination));
                }
            }
        }
    }
    // The advice `convert` gives on stderr, in the item's warnings.
    let mut advice = match plan.target {
        Some(t) => crate::target::advice(t, disk.as_mut()),
        None => Vec::new(),
    };
    let size = disk.virtual_size();
    let out_size = plan.output_size(size)?;
    if out_size != size {
        advice.push(format!(
            "virtual size rounded up from {size} to {out_size} bytes (Azure takes whole MiB); the added bytes are zeros"
        ));
    }
    let done = crate::convert::convert(disk.as_mut(), &plan, cancel, &mut |_| {})?;
    report.warnings = done.warnings.clone();
    report.warnings.extend(advice);
    report.virtual_size = Some(done.virtual_size);
    report.file_size = Some(done.file_size);
    report.data_bytes_written = Some(done.data_bytes_written);
    report.verified = done.verified;
    report.sha256 = done.sha256.clone();
    // The output is committed; its record follows. Killed in between, the next run
    // finds a vdconv output without a record and converts it again.
    let record = Record::new(
        source,
        wanted,
        &plan.destination,
        &spec.destination_text,
        done.virtual_size,
        done.sha256,
    )?;
    record.write(&record_path)?;
    report.status = Status::Converted;
    report.record = Some(record_path.display().to_string());
    Ok(())
}

/// A usage error names the plan's key (`block_size`) where `convert` names its option
/// (`--block-size`): the plan is what the user wrote.
fn as_plan_key(e: Error) -> Error {
    match e.subject() {
        Some(Subject::Option(o)) if e.kind() == ErrorKind::Usage && o.starts_with("--") => {
            Error::usage(Some(&o[2..].replace('-', "_")), e.detail())
        }
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_name_plan_keys() {
        let e = as_plan_key(Error::usage(
            Some("--block-size"),
            "3M is not a power of two",
        ));
        assert_eq!(e.to_string(), "block_size: 3M is not a power of two");
        let e = as_plan_key(Error::usage(Some("SOURCE_DATE_EPOCH"), "x"));
        assert_eq!(e.to_string(), "SOURCE_DATE_EPOCH: x");
    }
}

//! What a batch says: one line per item as it finishes, and a closing summary (JSON
//! lines with --json; docs/json.md, section `batch`, is the contract).

use serde::Serialize;

use crate::batch::shard::Shard;
use crate::report::{ErrorDetails, ErrorReport, SCHEMA_VERSION};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Converted in this run (and its record written).
    Converted,
    /// Its record matched the source, the options and the output: nothing done.
    Skipped,
    /// It failed (or was interrupted); `error` says why. Nothing was left at its
    /// destination.
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Converted => "converted",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        }
    }
}

/// One item's outcome. Every field is present; null where it does not apply.
#[derive(Debug, Serialize)]
pub struct ItemReport {
    pub schema_version: u32,
    /// Always "item".
    pub event: &'static str,
    /// The plan line (1-based).
    pub line: u64,
    /// The line's `id`, if it has one.
    pub id: Option<String>,
    /// As the plan names them (null when the line could not be read that far).
    pub source: Option<String>,
    pub destination: Option<String>,
    pub status: Status,
    /// Why it failed; null otherwise.
    pub error: Option<ErrorDetails>,
    /// The output's shape (null when the line failed before it was decided).
    pub format: Option<&'static str>,
    #[serde(rename = "type")]
    pub disk_type: Option<&'static str>,
    pub virtual_size: Option<u64>,
    /// Bytes of the output file (converted, or as recorded when skipped).
    pub file_size: Option<u64>,
    /// Bytes of disk data written in this run (0 when skipped).
    pub data_bytes_written: Option<u64>,
    /// true when the output was verified (now, or when it was made); null otherwise.
    pub verified: Option<bool>,
    /// SHA-256 of the output's virtual contents, when verified.
    pub sha256: Option<String>,
    /// The record beside the output (null when failed).
    pub record: Option<String>,
    pub warnings: Vec<String>,
    /// Wall time of this item in this run.
    pub seconds: f64,
}

impl ItemReport {
    /// A report with nothing filled in but the line and status.
    pub fn new(line: u64, status: Status) -> Self {
        ItemReport {
            schema_version: SCHEMA_VERSION,
            event: "item",
            line,
            id: None,
            source: None,
            destination: None,
            status,
            error: None,
            format: None,
            disk_type: None,
            virtual_size: None,
            file_size: None,
            data_bytes_written: None,
            verified: None,
            sha256: None,
            record: None,
            warnings: Vec::new(),
            seconds: 0.0,
        }
    }

    /// The error document's details for `e`.
    pub fn fail(&mut self, e: &crate::Error) {
        self.status = Status::Failed;
        self.error = Some(ErrorReport::new(e).error);
    }
}

/// The closing line.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    /// Always "summary".
    pub event: &'static str,
    /// The plan as named.
    pub plan: String,
    /// "I/N": which share of the plan this run took.
    pub shard: String,
    pub jobs: usize,
    /// Threads each conversion could keep busy.
    pub threads_per_item: usize,
    /// Items in the whole plan, and in this shard.
    pub plan_items: u64,
    pub items: u64,
    pub converted: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Items never started because the batch was interrupted.
    pub not_started: u64,
    /// Whether SIGINT or SIGTERM stopped the batch.
    pub interrupted: bool,
    pub seconds: f64,
}

impl Summary {
    pub fn new(
        plan: String,
        shard: Shard,
        jobs: usize,
        threads: usize,
        plan_items: u64,
        items: u64,
    ) -> Self {
        Summary {
            schema_version: SCHEMA_VERSION,
            event: "summary",
            plan,
            shard: shard.to_string(),
            jobs,
            threads_per_item: threads,
            plan_items,
            items,
            converted: 0,
            skipped: 0,
            failed: 0,
            not_started: 0,
            interrupted: false,
            seconds: 0.0,
        }
    }

    pub fn count(&mut self, status: Status) {
        match status {
            Status::Converted => self.converted += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed += 1,
        }
    }

    /// The exit code a batch ends with when not interrupted: 0 when every item
    /// succeeded (converted or skipped), 1 when any failed.
    pub fn exit_code(&self) -> u8 {
        if self.failed > 0 { 1 } else { 0 }
    }
}

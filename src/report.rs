//! What every JSON document shares: the schema version, and the document a failing
//! command prints with `--json`. The field-by-field contract is docs/json.md.

use serde::Serialize;

use crate::error::{Error, Subject};

/// Version of the JSON documents' schema: raised when a field changes meaning or goes
/// away; new fields may appear within a version.
pub const SCHEMA_VERSION: u32 = 1;

/// `{"schema_version": 1, "error": {...}}`.
#[derive(Debug, Serialize)]
pub struct ErrorReport {
    pub schema_version: u32,
    pub error: ErrorDetails,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetails {
    /// A stable name per error class (docs/json.md lists them).
    pub kind: &'static str,
    /// The process's exit code.
    pub exit: u8,
    /// The file at fault, or the option's name when an option is; null when neither.
    pub file: Option<String>,
    /// Byte offset of the faulty structure in `file`, when there is one.
    pub offset: Option<u64>,
    /// The structure at fault, when there is one.
    pub structure: Option<&'static str>,
    /// The format rule broken (a `check` rule id), when there is one.
    pub rule: Option<&'static str>,
    /// The one-line message, as printed without --json.
    pub message: String,
}

impl ErrorReport {
    pub fn new(e: &Error) -> Self {
        ErrorReport {
            schema_version: SCHEMA_VERSION,
            error: ErrorDetails {
                kind: e.kind().name(),
                exit: e.class().code(),
                file: e.subject().map(|s| match s {
                    Subject::File(p) => p.display().to_string(),
                    Subject::Option(o) => o.clone(),
                }),
                offset: e.offset(),
                structure: e.structure(),
                rule: e.rule().map(|r| r.id),
                message: e.to_string(),
            },
        }
    }
}

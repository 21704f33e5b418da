//! Structural validation: one finding per broken rule, naming the rule and where.
//!
//! The checks read the file's structures directly rather than through the readers, so
//! that one damaged structure does not hide the others.

mod azure;
mod vhd;
mod vhdx;
mod vmdk;

use std::path::Path;

use serde::Serialize;

use crate::detect::{Format, detect};
use crate::disk::InputFile;
use crate::error::{Error, Result};
use crate::vmdk::OpenOptions;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable identifier, e.g. `vhdx-header-checksum`.
    pub rule: &'static str,
    /// File offset of the structure, where there is one.
    pub offset: Option<u64>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub file: String,
    pub format: &'static str,
    /// Which rules were applied: "structure" or a target ("azure").
    pub rules: &'static str,
    pub findings: Vec<Finding>,
}

impl CheckReport {
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Collects findings.
#[derive(Default)]
pub(crate) struct Findings(pub Vec<Finding>);

impl Findings {
    pub fn add(
        &mut self,
        rule: &'static str,
        offset: impl Into<Option<u64>>,
        message: impl Into<String>,
    ) {
        self.0.push(Finding {
            rule,
            offset: offset.into(),
            message: message.into(),
        });
    }

    /// Adds a finding when `broken`.
    pub fn check(
        &mut self,
        broken: bool,
        rule: &'static str,
        offset: u64,
        message: impl FnOnce() -> String,
    ) {
        if broken {
            self.add(rule, offset, message());
        }
    }
}

/// Checks the structure of the image at `path`.
pub fn check(path: &Path, options: OpenOptions) -> Result<CheckReport> {
    let file = InputFile::open(path)?;
    let format = detect(&file)?;
    let mut findings = Findings::default();
    match format {
        Format::Vhdx => vhdx::check(&file, &mut findings)?,
        Format::Vhd => vhd::check(&file, &mut findings)?,
        vmdk => vmdk::check(file, vmdk, options, &mut findings)?,
    }
    Ok(CheckReport {
        file: path.display().to_string(),
        format: format.name(),
        rules: "structure",
        findings: findings.0,
    })
}

/// Checks the image at `path` against Azure's rules for an upload.
pub fn check_azure(path: &Path) -> Result<CheckReport> {
    let file = InputFile::open(path)?;
    let format = detect(&file).map(Format::name).unwrap_or("unknown");
    let mut findings = Findings::default();
    azure::check(&file, &mut findings)?;
    Ok(CheckReport {
        file: path.display().to_string(),
        format,
        rules: "azure",
        findings: findings.0,
    })
}

/// Ranges that must not overlap: (start, end, what).
pub(crate) fn overlaps(mut ranges: Vec<(u64, u64, String)>) -> Vec<(String, String, u64)> {
    ranges.sort_by_key(|r| r.0);
    let mut out = Vec::new();
    let mut reach: Option<(u64, String)> = None;
    for (start, end, what) in ranges {
        if let Some((prev_end, prev_what)) = &reach
            && start < *prev_end
        {
            out.push((prev_what.clone(), what.clone(), start));
        }
        if reach.as_ref().is_none_or(|(e, _)| end > *e) {
            reach = Some((end, what));
        }
    }
    out
}

/// Errors that stop a check from starting at all are input errors; a reader error met
/// while checking becomes a finding instead.
pub(crate) fn as_finding(e: Error) -> Result<Finding> {
    match e {
        Error::Corrupt {
            structure,
            offset,
            detail,
            ..
        } => Ok(Finding {
            rule: "structure",
            offset: Some(offset),
            message: format!("{structure}: {detail}"),
        }),
        Error::Descriptor { line, detail, .. } => Ok(Finding {
            rule: "vmdk-descriptor",
            offset: None,
            message: format!("descriptor line {line}: {detail}"),
        }),
        other @ (Error::InputIo { .. } | Error::Unsupported { .. } | Error::Refused { .. }) => {
            Ok(Finding {
                rule: "unreadable",
                offset: None,
                message: other.to_string(),
            })
        }
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_detection() {
        let r = |s, e, w: &str| (s, e, w.to_string());
        assert!(overlaps(vec![r(0, 10, "a"), r(10, 20, "b")]).is_empty());
        assert_eq!(
            overlaps(vec![r(10, 20, "b"), r(0, 11, "a")]),
            vec![("a".into(), "b".into(), 10)]
        );
        // A long range overlapping a later one past a short one in between.
        assert_eq!(
            overlaps(vec![r(0, 100, "a"), r(10, 20, "b"), r(50, 60, "c")]).len(),
            2
        );
    }
}

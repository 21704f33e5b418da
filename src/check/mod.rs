//! Structural validation: one finding per broken rule, naming the rule (from the shared
//! table in [`crate::rules`]), its severity and where.
//!
//! The checks read the file's structures directly rather than through the readers, so that
//! one damaged structure does not hide the others. A file that cannot be opened at all, or
//! whose format is not recognised, is an error (exit 3), not a finding.

mod azure;
mod vhd;
mod vhdx;
mod vmdk;

use std::path::Path;

use serde::Serialize;

use crate::cancel::Cancel;
use crate::detect::{Format, detect};
use crate::disk::{InputFile, OpenOptions};
use crate::error::{Error, Result};
use crate::report::SCHEMA_VERSION;
use crate::rules::{Rule, Severity};

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable identifier from the rule table, e.g. `vhdx-header-checksum`.
    #[serde(serialize_with = "rule_id")]
    pub rule: &'static Rule,
    /// must, should or habit.
    pub severity: Severity,
    /// The file holding the structure (for split and chained disks; the checked file
    /// otherwise).
    pub file: String,
    /// File offset of the structure, where there is one.
    pub offset: Option<u64>,
    pub message: String,
}

fn rule_id<S: serde::Serializer>(
    rule: &&'static Rule,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(rule.id)
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub schema_version: u32,
    pub file: String,
    pub format: &'static str,
    /// Which rules were applied: "structure", or a target ("azure").
    pub rules: &'static str,
    /// True when no finding breaks a `must` rule (what the exit code says).
    pub clean: bool,
    pub findings: Vec<Finding>,
}

impl CheckReport {
    fn new(path: &Path, format: &'static str, rules: &'static str, findings: Findings) -> Self {
        let clean = !findings.0.iter().any(|f| f.severity == Severity::Must);
        CheckReport {
            schema_version: SCHEMA_VERSION,
            file: path.display().to_string(),
            format,
            rules,
            clean,
            findings: findings.0,
        }
    }
}

/// Collects findings for one checked file.
pub(crate) struct Findings(pub Vec<Finding>, String);

impl Findings {
    fn new(path: &Path) -> Self {
        Findings(Vec::new(), path.display().to_string())
    }

    /// Adds a finding about the checked file.
    pub fn add(
        &mut self,
        rule: &'static Rule,
        offset: impl Into<Option<u64>>,
        message: impl Into<String>,
    ) {
        let file = self.1.clone();
        self.add_in(rule, file, offset, message);
    }

    /// Adds a finding about another file of the disk (an extent, a parent).
    pub fn add_in(
        &mut self,
        rule: &'static Rule,
        file: String,
        offset: impl Into<Option<u64>>,
        message: impl Into<String>,
    ) {
        self.0.push(Finding {
            rule,
            severity: rule.severity,
            file,
            offset: offset.into(),
            message: message.into(),
        });
    }

    /// Adds a finding when `broken`.
    pub fn check(
        &mut self,
        broken: bool,
        rule: &'static Rule,
        offset: u64,
        message: impl FnOnce() -> String,
    ) {
        if broken {
            self.add(rule, offset, message());
        }
    }
}

/// Opens the file to check: failing to open it at all is an error, not a finding.
fn open_checked(path: &Path) -> Result<InputFile> {
    InputFile::open(path)
}

/// Checks the structure of the image at `path`, and of every parent it names: each
/// link's own structure, then whether the parent is found and is the one the link was
/// made on.
pub fn check(path: &Path, options: &OpenOptions) -> Result<CheckReport> {
    let file = open_checked(path)?;
    let format = detect(&file)?;
    let mut findings = Findings::new(path);
    check_structure(file.clone(), format, options, &mut findings)?;
    check_chain(file, format, options, &mut findings)?;
    options.cancel.check()?;
    Ok(CheckReport::new(path, format.name(), "structure", findings))
}

/// One file's structure, its findings naming it.
fn check_structure(
    file: InputFile,
    format: Format,
    options: &OpenOptions,
    f: &mut Findings,
) -> Result<()> {
    let cancel = &options.cancel;
    match format {
        Format::Vhdx => vhdx::check(&file, f, cancel),
        Format::Vhd => vhd::check(&file, f, cancel),
        Format::Raw => Ok(()),
        vmdk => vmdk::check(file, vmdk, options, f),
    }
}

/// Follows the parents of `top` (a snapshot delta or differencing disk): a parent that
/// cannot be found or opened, a cycle, a chain too long, or a parent other than the one
/// a link was made on (identity, format, size) is a finding of the link's rule
/// (`vmdk-parent`, `vhd-parent-locator`, `vhdx-parent-locator`); each parent's own
/// structure is checked as the top's is. A link whose reader refuses it stops the walk:
/// its structural findings say why.
fn check_chain(
    top: InputFile,
    format: Format,
    options: &OpenOptions,
    f: &mut Findings,
) -> Result<()> {
    use crate::chain;
    use crate::disk::chain::MAX_LINKS;
    let mut seen = vec![chain::file_id(&top)?];
    let Ok(mut disk) = chain::open_format(top, format, options) else {
        return Ok(());
    };
    let mut warnings = Vec::new();
    while let Some(link) = disk.parent().cloned() {
        options.cancel.check()?;
        let child = disk.path().display().to_string();
        if seen.len() >= MAX_LINKS {
            f.add_in(
                link.rule,
                child,
                None,
                format!("the chain has more than {MAX_LINKS} links"),
            );
            break;
        }
        let explicit = if seen.len() == 1 {
            options.parent.as_deref()
        } else {
            None
        };
        let file = match chain::find_parent(disk.path(), &link, explicit, options, &mut warnings) {
            Ok(file) => file,
            Err(e) => {
                f.add_in(link.rule, child, None, e.detail().to_string());
                break;
            }
        };
        let id = chain::file_id(&file)?;
        if seen.contains(&id) {
            f.add_in(
                link.rule,
                child,
                None,
                format!(
                    "its parent {} is already a link of the chain: a cycle",
                    file.path().display()
                ),
            );
            break;
        }
        seen.push(id);
        let parent_format = match detect(&file) {
            Ok(format) => format,
            Err(e) => {
                f.add_in(
                    link.rule,
                    child,
                    None,
                    format!("its parent cannot be read: {e}"),
                );
                break;
            }
        };
        let mut sub = Findings::new(file.path());
        check_structure(file.clone(), parent_format, options, &mut sub)?;
        f.0.extend(sub.0);
        let Ok(parent) = chain::open_format(file, parent_format, options) else {
            break;
        };
        if let Err(e) = chain::check_link(
            disk.as_ref(),
            &link,
            parent.as_ref(),
            options.ignore_cid,
            &mut warnings,
        ) {
            f.add_in(link.rule, child, None, e.detail().to_string());
        }
        disk = parent;
    }
    Ok(())
}

/// Checks the image at `path` against Azure's rules for an upload.
pub fn check_azure(path: &Path, cancel: &Cancel) -> Result<CheckReport> {
    let file = open_checked(path)?;
    let format = detect(&file).map(Format::name).unwrap_or("unknown");
    let mut findings = Findings::new(path);
    azure::check(&file, &mut findings)?;
    cancel.check()?;
    Ok(CheckReport::new(path, format, "azure", findings))
}

/// What occupies a range of a file, for overlap messages: kept small, since a table may
/// place millions of blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    Named(&'static str),
    Block(u64),
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Span::Named(n) => f.write_str(n),
            Span::Block(i) => write!(f, "block {i}"),
        }
    }
}

/// Most block ranges collected for an overlap check (32 bytes each): a crafted table may
/// claim far more; past this the check covers the first ones and says so.
pub(crate) const MAX_SPANS: usize = 2 << 20;

/// Ranges that must not overlap: (start, end, what). Returns (earlier, later, where).
pub(crate) fn overlaps(mut ranges: Vec<(u64, u64, Span)>) -> Vec<(Span, Span, u64)> {
    ranges.sort_unstable_by_key(|r| r.0);
    let mut out = Vec::new();
    let mut reach: Option<(u64, Span)> = None;
    for (start, end, what) in ranges {
        if let Some((prev_end, prev_what)) = reach
            && start < prev_end
        {
            out.push((prev_what, what, start));
            // A wrecked table overlaps everywhere: a hundred say enough.
            if out.len() >= 100 {
                break;
            }
        }
        if reach.is_none_or(|(e, _)| end > e) {
            reach = Some((end, what));
        }
    }
    out
}

/// A reader error met while checking becomes a finding: the rule it names, or `fallback`.
/// Errors that are not about the file's structure (an interruption, an OS failure) stay
/// errors.
pub(crate) fn as_finding(e: Error, fallback: &'static Rule, f: &mut Findings) -> Result<()> {
    use crate::error::ErrorKind as K;
    match e.kind() {
        K::Corrupt
        | K::Truncated
        | K::Unsupported
        | K::PathRefused
        | K::NotAFile
        | K::MissingExtent
        | K::MissingParent
        | K::MissingFile
        | K::CidMismatch
        | K::ChainBroken
        | K::IsExtent => {
            let file = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| f.1.clone());
            let rule = e.rule().unwrap_or(match e.kind() {
                K::Truncated => truncated_rule(fallback),
                _ => fallback,
            });
            let message = match (e.structure(), e.offset()) {
                (Some(s), Some(o)) => format!("{s} at offset {o}: {}", e.detail()),
                _ => e.detail().to_string(),
            };
            f.add_in(rule, file, e.offset(), message);
            Ok(())
        }
        _ => Err(e),
    }
}

/// The truncation rule of the format `fallback` belongs to.
fn truncated_rule(fallback: &'static Rule) -> &'static Rule {
    use crate::rules::*;
    if fallback.id.starts_with("vhdx-") {
        &VHDX_TRUNCATED
    } else if fallback.id.starts_with("vhd-") {
        &VHD_TRUNCATED
    } else {
        &VMDK_TRUNCATED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_detection() {
        let r = |s, e, w: &'static str| (s, e, Span::Named(w));
        assert!(overlaps(vec![r(0, 10, "a"), r(10, 20, "b")]).is_empty());
        assert_eq!(
            overlaps(vec![r(10, 20, "b"), r(0, 11, "a")]),
            vec![(Span::Named("a"), Span::Named("b"), 10)]
        );
        // A long range overlapping a later one past a short one in between.
        assert_eq!(
            overlaps(vec![r(0, 100, "a"), r(10, 20, "b"), r(50, 60, "c")]).len(),
            2
        );
    }
}

//! Building findings: the catalogue's severities in one place, and a collector.

use crate::guest::report::{Finding, Location, Severities, Severity};

pub const B: Option<Severity> = Some(Severity::Block);
pub const W: Option<Severity> = Some(Severity::Warn);
pub const I: Option<Severity> = Some(Severity::Info);
pub const NA: Option<Severity> = None;

/// Severities in catalogue column order: Hyper-V Gen1, Gen2, Azure.
pub const fn sev(
    gen1: Option<Severity>,
    gen2: Option<Severity>,
    azure: Option<Severity>,
) -> Severities {
    Severities::new(gen1, gen2, azure)
}

/// Findings collected while inspecting.
#[derive(Default)]
pub struct Findings {
    pub list: Vec<Finding>,
}

impl Findings {
    pub fn add(
        &mut self,
        id: &str,
        check: &str,
        severity: Severities,
        message: String,
        location: Option<Location>,
        fix: &str,
    ) {
        // Every id the checks produce is catalogued with the severities it may carry
        // (docs/json.md lists the catalogue); a check that strays is a bug in the check.
        debug_assert!(
            super::catalogue::entry(id).is_some_and(|e| e.allows(check, &severity)),
            "finding {id} ({check}, {severity:?}) is not in the catalogue"
        );
        self.list.push(Finding {
            id: id.to_string(),
            check: check.to_string(),
            severity,
            message,
            location,
            fix: fix.to_string(),
        });
    }
}

/// A location in a file.
pub fn at(volume: Option<&str>, path: &str, line: Option<usize>) -> Option<Location> {
    Some(Location {
        volume: volume.map(str::to_string),
        path: path.to_string(),
        line,
    })
}

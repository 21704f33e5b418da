//! Whole-VM exports, OVA files and OVF folders, as inputs of `info` and `convert`. The
//! `ova` module parses packages; this one converts and describes their disks:
//!
//! - `detect`: is the input an export, a pipe, or a disk image (from content);
//! - `disk`: a package's disk read in place (a bounded window: no copy), front to back
//!   (gzip, chunks; hashed piece by piece as it passes), or blank;
//! - `layout`: which disks, and where each goes (DST a file or a folder);
//! - `advice`: the firmware's target, and warnings when the asked one does not fit;
//! - `file`: converting a package opened from a file or a folder;
//! - `pipe`: converting an OVA read from a pipe in one pass;
//! - `info`: describing a package and what vdconv finds in each disk;
//! - `report`: the JSON of a conversion.
//!
//! Every disk is converted under a temporary name; all are put in place together only
//! once every one succeeded and every digest the manifest lists matched.

pub mod advice;
pub mod detect;
pub mod disk;
pub mod file;
pub mod info;
pub mod layout;
pub mod pipe;
pub mod report;

use std::path::Path;

use crate::cancel::Cancel;
use crate::convert::{ConvertReport, Progress, Staged};
use crate::error::{Error, Result};
use crate::plan::ConvertRequest;

pub use detect::{ExportKind, Input, StreamInput, StreamKind, is_stream, sniff};
pub use info::{ExportInfo, describe};
pub use report::{ExportDiskReport, ExportReport, ManifestSummary, VmSummary};

/// What the user asked of an export's conversion.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Applies to every disk.
    pub convert: ConvertRequest,
    /// `--disk N|ID`: convert only this disk.
    pub disk: Option<String>,
    /// Check every digest the manifest lists (default); false with --no-verify-manifest.
    pub verify_manifest: bool,
}

/// What a conversion says while it runs (the binary prints it on stderr).
pub trait Observer {
    /// Advice: the target the firmware suggests.
    fn note(&mut self, text: &str);
    /// An anomaly tolerated, or a target that does not fit.
    fn warning(&mut self, text: &str);
    /// Disk `number` of `count` (`name`) starts.
    fn disk(&mut self, number: usize, count: usize, name: &str);
    fn progress(&mut self, p: Progress);
}

/// An observer that says nothing.
pub struct Silent;

impl Observer for Silent {
    fn note(&mut self, _: &str) {}
    fn warning(&mut self, _: &str) {}
    fn disk(&mut self, _: usize, _: usize, _: &str) {}
    fn progress(&mut self, _: Progress) {}
}

/// Converts the export `src` (an `.ova`, an `.ovf`, or a pipe carrying an OVA, as
/// `sniff` found) into `dst`.
pub fn convert_export(
    src: &Path,
    input: Input,
    dst: &Path,
    req: &ExportRequest,
    cancel: &Cancel,
    obs: &mut dyn Observer,
) -> Result<ExportReport> {
    match input {
        Input::Package(kind) => file::convert(src, kind, dst, req, cancel, obs),
        Input::Stream(StreamInput {
            kind: StreamKind::Ova,
            reader,
        }) => pipe::convert(src, reader, dst, req, cancel, obs),
        Input::Stream(StreamInput {
            kind: StreamKind::Vmdk,
            ..
        }) => Err(Error::usage(
            None,
            "the pipe carries a VMDK, not an export; convert it with convert_piped_disk",
        )),
    }
}

/// Converts a bare streamOptimized VMDK read from a pipe into `dst`.
pub fn convert_piped_disk(
    src: &Path,
    input: StreamInput,
    dst: &Path,
    req: &ConvertRequest,
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<ConvertReport> {
    pipe::convert_disk(src, input.reader, dst, req, cancel, progress)
}

/// Puts every staged image in place. When one cannot be, those already renamed are
/// removed again (unless --force, when they may have replaced files: those stay), so a
/// failed run leaves nothing new behind.
fn commit_all(staged: Vec<Staged>, force: bool) -> Result<Vec<ConvertReport>> {
    let mut done: Vec<ConvertReport> = Vec::with_capacity(staged.len());
    let mut rest = staged.into_iter();
    for s in rest.by_ref() {
        match s.commit() {
            Ok(report) => done.push(report),
            Err(e) => {
                if !force {
                    for r in &done {
                        let _ = std::fs::remove_file(&r.destination);
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(done)
}

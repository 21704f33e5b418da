//! The record a finished item leaves beside its output (`DST.vdconv.json`), which lets a
//! plan run again skip what is done. It names what was read (the source's files with
//! their sizes and modification times, and the VMDK's CID), the options that shape the
//! output, and the output as it was committed (size, modification time, SHA-256 when
//! verified).
//!
//! The output is committed first and the record after it, each atomically (a temporary
//! file renamed into place), so a record never describes a partial output. An item is
//! skipped only when its record matches the source, the options and the output still on
//! disk; anything else is converted again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::disk::Disk;
use crate::error::{Error, ErrorKind, Result};
use crate::output::{HolePolicy, Output};
use crate::plan::ConvertPlan;
use crate::sink::Sink;

/// What every record file's name ends with.
pub const SUFFIX: &str = ".vdconv.json";

/// What the `record` field holds, to tell a record from any other JSON file.
const KIND: &str = "vdconv-batch-record";

/// The record's path for the output `dst`: beside it, `DST.vdconv.json`.
pub fn path_for(dst: &Path) -> PathBuf {
    let mut name = dst.as_os_str().to_os_string();
    name.push(SUFFIX);
    PathBuf::from(name)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub schema_version: u32,
    /// Always "vdconv-batch-record".
    pub record: String,
    /// The vdconv that wrote the output (for the audit; not compared).
    pub vdconv_version: String,
    pub source: SourceIdentity,
    pub options: Options,
    pub output: OutputIdentity,
    /// When the output was committed, seconds since the Unix epoch.
    pub finished_at: u64,
}

/// What the source was when it was converted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIdentity {
    /// As the plan names it.
    pub path: String,
    pub virtual_size: u64,
    /// The VMDK's CID (which VMware changes with the contents); null for other formats.
    pub content_id: Option<String>,
    /// Every file the source reads: the descriptor and its extents.
    pub files: Vec<FileStamp>,
}

/// A file as `stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Relative to the source's folder when inside it (so the record survives the tree
    /// being mounted elsewhere), else as the source names it.
    pub path: String,
    pub size: u64,
    /// Modification time: seconds and nanoseconds since the Unix epoch.
    pub mtime: i64,
    pub mtime_nsec: i64,
}

/// The options that decide the output's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    pub format: String,
    #[serde(rename = "type")]
    pub disk_type: String,
    pub target: Option<String>,
    pub block_size: Option<u64>,
    pub logical_sector: Option<u32>,
    pub physical_sector: Option<u32>,
    pub sparse: String,
    pub verify: bool,
    /// SOURCE_DATE_EPOCH, which decides the ids.
    pub source_date_epoch: Option<u64>,
}

/// The output as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputIdentity {
    /// As the plan names it.
    pub path: String,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub virtual_size: u64,
    /// SHA-256 of the virtual contents, when verified.
    pub sha256: Option<String>,
}

fn stamp(path: &Path, shown: String) -> Result<FileStamp> {
    let m = std::fs::metadata(path).map_err(|e| Error::input_io(path, "the file's metadata", e))?;
    Ok(FileStamp {
        path: shown,
        size: m.len(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
    })
}

impl SourceIdentity {
    /// The identity of the opened `disk`, whose plan text is `text`.
    pub fn of(disk: &dyn Disk, text: &str) -> Result<Self> {
        let folder = disk.path().parent().unwrap_or(Path::new(""));
        let mut names = disk.files();
        // A monolithic disk names its one file as descriptor and extent.
        let mut seen = std::collections::HashSet::new();
        names.retain(|f| seen.insert(f.clone()));
        let files = names
            .iter()
            .map(|f| {
                let shown = f
                    .strip_prefix(folder)
                    .ok()
                    .filter(|r| !r.as_os_str().is_empty())
                    .unwrap_or(f);
                stamp(f, shown.display().to_string())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SourceIdentity {
            path: text.to_string(),
            virtual_size: disk.virtual_size(),
            content_id: disk.content_id(),
            files,
        })
    }
}

impl Options {
    pub fn of(plan: &ConvertPlan) -> Self {
        Options {
            format: plan.format.name().to_string(),
            disk_type: match plan.disk_type {
                crate::plan::DiskType::Fixed => "fixed",
                crate::plan::DiskType::Dynamic => "dynamic",
            }
            .to_string(),
            target: plan.target.map(|t| t.name().to_string()),
            block_size: plan.block_size,
            logical_sector: plan.logical_sector,
            physical_sector: plan.physical_sector,
            sparse: match plan.sparse {
                crate::plan::SparseMode::Auto => "auto",
                crate::plan::SparseMode::Always => "always",
                crate::plan::SparseMode::Never => "never",
            }
            .to_string(),
            verify: plan.verify,
            source_date_epoch: plan.reproducible_time,
        }
    }

    /// Whether an output made with `self` serves a request for `wanted`: the same in
    /// everything, except that a verified output also serves an unverified request.
    pub fn serve(&self, wanted: &Options) -> bool {
        let mut have = self.clone();
        have.verify = wanted.verify;
        have == *wanted && (self.verify || !wanted.verify)
    }
}

/// What the record beside an output says about it.
#[derive(Debug)]
pub enum Verdict {
    /// The record matches the source, the options and the output: nothing to do.
    UpToDate(Box<Record>),
    /// A record is there but does not match (the source or the plan changed, the output
    /// was touched): the output is this batch's to replace.
    Stale,
    /// No record (or one that is not a record).
    None,
}

/// Judges the record at `record_path` for output `dst`.
pub fn judge(record_path: &Path, dst: &Path, source: &SourceIdentity, wanted: &Options) -> Verdict {
    let Ok(text) = std::fs::read(record_path) else {
        return Verdict::None;
    };
    let Ok(record) = serde_json::from_slice::<Record>(&text) else {
        // Present but unreadable (another version's, damaged): still ours by its name.
        return if looks_like_record(&text) {
            Verdict::Stale
        } else {
            Verdict::None
        };
    };
    if record.record != KIND {
        return Verdict::None;
    }
    let output_matches = std::fs::metadata(dst).is_ok_and(|m| {
        m.is_file()
            && m.len() == record.output.size
            && m.mtime() == record.output.mtime
            && m.mtime_nsec() == record.output.mtime_nsec
    });
    if output_matches && record.source == *source && record.options.serve(wanted) {
        Verdict::UpToDate(Box::new(record))
    } else {
        Verdict::Stale
    }
}

fn looks_like_record(text: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(text)
        .is_ok_and(|v| v.get("record").and_then(|r| r.as_str()) == Some(KIND))
}

impl Record {
    /// The record of an output just committed at `dst`.
    pub fn new(
        source: SourceIdentity,
        options: Options,
        dst: &Path,
        dst_text: &str,
        virtual_size: u64,
        sha256: Option<String>,
    ) -> Result<Self> {
        let out = stamp(dst, dst_text.to_string()).map_err(|e| e.as_input())?;
        Ok(Record {
            schema_version: crate::report::SCHEMA_VERSION,
            record: KIND.to_string(),
            vdconv_version: env!("CARGO_PKG_VERSION").to_string(),
            source,
            options,
            output: OutputIdentity {
                path: out.path,
                size: out.size,
                mtime: out.mtime,
                mtime_nsec: out.mtime_nsec,
                virtual_size,
                sha256,
            },
            finished_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }

    /// Writes the record at `path` atomically: a temporary file beside it, flushed and
    /// renamed over any record there, and the folder flushed.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::output_io(path, "the record", std::io::Error::other(e)))?;
        text.push(b'\n');
        let out = Output::create(
            path,
            true,
            HolePolicy {
                piece: 0,
                fill: false,
            },
        )?;
        out.write_at(&text, 0)?;
        out.commit()
    }
}

/// Removes the record at `path`, if there is one: before an output is made again, so a
/// record never outlives the output it describes.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::output_io(
            path,
            "(removing the out-of-date record)",
            e,
        )),
        _ => Ok(()),
    }
}

/// Whether the image at `path` was written by vdconv (its VHD creator application, its
/// VHDX creator string): an output without a record that this batch may replace, left by
/// a run killed between committing the output and its record.
pub fn written_by_vdconv(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut head = [0u8; 20];
    if file.read_exact_at(&mut head, 0).is_ok() && &head[..8] == crate::vhdx::format::FILE_SIGNATURE
    {
        let creator: Vec<u8> = "vdconv".encode_utf16().flat_map(u16::to_le_bytes).collect();
        return head[8..20] == creator[..];
    }
    let mut footer = [0u8; 512];
    len >= 512
        && file.read_exact_at(&mut footer, len - 512).is_ok()
        && &footer[..8] == crate::vhd::footer::COOKIE
        && &footer[28..32] == crate::vhd::footer::CREATOR_APP
}

/// The error for a file at a record's name that is not a record.
pub fn foreign_record(path: &Path) -> Error {
    Error::output(
        ErrorKind::Exists,
        path,
        "is not a vdconv batch record, and the batch keeps its record for this output there; move it away",
    )
}

/// The error for an output that exists with no record and not written by vdconv.
pub fn foreign_output(dst: &Path) -> Error {
    Error::output(
        ErrorKind::Exists,
        dst,
        "already exists, and no batch record says vdconv wrote it; set \"force\": true on its plan line to replace it",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            format: "vhd".into(),
            disk_type: "dynamic".into(),
            target: None,
            block_size: Some(2 << 20),
            logical_sector: None,
            physical_sector: None,
            sparse: "auto".into(),
            verify: false,
            source_date_epoch: None,
        }
    }

    #[test]
    fn a_verified_output_serves_an_unverified_request_only() {
        let plain = options();
        let verified = Options {
            verify: true,
            ..options()
        };
        assert!(plain.serve(&plain));
        assert!(verified.serve(&plain));
        assert!(!plain.serve(&verified));
        let fixed = Options {
            disk_type: "fixed".into(),
            ..options()
        };
        assert!(!fixed.serve(&plain));
    }

    #[test]
    fn records_sit_beside_their_outputs() {
        assert_eq!(
            path_for(Path::new("/x/disk.vhd")),
            Path::new("/x/disk.vhd.vdconv.json")
        );
        assert_eq!(
            path_for(Path::new("d.vhdx")),
            Path::new("d.vhdx.vdconv.json")
        );
    }
}

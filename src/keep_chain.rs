//! `convert --keep-chain`: a snapshot chain written as a chain. The base becomes DST (a
//! fixed or dynamic VHD or VHDX, through the ordinary pipeline) and each delta a
//! differencing disk in DST's folder, named after its own file (`disk-000001.vmdk` →
//! `disk-000001.avhdx`, or `.vhd`), whose parent locator names the file written before it.
//! Only what a delta changes is stored: its data, and the zeros with which it hides its
//! parent's data. Every file is written under a temporary name and all are put in place
//! together at the end; when one cannot be, those already placed are removed.
//!
//! Differencing files store whole logical sectors (VHDX) or whole bitmap bytes of 8
//! sectors (VHD; libvhdi misreads a VHD bitmap byte whose set bits are followed by clear
//! ones). Where a delta changes only part of such a piece, the piece is stored whole,
//! with the bytes the chain shows at that link.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::cancel::Cancel;
use crate::compare::content_sha256;
use crate::convert::{ConvertReport, Phase, Progress, convert_uncommitted};
use crate::disk::{ChainDisk, Disk, InputFile, Run, RunKind};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::output::{HolePolicy, Output};
use crate::plan::{ConvertPlan, OutputFormat, SparseMode};
use crate::report::SCHEMA_VERSION;
use crate::vhd::diff_write::{VhdDiffWriter, VhdParent};
use crate::vhdx::diff_write::{VhdxDiffWriter, VhdxParent};
use crate::{vhd, vhdx};

/// Bytes of a link handled at a time.
const CHUNK: u64 = 1 << 20;

/// The files a chain becomes, top first: one per link, the base (last) as DST.
pub fn output_names(chain: &ChainDisk, plan: &ConvertPlan) -> Result<Vec<PathBuf>> {
    let dst = &plan.destination;
    // Beside DST: a bare DST name puts the children in the current folder, named bare.
    let dir = dst.parent().unwrap_or(Path::new(""));
    let ext = match plan.format {
        OutputFormat::Vhd => "vhd",
        OutputFormat::Vhdx => "avhdx",
    };
    let layers = chain.layers();
    let mut names: Vec<PathBuf> = layers[..layers.len() - 1]
        .iter()
        .map(|l| {
            let stem = l.path().file_stem().unwrap_or_default();
            let mut name = stem.to_os_string();
            name.push(".");
            name.push(ext);
            dir.join(name)
        })
        .collect();
    names.push(dst.clone());
    for (i, a) in names.iter().enumerate() {
        if let Some(j) = names[i + 1..].iter().position(|b| b == a) {
            return Err(Error::usage(
                Some("--keep-chain"),
                format!(
                    "links {} and {} of the chain would both be written as {}; rename DST",
                    layers[i].path().display(),
                    layers[i + 1 + j].path().display(),
                    a.display()
                ),
            ));
        }
    }
    Ok(names)
}

/// Refuses, before anything is written, names that exist (without --force) or that are
/// files of the chain.
fn refuse_taken(chain: &ChainDisk, names: &[PathBuf], force: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let inputs: Vec<(u64, u64)> = chain
        .files()
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    for name in names {
        let Ok(meta) = std::fs::symlink_metadata(name) else {
            continue;
        };
        if !force {
            return Err(Error::exists(name));
        }
        if let Ok(m) = std::fs::metadata(name)
            && inputs.contains(&(m.dev(), m.ino()))
        {
            return Err(Error::output_is_input(name));
        }
        if meta.is_dir() {
            return Err(Error::output(
                crate::error::ErrorKind::NotAFile,
                name,
                "is a folder; --keep-chain writes a file there",
            ));
        }
    }
    Ok(())
}

fn hole_policy(plan: &ConvertPlan) -> HolePolicy {
    HolePolicy {
        piece: match plan.sparse {
            SparseMode::Auto => 64 << 10,
            SparseMode::Always => 4 << 10,
            SparseMode::Never => 0,
        },
        fill: plan.sparse == SparseMode::Never,
    }
}

/// What a child records of the file written before it, read back from that file.
enum ParentIds {
    Vhd {
        unique_id: [u8; 16],
        timestamp: u32,
    },
    Vhdx {
        data_write: [u8; 16],
        page83: [u8; 16],
    },
}

fn read_parent_ids(temp: &Path, format: OutputFormat) -> Result<ParentIds> {
    let file = InputFile::open(temp)?;
    Ok(match format {
        OutputFormat::Vhd => {
            let footer = vhd::read::read_footer(&file, file.len().saturating_sub(512))?;
            ParentIds::Vhd {
                unique_id: footer.unique_id,
                timestamp: footer.timestamp.get(),
            }
        }
        OutputFormat::Vhdx => {
            let meta = vhdx::read::read_meta(&file)?;
            ParentIds::Vhdx {
                data_write: meta.data_write_guid,
                page83: meta.page83.unwrap_or(meta.data_write_guid),
            }
        }
    })
}

/// A differencing writer of either format.
enum Child {
    Vhd(VhdDiffWriter<Arc<Output>>),
    Vhdx(VhdxDiffWriter<Arc<Output>>),
}

impl Child {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<u64> {
        match self {
            Child::Vhd(w) => w.write(offset, data),
            Child::Vhdx(w) => w.write(offset, data),
        }
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<()> {
        match self {
            Child::Vhd(w) => w.zero(offset, len),
            Child::Vhdx(w) => w.zero(offset, len),
        }
    }

    fn finish(self, identity: Identity) -> Result<()> {
        match self {
            Child::Vhd(w) => w.finish(identity),
            Child::Vhdx(w) => w.finish(identity),
        }
    }
}

/// Writes `chain` as a chain (see the module's notes).
pub fn convert_keep_chain(
    chain: &mut ChainDisk,
    plan: &ConvertPlan,
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<ConvertReport> {
    let started = Instant::now();
    let names = output_names(chain, plan)?;
    refuse_taken(chain, &names, plan.force)?;
    let n = names.len();
    let top_size = chain.virtual_size();
    let total = top_size.saturating_mul(n as u64);
    let mut done_before = 0u64;

    // The base, through the ordinary pipeline.
    let base_plan = ConvertPlan {
        destination: names[n - 1].clone(),
        ..plan.clone()
    };
    let (base_report, base_out) = {
        let bottom = &mut chain.layers_mut().expect("a chain has layers")[n - 1];
        convert_uncommitted(bottom.as_mut(), &base_plan, cancel, &mut |p| {
            progress(Progress {
                phase: p.phase,
                done: p.done.min(top_size),
                total,
            })
        })?
    };
    done_before += top_size;
    let mut outputs: Vec<(PathBuf, Arc<Output>)> = vec![(names[n - 1].clone(), base_out)];
    let mut written = base_report.data_bytes_written;
    let mut file_size = base_report.file_size;

    for level in (0..n - 1).rev() {
        cancel.check()?;
        let parent_name = &names[level + 1];
        let parent_temp = outputs
            .last()
            .expect("the parent's output")
            .1
            .temp_path()
            .to_path_buf();
        let ids = read_parent_ids(&parent_temp, plan.format)?;
        let path = &names[level];
        let size = chain.layers()[level].virtual_size();
        let out = Arc::new(Output::create(path, plan.force, hole_policy(plan))?);
        let block_size = plan
            .child_block_size
            .unwrap_or(vhdx::diff_write::DEFAULT_BLOCK_SIZE);
        let file_name = parent_name
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let relative_path = format!(".\\{file_name}");
        let (mut child, granule) = match ids {
            ParentIds::Vhd {
                unique_id,
                timestamp,
            } => {
                vhd::write::check_size(size, vhd::write::MAX_SIZE)?;
                let absolute = absolute(parent_name);
                let parent = VhdParent {
                    unique_id,
                    timestamp,
                    name: file_name,
                    relative_path,
                    absolute_path: absolute,
                };
                (
                    Child::Vhd(VhdDiffWriter::new(out.clone(), size, block_size, parent)),
                    4096,
                )
            }
            ParentIds::Vhdx { data_write, page83 } => {
                let params = vhdx::write::VhdxParams {
                    size,
                    block_size,
                    logical_sector: plan.logical_sector.unwrap_or(512),
                    physical_sector: plan.physical_sector.unwrap_or(4096),
                    fixed: false,
                };
                params.validate()?;
                let parent = VhdxParent {
                    data_write_guid: data_write,
                    page83,
                    relative_path,
                    absolute_win32_path: None,
                };
                (
                    Child::Vhdx(VhdxDiffWriter::new(out.clone(), params, parent)),
                    u64::from(params.logical_sector),
                )
            }
        };
        let mut hasher = Sha256::new();
        written += write_link(
            chain,
            level,
            &mut child,
            granule,
            &mut hasher,
            cancel,
            &mut |done| {
                progress(Progress {
                    phase: Phase::Convert,
                    done: done_before + done,
                    total,
                })
            },
        )?;
        done_before += size;
        let identity = match plan.reproducible_time {
            Some(time) => {
                let seed = hasher
                    .chain_update(plan.format.name())
                    .chain_update(size.to_le_bytes())
                    .chain_update(block_size.to_le_bytes())
                    .chain_update(path.file_name().unwrap_or_default().as_encoded_bytes())
                    .finalize()
                    .into();
                Identity::reproducible(seed, time)
            }
            None => Identity::random_now(),
        };
        child.finish(identity)?;
        file_size += out
            .file()
            .metadata()
            .map_err(|e| Error::output_io(path, "the file's metadata", e))?
            .len();
        outputs.push((path.clone(), out));
    }
    cancel.check()?;
    let (verified, sha256) = if plan.verify {
        let digest = verify_chain(chain, &outputs, cancel, progress)?;
        (Some(true), Some(crate::compare::hex(&digest)))
    } else {
        (None, None)
    };
    commit_all(&outputs)?;
    let mut warnings = base_report.warnings.clone();
    for w in chain.warnings() {
        if !warnings.contains(w) {
            warnings.push(w.clone());
        }
    }
    Ok(ConvertReport {
        schema_version: SCHEMA_VERSION,
        source: chain.path().display().to_string(),
        destination: plan.destination.clone(),
        // The chain's size is its top's (a VHD or VHDX child may be larger than its base).
        source_size: top_size,
        virtual_size: top_size,
        files: outputs.iter().map(|(p, _)| p.clone()).collect(),
        data_bytes_written: written,
        file_size,
        verified,
        source_sha256: sha256.clone(),
        sha256,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
        ..base_report
    })
}

/// --verify: reads the written files back through vdconv's own readers, stacked as the
/// chain they make (each child's recorded parent identity checked against the file
/// before it), and compares the SHA-256 of their contents with the source chain's.
/// Returns the digest.
fn verify_chain(
    chain: &mut ChainDisk,
    outputs: &[(PathBuf, Arc<Output>)],
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<[u8; 32]> {
    let top = outputs.last().expect("at least the base").0.clone();
    let total = chain.virtual_size();
    let mut report = |done| {
        progress(Progress {
            phase: Phase::Verify,
            done,
            total,
        })
    };
    let expected = content_sha256(chain, cancel, &mut report)?;
    let failed = |detail: String| Error::verify_failed(&top, detail);
    let options = crate::disk::OpenOptions {
        cancel: cancel.clone(),
        ..Default::default()
    };
    let mut layers = Vec::with_capacity(outputs.len());
    for (name, out) in outputs.iter().rev() {
        let file = InputFile::open(out.temp_path())?;
        let disk = crate::chain::open_file(file, &options)
            .map_err(|e| failed(format!("{} cannot be read back: {e}", name.display())))?;
        layers.push(disk);
    }
    for i in 0..layers.len() - 1 {
        let link = layers[i].parent().cloned().ok_or_else(|| {
            failed(format!(
                "{} names no parent",
                outputs[outputs.len() - 1 - i].0.display()
            ))
        })?;
        crate::chain::check_link(
            layers[i].as_ref(),
            &link,
            layers[i + 1].as_ref(),
            false,
            &mut Vec::new(),
        )
        .map_err(|e| failed(format!("the written chain does not link: {e}")))?;
    }
    let mut written = ChainDisk::new(layers, Vec::new());
    let found = content_sha256(&mut written, cancel, &mut report)?;
    if found != expected {
        return Err(failed(format!(
            "contents read back (SHA-256 {}) differ from the source chain ({})",
            crate::compare::hex(&found),
            crate::compare::hex(&expected)
        )));
    }
    Ok(found)
}

/// The path where `name` will be, absolute, as a differencing VHD's W2ku records it.
fn absolute(name: &Path) -> String {
    let dir = match name.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    dir.join(name.file_name().unwrap_or_default())
        .display()
        .to_string()
}

/// Puts every file in place, parents first; if one cannot be, removes those placed.
fn commit_all(outputs: &[(PathBuf, Arc<Output>)]) -> Result<()> {
    for (i, (_, out)) in outputs.iter().enumerate() {
        if let Err(e) = out.commit() {
            for (placed, _) in &outputs[..i] {
                let _ = std::fs::remove_file(placed);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// What one piece of a link becomes in its differencing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// The link's own data.
    Data,
    /// Zeros hiding the parent.
    Zero,
    /// A granule the link changes only in part: stored whole, as the chain reads there.
    Mixed,
}

/// The pieces of one chunk's runs (the link's own map), on a grid of `granule` bytes
/// (the disk's end, `size`, also a grid line), in increasing order.
fn pieces(runs: &[Run], granule: u64, size: u64, out: &mut Vec<(u64, u64, Piece)>) {
    let floor = |x: u64| x - x % granule;
    let boundary_up = |x: u64| {
        if x % granule == 0 {
            x
        } else {
            (floor(x) + granule).min(size)
        }
    };
    let boundary_down = |x: u64| if x == size { x } else { floor(x) };
    let mixed = |g: u64, out: &mut Vec<(u64, u64, Piece)>| {
        if out.last().is_none_or(|p| p.0 != g || p.2 != Piece::Mixed) {
            out.push((g, (g + granule).min(size) - g, Piece::Mixed));
        }
    };
    for r in runs {
        let kind = match r.kind {
            RunKind::Parent => continue,
            RunKind::Data => Piece::Data,
            RunKind::Zero => Piece::Zero,
        };
        let (start, end) = (r.offset, r.offset + r.len);
        let (a, b) = (boundary_up(start), boundary_down(end));
        if start < a.min(end) || a >= b {
            mixed(floor(start), out);
        }
        if a < b {
            out.push((a, b - a, kind));
        }
        if b < end && b >= a {
            mixed(floor(b), out);
        } else if a > b && floor(end - 1) != floor(start) {
            mixed(floor(end - 1), out);
        }
    }
}

/// Writes level `level` of `chain` into `child`; returns the data bytes written.
fn write_link(
    chain: &mut ChainDisk,
    level: usize,
    child: &mut Child,
    granule: u64,
    hasher: &mut Sha256,
    cancel: &Cancel,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let size = chain.layers()[level].virtual_size();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut runs = Vec::new();
    let mut plan = Vec::new();
    let mut written = 0;
    let mut offset = 0;
    while offset < size {
        cancel.check()?;
        let len = CHUNK.min(size - offset);
        runs.clear();
        plan.clear();
        {
            let layer = &mut chain.layers_mut().expect("a chain has layers")[level];
            layer.map(offset, len, &mut runs)?;
        }
        pieces(&runs, granule, size, &mut plan);
        for &(at, n, piece) in &plan {
            let data = &mut buf[..n as usize];
            hasher.update(at.to_le_bytes());
            hasher.update([piece as u8]);
            match piece {
                Piece::Zero => {
                    child.zero(at, n)?;
                    continue;
                }
                Piece::Data => {
                    chain.layers_mut().expect("a chain has layers")[level].read_at(at, data)?
                }
                Piece::Mixed => chain.read_from(level, at, data)?,
            }
            hasher.update(&*data);
            written += child.write(at, data)?;
        }
        offset += len;
        progress(offset);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(offset: u64, len: u64, kind: RunKind) -> Run {
        Run { offset, len, kind }
    }

    #[test]
    fn partial_granules_are_stored_whole() {
        let mut out = Vec::new();
        // A grain of 2 KiB data and 1 KiB zeros inside one 4 KiB granule, then an
        // aligned 8 KiB of data, then 512 bytes at the disk's odd end.
        let runs = [
            run(0, 1024, RunKind::Parent),
            run(1024, 2048, RunKind::Data),
            run(3072, 1024, RunKind::Zero),
            run(4096, 8192, RunKind::Data),
            run(12288, 512, RunKind::Parent),
            run(12800, 512, RunKind::Data),
        ];
        pieces(&runs, 4096, 13312, &mut out);
        assert_eq!(
            out,
            [
                (0, 4096, Piece::Mixed),
                (4096, 8192, Piece::Data),
                (12288, 1024, Piece::Mixed),
            ]
        );
        // On a 512-byte grid every run is whole.
        out.clear();
        pieces(&runs, 512, 13312, &mut out);
        assert_eq!(
            out,
            [
                (1024, 2048, Piece::Data),
                (3072, 1024, Piece::Zero),
                (4096, 8192, Piece::Data),
                (12800, 512, Piece::Data),
            ]
        );
        // A run crossing granules with ragged ends on both sides.
        out.clear();
        pieces(&[run(1024, 10240, RunKind::Zero)], 4096, 1 << 20, &mut out);
        assert_eq!(
            out,
            [
                (0, 4096, Piece::Mixed),
                (4096, 4096, Piece::Zero),
                (8192, 4096, Piece::Mixed),
            ]
        );
    }
}

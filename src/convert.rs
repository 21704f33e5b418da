//! The conversion pipeline: walk the source's allocation map in 1 MiB chunks, read only
//! the ranges that hold data, skip chunks that are zero, and hand the rest to a writer
//! thread (or, for fixed outputs of flat data, let the kernel copy it).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cancel::Cancel;
use crate::compare::{content_sha256, hex};
use crate::disk::{Disk, OpenOptions, Run, RunKind};
use crate::error::{Error, ErrorKind, Result};
use crate::identity::{ContentSeed, Identity};
use crate::output::{HolePolicy, Output};
use crate::plan::{ConvertPlan, DiskType, OutputFormat, SparseMode};
use crate::reflink::ReflinkMode;
use crate::report::SCHEMA_VERSION;
use crate::sink::ImageWriter;
use crate::target::Target;
use crate::zero::is_zero;
use crate::{vhd, vhdx};

/// Bytes of the virtual disk handled at a time: the memory the pipeline holds, whatever
/// the output's block size.
pub(crate) const CHUNK: u64 = 1 << 20;

/// What a long run is doing, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Convert,
    Verify,
    Compare,
}

/// Progress of a long run: `done` of `total` bytes of the virtual disk.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConvertReport {
    pub schema_version: u32,
    /// The image read, as given.
    pub source: String,
    pub destination: PathBuf,
    pub format: OutputFormat,
    #[serde(rename = "type")]
    pub disk_type: DiskType,
    pub target: Option<Target>,
    /// The source's virtual size.
    pub source_size: u64,
    /// The output's virtual size (larger when a target rounds it up).
    pub virtual_size: u64,
    /// Whether the size was rounded up (the added bytes are zeros).
    pub rounded: bool,
    /// The output's block size; null for a fixed VHD, which has no blocks.
    pub block_size: Option<u64>,
    /// Size of the finished file.
    pub file_size: u64,
    /// Bytes of disk data actually written or copied (zero pieces left as holes are not
    /// counted; headers and tables are not data).
    pub data_bytes_written: u64,
    /// Null when --verify was not asked; true when the output read back as the source.
    pub verified: Option<bool>,
    /// SHA-256 of the output's virtual contents, when verified.
    pub sha256: Option<String>,
    /// SHA-256 of the source's virtual contents, when verified (differs from `sha256`
    /// only when the size was rounded up).
    pub source_sha256: Option<String>,
    /// Every file written: DST, and with --keep-chain each differencing child after its
    /// parent (the last is the top of the chain, the disk to attach).
    pub files: Vec<PathBuf>,
    /// Anomalies tolerated in the source and advice for the target.
    pub warnings: Vec<String>,
    pub seconds: f64,
}

impl ConvertReport {
    /// The report of `plan` converting `source` (`source_size` bytes) into `destination`
    /// (`virtual_size` bytes): the plan's shape filled in, what the run measured (file
    /// size, data written, digests, files, warnings, time) left empty for the caller.
    pub(crate) fn planned(
        plan: &ConvertPlan,
        source: &Path,
        destination: PathBuf,
        source_size: u64,
        virtual_size: u64,
    ) -> Self {
        ConvertReport {
            schema_version: SCHEMA_VERSION,
            source: source.display().to_string(),
            destination,
            format: plan.format,
            disk_type: plan.disk_type,
            target: plan.target,
            source_size,
            virtual_size,
            rounded: virtual_size != source_size,
            block_size: plan.block_size,
            file_size: 0,
            data_bytes_written: 0,
            verified: None,
            sha256: None,
            source_sha256: None,
            files: Vec::new(),
            warnings: Vec::new(),
            seconds: 0.0,
        }
    }
}

/// Converts `src` into a new image as `plan` says. `progress` is called as the virtual
/// disk is done (and again while verifying).
pub fn convert(
    src: &mut dyn Disk,
    plan: &ConvertPlan,
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<ConvertReport> {
    if plan.in_place {
        return convert_in_place(src, plan, cancel);
    }
    let (report, out) = convert_uncommitted(src, plan, cancel, progress)?;
    out.commit()?;
    Ok(report)
}

/// A finished conversion not yet put in place: the image is complete and flushed under
/// its temporary name. `commit` renames it to DST; dropping it removes it. Lets a caller
/// converting several disks (an export's) put them all in place only once every one
/// succeeded and every digest matched.
pub struct Staged {
    out: std::sync::Arc<Output>,
    pub report: ConvertReport,
}

impl Staged {
    pub(crate) fn new(out: std::sync::Arc<Output>, report: ConvertReport) -> Self {
        Staged { out, report }
    }

    /// The finished image under its temporary name (to read it back before committing).
    pub fn temp_path(&self) -> &Path {
        self.out.temp_path()
    }

    /// Renames the image to DST (see `Output::commit`) and returns its report.
    pub fn commit(self) -> Result<ConvertReport> {
        self.out.commit()?;
        Ok(self.report)
    }
}

/// As `convert` (not in place), leaving the finished image under its temporary name.
pub fn convert_staged(
    src: &mut dyn Disk,
    plan: &ConvertPlan,
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<Staged> {
    if plan.in_place {
        return Err(Error::usage(
            Some("--in-place"),
            "renames the source into place; it cannot be staged",
        ));
    }
    let (report, out) = convert_uncommitted(src, plan, cancel, progress)?;
    Ok(Staged::new(out, report))
}

/// The output file and the writer `plan` asks for, for a disk of `size` bytes. The
/// temporary file is created here, so a folder DST or an unwritable folder is refused
/// before a byte is written.
pub(crate) fn create_writer(
    plan: &ConvertPlan,
    size: u64,
) -> Result<(std::sync::Arc<Output>, Box<dyn ImageWriter>)> {
    let holes = HolePolicy {
        piece: match plan.sparse {
            SparseMode::Auto => 64 << 10,
            SparseMode::Always => 4 << 10,
            SparseMode::Never => 0,
        },
        fill: plan.sparse == SparseMode::Never,
    };
    let mut out = Output::create(&plan.destination, plan.force, holes)?;
    out.set_reflink(plan.reflink);
    let out = std::sync::Arc::new(out);
    let writer: Box<dyn ImageWriter> = match (plan.format, plan.disk_type) {
        (OutputFormat::Vhd, DiskType::Fixed) => {
            Box::new(vhd::write::FixedVhdWriter::new(out.clone(), size))
        }
        (OutputFormat::Vhd, DiskType::Dynamic) => Box::new(vhd::write::DynamicVhdWriter::new(
            out.clone(),
            size,
            plan.block_size.unwrap_or(vhd::dynamic::DEFAULT_BLOCK_SIZE),
        )),
        (OutputFormat::Vhdx, _) => Box::new(vhdx::write::VhdxWriter::new(
            out.clone(),
            plan.vhdx_params(size),
        )),
    };
    Ok((out, writer))
}

/// Writes the output as `convert` does, under its temporary name, and returns it not yet
/// in place: the caller commits it (`--keep-chain` commits every file of a chain
/// together). Dropping it removes the temporary file.
pub(crate) fn convert_uncommitted(
    src: &mut dyn Disk,
    plan: &ConvertPlan,
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<(ConvertReport, std::sync::Arc<Output>)> {
    let started = Instant::now();
    let dst = plan.destination.as_path();
    refuse_input_as_output(src, dst)?;
    let source_size = src.virtual_size();
    let size = plan.output_size(source_size)?;
    // The temporary file first (a folder DST, an unwritable folder), then the space: both
    // refused before a byte is written, and the temporary goes with the error.
    let (out, mut writer) = create_writer(plan, size)?;
    check_free_space(src, plan, size, cancel)?;
    // The output's contents are hashed in the same pass: all of it, zeros included, for
    // --verify; the data alone for reproducible ids (ContentSeed), so zeros stay free.
    let hashing = plan.verify || plan.reproducible_time.is_some();
    let mut hasher = plan.verify.then(Sha256::new);
    let mut seed = plan.reproducible_time.is_some().then(ContentSeed::new);
    let mut source_hash: Option<[u8; 32]> = None;
    // Fixed outputs take flat data as it is: the kernel copies it (unless every zero
    // must become a hole, which means reading it). When the data is read anyway to hash
    // it, copies are still worth offering while they may share blocks (--reflink).
    let offload = plan.disk_type == DiskType::Fixed
        && plan.sparse != SparseMode::Always
        && (!hashing || out.may_share());
    tracing::info!(
        "converting {source_size} bytes into a {} {} of {size} bytes (kernel copies {}, verify {})",
        match plan.disk_type {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
        },
        plan.format.name().to_uppercase(),
        if offload { "tried" } else { "off" },
        if plan.verify { "on" } else { "off" }
    );
    let offload_ok = out.offload_flag();
    let (written, ()) = pipeline(&mut *writer, CHUNK, |send| {
        let mut buf = vec![0u8; CHUNK as usize];
        let mut runs: Vec<Run> = Vec::new();
        let mut offset = 0u64;
        while offset < size {
            cancel.check()?;
            let len = CHUNK.min(size - offset);
            // The part of this chunk the source covers; the rest is padding.
            let from_source = source_size.saturating_sub(offset).min(len);
            let data = &mut buf[..len as usize];
            runs.clear();
            if from_source > 0 {
                src.map(offset, from_source, &mut runs)?;
            }
            let has_data = runs.iter().any(|r| r.kind == RunKind::Data);
            if !has_data && hasher.is_none() {
                // A zero chunk needs no work, nor do the zero chunks after it: skip them
                // in one step, so an empty multi-TiB disk costs a few map lookups, not
                // millions of chunks.
                offset += zero_span(src, offset, source_size, size)?;
                progress(Progress {
                    phase: Phase::Convert,
                    done: offset,
                    total: size,
                });
                continue;
            }
            crate::disk::prefetch_ahead(src, offset, CHUNK);
            let copies = if offload
                && has_data
                && offload_ok.load(Ordering::Relaxed)
                && (!hashing || out.may_share())
            {
                copy_jobs(src, &runs)
            } else {
                None
            };
            if plan.reflink == ReflinkMode::Always && has_data && copies.is_none() {
                return Err(not_shareable(dst, offset));
            }
            let copied = copies.is_some();
            if let Some(copies) = copies {
                for job in copies {
                    send(job)?;
                }
                if !hashing {
                    offset += len;
                    progress(Progress {
                        phase: Phase::Convert,
                        done: offset,
                        total: size,
                    });
                    continue;
                }
            }
            if has_data || hasher.is_some() {
                read_runs(src, &runs, offset, data)?;
                data[from_source as usize..].fill(0);
            }
            if let Some(h) = hasher.as_mut() {
                if from_source < len && source_hash.is_none() && size != source_size {
                    // The source ends in this chunk: its own digest is the state so far.
                    let mut s = h.clone();
                    s.update(&data[..from_source as usize]);
                    source_hash = Some(s.finalize().into());
                }
                h.update(&*data);
            }
            if let Some(s) = seed.as_mut().filter(|_| has_data) {
                s.update(offset, data);
            }
            if !copied && has_data && !is_zero(data) {
                buf = send(Job::Write {
                    offset,
                    buf,
                    len: len as usize,
                })?
                .ok_or_else(Error::interrupted)?;
            }
            offset += len;
            progress(Progress {
                phase: Phase::Convert,
                done: offset,
                total: size,
            });
        }
        cancel.check()
    })?;
    if offload {
        // Which copy path ran, for -v: what was not shared or copied by the kernel went
        // through this process.
        let (shared, kernel, _) = out.copy_paths();
        tracing::info!(
            "data: {shared} bytes shared (FICLONERANGE, --reflink {}), {kernel} bytes copied by copy_file_range, {} bytes read and written",
            plan.reflink.name(),
            written.saturating_sub(shared + kernel)
        );
    }
    let content: Option<[u8; 32]> = hasher.map(|h| h.finalize().into());
    let identity = match (plan.reproducible_time, seed) {
        (Some(time), Some(seed)) => {
            Identity::reproducible(reproducible_seed(plan, size, &seed.finish()), time)
        }
        _ => Identity::random_now(),
    };
    let (verified, file_size) = finish_and_verify(
        writer,
        identity,
        &out,
        dst,
        plan.verify,
        content,
        cancel,
        progress,
    )?;
    let sha256 = verified.and(content).map(|d| hex(&d));
    let report = ConvertReport {
        file_size,
        data_bytes_written: written,
        verified,
        source_sha256: verified.and(source_hash.or(content)).map(|d| hex(&d)),
        sha256,
        files: vec![dst.to_path_buf()],
        warnings: src.warnings().to_vec(),
        seconds: started.elapsed().as_secs_f64(),
        ..ConvertReport::planned(plan, src.path(), dst.to_path_buf(), source_size, size)
    };
    Ok((report, out))
}

/// `--reflink always` met data it cannot share.
fn not_shareable(dst: &Path, offset: u64) -> Error {
    Error::output(
        ErrorKind::OutputIo,
        dst,
        format!(
            "--reflink always: the data at virtual offset {offset} is not stored as it is in one file (a sparse or compressed extent, or a copy the file systems refused), so its blocks cannot be shared; use --reflink auto"
        ),
    )
}

/// The seed reproducible ids derive from: the content and everything about the output.
pub(crate) fn reproducible_seed(plan: &ConvertPlan, size: u64, digest: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(digest)
        .chain_update(plan.format.name())
        .chain_update([plan.disk_type as u8])
        .chain_update(size.to_le_bytes())
        .chain_update(plan.block_size.unwrap_or(0).to_le_bytes())
        .chain_update(plan.logical_sector.unwrap_or(0).to_le_bytes())
        .chain_update(plan.physical_sector.unwrap_or(0).to_le_bytes())
        .finalize()
        .into()
}

/// Refuses before any work an output the destination's file system cannot hold: the data
/// the source maps (all of the disk with --sparse never), plus metadata.
fn check_free_space(
    src: &mut dyn Disk,
    plan: &ConvertPlan,
    size: u64,
    cancel: &Cancel,
) -> Result<()> {
    let Some(free) = crate::output::free_space(&plan.destination) else {
        return Ok(());
    };
    // Metadata: headers, tables and the alignment of a few blocks.
    let metadata = 8 << 20;
    let needed = if plan.sparse == SparseMode::Never {
        size
    } else {
        if free >= size.saturating_add(metadata) {
            return Ok(()); // Room for everything: no need to walk the map.
        }
        crate::disk::allocated_bytes(src, cancel)?
    };
    let needed = needed.saturating_add(metadata);
    if needed > free {
        return Err(Error::output(
            ErrorKind::NoSpace,
            &plan.destination,
            format!(
                "needs about {} MiB and its file system has {} MiB free; nothing was written",
                needed.div_ceil(1 << 20),
                free >> 20
            ),
        ));
    }
    Ok(())
}

/// Turns a flat VMDK's flat file into a fixed VHD at DST without copying: grows it when
/// the target rounds the size up, appends the footer, flushes, and moves it into place
/// (never over an existing DST without --force). The descriptor is left as it was (it
/// now names a missing file).
fn convert_in_place(
    src: &mut dyn Disk,
    plan: &ConvertPlan,
    cancel: &Cancel,
) -> Result<ConvertReport> {
    use std::os::unix::fs::FileExt;
    let started = Instant::now();
    let dst = plan.destination.as_path();
    let flat = src
        .in_place_file()
        .map_err(|why| Error::usage(Some("--in-place"), why))?;
    let source_size = src.virtual_size();
    let size = plan.output_size(source_size)?;
    if !plan.force && std::fs::symlink_metadata(dst).is_ok() {
        return Err(Error::exists(dst));
    }
    refuse_input_as_output(src, dst)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&flat)
        .map_err(|e| Error::output_io(&flat, "(opening the flat file to append the footer)", e))?;
    let undo = |e: Error| {
        // Put the flat file back as it was, so the VMDK stays valid.
        let _ = file.set_len(source_size);
        let _ = file.sync_all();
        e
    };
    cancel.check()?;
    file.set_len(size)
        .map_err(|e| undo(Error::output_io(&flat, "(growing to the rounded size)", e)))?;
    let footer = vhd::footer::Footer::new(
        size,
        vhd::footer::DISK_FIXED,
        vhd::footer::NO_DATA_OFFSET,
        Identity::random_now(),
    );
    file.write_all_at(zerocopy::IntoBytes::as_bytes(&footer), size)
        .and_then(|()| file.sync_all())
        .map_err(|e| undo(Error::output_io(&flat, "(appending the VHD footer)", e)))?;
    if let Err(e) = cancel.check() {
        return Err(undo(e));
    }
    crate::output::move_into_place(&flat, dst, plan.force).map_err(undo)?;
    Ok(ConvertReport {
        schema_version: SCHEMA_VERSION,
        source: src.path().display().to_string(),
        destination: dst.to_path_buf(),
        format: OutputFormat::Vhd,
        disk_type: DiskType::Fixed,
        target: plan.target,
        source_size,
        virtual_size: size,
        rounded: size != source_size,
        block_size: None,
        file_size: size + 512,
        data_bytes_written: 0,
        verified: None,
        sha256: None,
        source_sha256: None,
        files: vec![dst.to_path_buf()],
        warnings: src.warnings().to_vec(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Bytes from `offset` (a chunk boundary whose chunk maps as zero) that read as zeros, in
/// whole chunks (at least that chunk). The map is probed in windows growing fourfold up
/// to a GiB, so a long zero range costs a few lookups and a short one, between data, no
/// more than the chunks it spans (past the source's end is padding, zeros too).
fn zero_span(src: &mut dyn Disk, offset: u64, source_size: u64, size: u64) -> Result<u64> {
    let this = CHUNK.min(size - offset);
    let mut end = offset + this;
    let mut window = 16 * CHUNK;
    let mut runs = Vec::new();
    while end < size {
        let probe_end = size.min(end.saturating_add(window));
        if end < source_size {
            runs.clear();
            src.map(end, source_size.min(probe_end) - end, &mut runs)?;
            if let Some(r) = runs.iter().find(|r| r.kind == RunKind::Data) {
                end = r.offset;
                break;
            }
        }
        end = probe_end;
        window = (window * 4).min(1 << 30);
    }
    Ok(((end - offset) / CHUNK * CHUNK).max(this))
}

/// The chunk's data runs as kernel copies, when a single file holds each of them.
fn copy_jobs(src: &dyn Disk, runs: &[Run]) -> Option<Vec<Job>> {
    runs.iter()
        .filter(|r| r.kind == RunKind::Data)
        .map(|r| {
            src.file_range(r.offset, r.len)
                .map(|(file, file_offset)| Job::Copy {
                    offset: r.offset,
                    len: r.len,
                    file,
                    file_offset,
                })
        })
        .collect()
}

/// Fills `data` (virtual bytes from `offset`) from `runs`: data ranges are read, the
/// rest are zeros without reading.
pub(crate) fn read_runs(
    src: &mut dyn Disk,
    runs: &[Run],
    offset: u64,
    data: &mut [u8],
) -> Result<()> {
    for r in runs {
        let at = (r.offset - offset) as usize;
        let piece = &mut data[at..at + r.len as usize];
        match r.kind {
            RunKind::Data => src.read_at(r.offset, piece)?,
            RunKind::Zero | RunKind::Parent => piece.fill(0),
        }
    }
    Ok(())
}

/// Work for the writing thread.
pub(crate) enum Job {
    /// Write `buf[..len]` at virtual `offset`, then hand the buffer back.
    Write {
        offset: u64,
        buf: Vec<u8>,
        len: usize,
    },
    /// Copy `len` bytes at virtual `offset` from `file` at `file_offset`.
    Copy {
        offset: u64,
        len: u64,
        file: std::sync::Arc<std::fs::File>,
        file_offset: u64,
    },
}

/// Buffers in flight between the reading and the writing thread.
const IN_FLIGHT: usize = 3;

/// Runs `produce` on this thread and the writer on another, so that reading and
/// inflating overlap with writing. `produce` hands each chunk to `send(job)`, which
/// returns an empty buffer to fill next after a write. The writer gets written buffers
/// in writes of at most `piece` bytes (stdout's writer must see a block whole before the
/// next one is placed). Returns the data bytes written and what `produce` returned.
pub(crate) fn pipeline<R>(
    writer: &mut (dyn ImageWriter + '_),
    piece: u64,
    produce: impl FnOnce(&mut dyn FnMut(Job) -> Result<Option<Vec<u8>>>) -> Result<R>,
) -> Result<(u64, R)> {
    use std::sync::mpsc::sync_channel;
    let (full_tx, full_rx) = sync_channel::<Job>(IN_FLIGHT);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
    for _ in 0..IN_FLIGHT {
        empty_tx
            .send(vec![0u8; CHUNK as usize])
            .expect("room for every buffer");
    }
    std::thread::scope(|scope| {
        let consumer = scope.spawn(move || -> Result<u64> {
            let mut written = 0u64;
            for job in full_rx {
                match job {
                    Job::Write { offset, buf, len } => {
                        for (i, part) in buf[..len].chunks(piece as usize).enumerate() {
                            written += writer.write(offset + i as u64 * piece, part)?;
                        }
                        // The producer may have stopped: a closed return channel is fine.
                        let _ = empty_tx.send(buf);
                    }
                    Job::Copy {
                        offset,
                        len,
                        file,
                        file_offset,
                    } => {
                        writer.copy(offset, len, &file, file_offset)?;
                        written += len;
                    }
                }
            }
            Ok(written)
        });
        let produced = produce(&mut |job| {
            // A failed send means the writer stopped with an error, reported below.
            let wants_buffer = matches!(job, Job::Write { .. });
            full_tx.send(job).map_err(|_| Error::interrupted())?;
            if wants_buffer {
                empty_rx.recv().map(Some).map_err(|_| Error::interrupted())
            } else {
                Ok(None)
            }
        });
        drop(full_tx);
        let consumed = consumer.join().unwrap_or_else(|_| {
            Err(Error::output_limit(
                "the writing thread failed unexpectedly",
            ))
        });
        // The writer's own error explains a producer that could not hand over.
        match (produced, consumed) {
            (_, Err(e)) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(made), Ok(written)) => Ok((written, made)),
        }
    })
}

/// Reads the finished (not yet committed) output through vdconv's own reader and checks
/// that its contents hash to what the source hashed to.
/// Finishes the image with `identity`, reads it back against `content` when `verify`
/// (and the digest is known), and returns whether it was verified and the file's size.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_and_verify(
    writer: Box<dyn ImageWriter>,
    identity: Identity,
    out: &Output,
    dst: &Path,
    verify: bool,
    content: Option<[u8; 32]>,
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Option<bool>, u64)> {
    writer.finish(identity)?;
    let verified = match (verify, content) {
        (true, Some(expected)) => {
            verify_output(out, &expected, cancel, progress)?;
            Some(true)
        }
        _ => None,
    };
    let file_size = out
        .file()
        .metadata()
        .map_err(|e| Error::output_io(dst, "the file's metadata", e))?
        .len();
    cancel.check()?;
    Ok((verified, file_size))
}

fn verify_output(
    out: &Output,
    expected: &[u8; 32],
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let dst = crate::sink::Sink::path(out).to_path_buf();
    let options = OpenOptions {
        cancel: cancel.clone(),
        ..Default::default()
    };
    let mut disk = crate::open(out.temp_path(), &options).map_err(|e| {
        Error::verify_failed(&dst, format!("the written image cannot be read back: {e}"))
    })?;
    let total = disk.virtual_size();
    let found = content_sha256(disk.as_mut(), cancel, &mut |done| {
        progress(Progress {
            phase: Phase::Verify,
            done,
            total,
        })
    })?;
    if &found != expected {
        return Err(Error::verify_failed(
            &dst,
            format!(
                "contents read back (SHA-256 {}) differ from the source ({})",
                hex(&found),
                hex(expected)
            ),
        ));
    }
    Ok(())
}

/// Refuses a destination that is one of the files the source reads.
fn refuse_input_as_output(src: &dyn Disk, dst: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(dst_meta) = std::fs::metadata(dst) else {
        return Ok(());
    };
    for file in src.files() {
        if let Ok(m) = std::fs::metadata(&file)
            && m.dev() == dst_meta.dev()
            && m.ino() == dst_meta.ino()
        {
            return Err(Error::output_is_input(dst));
        }
    }
    Ok(())
}

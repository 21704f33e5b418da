//! The conversion pipeline: walk the source's allocation map in 1 MiB chunks, read only
//! the ranges that hold data, skip chunks that are zero, and hand the rest to a writer
//! thread (or, for fixed outputs of flat data, let the kernel copy it).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::compare::{content_sha256, hex};
use crate::disk::{Disk, Run, RunKind};
use crate::error::{Error, Result};
use crate::output::Output;
use crate::target::{self, Target};
use crate::vhd;
use crate::vhdx::{self, write::VhdxParams};
use crate::writer::ImageWriter;

/// Bytes of the virtual disk handled at a time: the memory the pipeline holds, whatever
/// the output's block size.
const CHUNK: u64 = 1 << 20;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Asks a running conversion to stop; it removes its temporary file and returns
/// `Error::Interrupted`. Safe to call from a signal handler thread.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub(crate) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Vhd,
    Vhdx,
}

impl OutputFormat {
    /// The block size used when none is asked for: 2 MiB for VHD (what Hyper-V and Azure
    /// write), 32 MiB for VHDX (what Hyper-V writes).
    pub fn default_block_size(self) -> u64 {
        match self {
            OutputFormat::Vhd => vhd::dynamic::DEFAULT_BLOCK_SIZE,
            OutputFormat::Vhdx => vhdx::write::DEFAULT_BLOCK_SIZE,
        }
    }

    /// The format named by a file's extension, if any.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "vhd" => Some(OutputFormat::Vhd),
            "vhdx" => Some(OutputFormat::Vhdx),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskType {
    Fixed,
    Dynamic,
}

/// Whether zero ranges of fixed outputs are left as file-system holes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SparseMode {
    /// Holes where the data is zero (the default on Linux).
    Auto,
    Always,
    /// Every byte written: for files headed to NTFS, where Windows refuses sparse images.
    Never,
}

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub format: OutputFormat,
    pub disk_type: DiskType,
    /// Output block size; None for the format's default.
    pub block_size: Option<u64>,
    pub sparse: SparseMode,
    /// VHDX logical and physical sector sizes (512 or 4096).
    pub logical_sector: u32,
    pub physical_sector: u32,
    pub force: bool,
    /// Platform whose rules apply (Azure: whole-MiB size, its size bounds).
    pub target: Option<Target>,
    /// Read the result back and compare its SHA-256 with the source's before committing.
    pub verify: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConvertReport {
    pub destination: PathBuf,
    pub format: OutputFormat,
    #[serde(rename = "type")]
    pub disk_type: DiskType,
    pub target: Option<Target>,
    /// The source's virtual size.
    pub source_size: u64,
    /// The output's virtual size (larger when a target rounds it up).
    pub virtual_size: u64,
    /// Output block (dynamic) or write unit (fixed) size, bytes.
    pub block_size: u64,
    /// Size of the finished file.
    pub file_size: u64,
    /// Bytes of disk data written (units holding data).
    pub data_bytes_written: u64,
    /// SHA-256 of the virtual contents, when verified.
    pub sha256: Option<String>,
    pub seconds: f64,
}

/// Converts `src` into a new image at `dst`. `progress` is called with the bytes of the
/// virtual disk done so far.
pub fn convert(
    src: &mut dyn Disk,
    dst: &Path,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<ConvertReport> {
    let started = Instant::now();
    refuse_input_as_output(src, dst)?;
    let source_size = src.virtual_size();
    // Azure rounds up to whole MiB: the added tail reads as zeros.
    let size = target::output_size(options.target, source_size)?;
    let block_size = options
        .block_size
        .unwrap_or(options.format.default_block_size());
    let vhdx_params = VhdxParams {
        size,
        block_size,
        logical_sector: options.logical_sector,
        physical_sector: options.physical_sector,
        fixed: options.disk_type == DiskType::Fixed,
    };
    match options.format {
        OutputFormat::Vhd if options.target == Some(Target::Azure) => {
            // Azure reads current size, not CHS: it takes VHDs past the spec's 2040 GiB.
            vhd::write::check_size(size, target::AZURE_MAX_SIZE)?
        }
        OutputFormat::Vhd => vhd::write::check_size(size, vhd::write::MAX_SIZE)?,
        OutputFormat::Vhdx => vhdx_params.validate()?,
    }
    let out = Output::create(dst, options.force, options.sparse == SparseMode::Never)?;
    let writer: Box<dyn ImageWriter> = match (options.format, options.disk_type) {
        (OutputFormat::Vhd, DiskType::Fixed) => {
            Box::new(vhd::write::FixedVhdWriter::new(out, size))
        }
        (OutputFormat::Vhd, DiskType::Dynamic) => {
            Box::new(vhd::write::DynamicVhdWriter::new(out, size, block_size)?)
        }
        (OutputFormat::Vhdx, _) => Box::new(vhdx::write::VhdxWriter::new(out, vhdx_params)?),
    };
    // With --verify the output's contents are hashed in the same pass, zeros included.
    let mut hasher = options.verify.then(Sha256::new);
    let offload = options.disk_type == DiskType::Fixed && hasher.is_none();
    tracing::info!(
        "converting {source_size} bytes to a {:?} {:?} of {size} bytes (copy offload {}, verify {})",
        options.disk_type,
        options.format,
        if offload { "tried" } else { "off" },
        options.verify
    );
    let offload_ok = writer.output().offload_flag();
    let (written, writer) = pipeline(writer, |send| {
        let mut buf = vec![0u8; CHUNK as usize];
        let mut runs: Vec<Run> = Vec::new();
        let mut offset = 0u64;
        while offset < size {
            check_interrupted()?;
            let len = CHUNK.min(size - offset);
            // The part of this chunk the source covers; the rest is padding.
            let from_source = source_size.saturating_sub(offset).min(len);
            let data = &mut buf[..len as usize];
            runs.clear();
            if from_source > 0 {
                src.map(offset, from_source, &mut runs)?;
            }
            let has_data = runs.iter().any(|r| r.kind == RunKind::Data);
            crate::disk::prefetch_ahead(src, offset, CHUNK);
            // Fixed outputs take flat data as it is: the kernel copies it.
            if offload && has_data && offload_ok.load(Ordering::Relaxed) {
                if let Some(copies) = copy_jobs(src, &runs) {
                    for job in copies {
                        send(job)?;
                    }
                    offset += len;
                    progress(offset);
                    continue;
                }
            }
            if has_data || hasher.is_some() {
                read_runs(src, &runs, offset, data)?;
                data[from_source as usize..].fill(0);
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&*data);
            }
            if has_data && !is_zero(data) {
                buf = send(Job::Write {
                    offset,
                    buf,
                    len: len as usize,
                })?
                .expect("a buffer back");
            }
            offset += len;
            progress(offset);
        }
        check_interrupted()
    })?;
    let out = writer.finish()?;
    let sha256 = match hasher {
        Some(h) => {
            let expected: [u8; 32] = h.finalize().into();
            verify_output(&out, &expected)?;
            Some(hex(&expected))
        }
        None => None,
    };
    let file_size = out
        .file()
        .metadata()
        .map_err(|e| Error::output_io(dst, "the file's metadata", e))?
        .len();
    out.commit()?;
    Ok(ConvertReport {
        destination: dst.to_path_buf(),
        format: options.format,
        disk_type: options.disk_type,
        target: options.target,
        source_size,
        virtual_size: size,
        block_size,
        file_size,
        data_bytes_written: written,
        sha256,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Turns a flat VMDK's flat file into a fixed VHD at `dst` without copying: grows it
/// when the target rounds the size up, appends the footer, flushes, and renames it. The
/// descriptor is left as it was (it now names a missing file).
pub fn convert_in_place(
    src: &mut dyn Disk,
    dst: &Path,
    options: &ConvertOptions,
) -> Result<ConvertReport> {
    use std::os::unix::fs::FileExt;
    let started = Instant::now();
    let refuse = |why: String| Error::Usage(format!("--in-place: {why}"));
    if options.format != OutputFormat::Vhd || options.disk_type != DiskType::Fixed {
        return Err(refuse("only a fixed VHD is made in place (the flat file becomes its data); pass --type fixed and a .vhd name".into()));
    }
    if options.verify {
        return Err(refuse("no data is copied, so there is nothing to verify; run vdconv compare on a copy instead".into()));
    }
    let flat = src.in_place_file().map_err(refuse)?;
    let source_size = src.virtual_size();
    let size = target::output_size(options.target, source_size)?;
    let max = if options.target == Some(Target::Azure) {
        target::AZURE_MAX_SIZE
    } else {
        vhd::write::MAX_SIZE
    };
    vhd::write::check_size(size, max)?;
    if !options.force && std::fs::symlink_metadata(dst).is_ok() {
        return Err(Error::OutputExists {
            path: dst.to_path_buf(),
        });
    }
    refuse_input_as_output(src, dst)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&flat)
        .map_err(|e| Error::output_io(&flat, "(opening the flat file to append the footer)", e))?;
    let undo = |e: Error| {
        // Put the flat file back as it was, so the VMDK stays valid.
        let _ = file.set_len(source_size);
        e
    };
    check_interrupted()?;
    file.set_len(size)
        .map_err(|e| Error::output_io(&flat, "(growing to the rounded size)", e))?;
    let footer = vhd::footer::Footer::new(
        size,
        vhd::footer::DISK_FIXED,
        vhd::footer::NO_DATA_OFFSET,
        *uuid::Uuid::new_v4().as_bytes(),
    );
    file.write_all_at(zerocopy::IntoBytes::as_bytes(&footer), size)
        .and_then(|()| file.sync_all())
        .map_err(|e| undo(Error::output_io(&flat, "(appending the VHD footer)", e)))?;
    if check_interrupted().is_err() {
        return Err(undo(Error::Interrupted));
    }
    std::fs::rename(&flat, dst).map_err(|e| {
        undo(Error::output_io(
            dst,
            format!(
                "(renaming {} into place; in-place conversion needs both on one file system)",
                flat.display()
            ),
            e,
        ))
    })?;
    Ok(ConvertReport {
        destination: dst.to_path_buf(),
        format: OutputFormat::Vhd,
        disk_type: DiskType::Fixed,
        target: options.target,
        source_size,
        virtual_size: size,
        block_size: 0,
        file_size: size + 512,
        data_bytes_written: 0,
        sha256: None,
        seconds: started.elapsed().as_secs_f64(),
    })
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
fn read_runs(src: &mut dyn Disk, runs: &[Run], offset: u64, data: &mut [u8]) -> Result<()> {
    for r in runs {
        let at = (r.offset - offset) as usize;
        let piece = &mut data[at..at + r.len as usize];
        match r.kind {
            RunKind::Data => src.read_at(r.offset, piece)?,
            RunKind::Zero => piece.fill(0),
        }
    }
    Ok(())
}

/// Work for the writing thread.
enum Job {
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
/// inflating overlap with writing. `produce` hands each chunk to `send(offset, buffer,
/// len)`, which returns an empty buffer to fill next. Returns the bytes written and the
/// writer, ready to finish.
fn pipeline(
    mut writer: Box<dyn ImageWriter>,
    produce: impl FnOnce(&mut dyn FnMut(Job) -> Result<Option<Vec<u8>>>) -> Result<()>,
) -> Result<(u64, Box<dyn ImageWriter>)> {
    use std::sync::mpsc::sync_channel;
    let (full_tx, full_rx) = sync_channel::<Job>(IN_FLIGHT);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
    for _ in 0..IN_FLIGHT {
        empty_tx
            .send(vec![0u8; CHUNK as usize])
            .expect("room for every buffer");
    }
    std::thread::scope(|scope| {
        let consumer = scope.spawn(move || -> Result<(u64, Box<dyn ImageWriter>)> {
            let mut written = 0u64;
            for job in full_rx {
                match job {
                    Job::Write { offset, buf, len } => {
                        writer.write(offset, &buf[..len])?;
                        written += len as u64;
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
            Ok((written, writer))
        });
        let produced = produce(&mut |job| {
            // A failed send means the writer stopped with an error, reported below.
            let wants_buffer = matches!(job, Job::Write { .. });
            full_tx.send(job).map_err(|_| Error::Interrupted)?;
            if wants_buffer {
                empty_rx.recv().map(Some).map_err(|_| Error::Interrupted)
            } else {
                Ok(None)
            }
        });
        drop(full_tx);
        let consumed = consumer.join().expect("writer thread panicked");
        // The writer's own error explains a producer that could not hand over.
        match (produced, consumed) {
            (_, Err(e)) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(()), Ok(done)) => Ok(done),
        }
    })
}

/// Reads the finished (not yet committed) output through vdconv's own reader and checks
/// that its contents hash to what the source hashed to.
fn verify_output(out: &Output, expected: &[u8; 32]) -> Result<()> {
    let mut disk = crate::open(out.temp_path(), crate::OpenOptions::default()).map_err(|e| {
        Error::Verify(format!(
            "{}: the written image cannot be read back: {e}",
            out.path().display()
        ))
    })?;
    let found = content_sha256(disk.as_mut())?;
    if &found != expected {
        return Err(Error::Verify(format!(
            "{}: contents read back (SHA-256 {}) differ from the source ({})",
            out.path().display(),
            hex(&found),
            hex(expected)
        )));
    }
    Ok(())
}

/// True when every byte is zero.
pub fn is_zero(data: &[u8]) -> bool {
    // Compare 16-byte words, then the unaligned ends.
    // SAFETY: every bit pattern is a valid u128.
    let (head, words, tail) = unsafe { data.align_to::<u128>() };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
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
            return Err(Error::OutputIsInput {
                path: dst.to_path_buf(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection_sees_every_byte() {
        let mut v = vec![0u8; 4099];
        assert!(is_zero(&v));
        for at in [0, 1, 15, 16, 2048, 4097, 4098] {
            v[at] = 1;
            assert!(!is_zero(&v[..]), "byte {at}");
            assert!(!is_zero(&v[1..]) || at == 0);
            v[at] = 0;
        }
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(
            OutputFormat::from_path(Path::new("a/b.VHD")),
            Some(OutputFormat::Vhd)
        );
        assert_eq!(
            OutputFormat::from_path(Path::new("b.vhdx")),
            Some(OutputFormat::Vhdx)
        );
        assert_eq!(OutputFormat::from_path(Path::new("b.img")), None);
    }
}

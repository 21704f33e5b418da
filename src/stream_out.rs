//! Streaming output: the image written forward, in one pass over the output, to any
//! `Write` (stdout for DST `-`), byte for byte the file `convert` would write.
//!
//! The file writers place blocks as data arrives and write headers, tables and footers
//! last, at the front of the file. A stream cannot go back, so:
//! 1. A first pass over the source finds what the file writer would allocate (for each
//!    1 MiB chunk: does it hold non-zero data) and, for reproducible ids, hashes the
//!    contents. Only a fixed VHD, whose one footer comes last, needs no first pass.
//! 2. The writer is run over that allocation without data, into a buffer holding only the
//!    front of the file (headers, metadata, the BAT): the same code that writes the file,
//!    so the same layout and bytes.
//! 3. The front is sent, then a second writer is fed the data again, in order, through a
//!    sink that turns its positioned writes into a forward stream (zeros for the gaps the
//!    file would hold as holes). What it writes again into the front at the end must equal
//!    what was sent: a check that both runs laid the image out the same way.
//!
//! Ids: with a reproducible time (SOURCE_DATE_EPOCH) they derive from the content, as
//! for a file, so the stream equals the file byte for byte. Otherwise they are random, as
//! for a file, and only the contents (and layout) are the same.
//!
//! Memory: one bit per MiB of disk and a few chunks. The front of the image (the BAT: 4
//! MiB per TiB for a VHD in 2 MiB blocks, 8 MiB per TiB for a VHDX in 1 MiB blocks) is
//! held in memory up to 32 MiB and in an unnamed temporary file beyond (front.rs).

mod front;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::cancel::Cancel;
use crate::convert::{
    CHUNK, ConvertReport, Job, Phase, Progress, pipeline, read_runs, reproducible_seed,
};
use crate::disk::{Disk, Run, RunKind};
use crate::error::{Error, ErrorKind, Result};
use crate::identity::{ContentSeed, Identity};
use crate::plan::{ConvertPlan, DiskType, OutputFormat, SparseMode};
use crate::reflink::ReflinkMode;
use crate::sink::{ImageWriter, Sink};
use crate::zero::is_zero;
use crate::{vhd, vhdx};
use front::Front;

/// The name a stream goes by in messages and reports.
pub const STREAM: &str = "-";

/// Whether `dst` names the stream rather than a file.
pub fn is_stream(dst: &Path) -> bool {
    dst.as_os_str() == STREAM
}

/// Refuses the options a stream cannot honour, before anything is read.
pub fn check_plan(plan: &ConvertPlan) -> Result<()> {
    let refuse = |option: &str, why: &str| Err(Error::usage(Some(option), why));
    if plan.in_place {
        return refuse(
            "--in-place",
            "turns a flat file into the image; it cannot write to stdout",
        );
    }
    if plan.verify {
        return refuse(
            "--verify",
            "reads the finished image back, which a stream cannot be; check the received copy with `vdconv compare SRC COPY` instead",
        );
    }
    if plan.sparse != SparseMode::Auto {
        return refuse(
            "--sparse",
            "does not apply to a stream, which carries every byte (zeros included)",
        );
    }
    if plan.reflink == ReflinkMode::Always {
        return refuse("--reflink", "always cannot share blocks with a stream");
    }
    Ok(())
}

/// Converts `src` as `plan` says, writing the image forward into `out`. The report's
/// `file_size` is the bytes sent. On an error `out` has received part of an image: the
/// consumer must heed the failure (the exit status, with `set -o pipefail`).
pub fn convert_to_writer(
    src: &mut dyn Disk,
    plan: &ConvertPlan,
    out: &mut (dyn Write + Send),
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<ConvertReport> {
    check_plan(plan)?;
    let started = Instant::now();
    let source_size = src.virtual_size();
    let size = plan.output_size(source_size)?;
    let reproducible = plan.reproducible_time.is_some();
    let fixed_vhd = plan.format == OutputFormat::Vhd && plan.disk_type == DiskType::Fixed;
    let dynamic = plan.disk_type == DiskType::Dynamic;
    let mut walk = Walk {
        size,
        source_size,
        passes: if fixed_vhd { 1 } else { 2 },
        progress,
    };

    // Pass 1: what the file writer would allocate, and the content's digest.
    let mut first = None;
    if !fixed_vhd && (dynamic || reproducible) {
        first = Some(walk.first_pass(src, reproducible, cancel)?);
    }
    let random_seed = || {
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        seed
    };
    // One identity for both runs of the writer: random ids come from a random seed drawn
    // once, so the front sent first and the front written last agree.
    let identity_for = |digest: Option<[u8; 32]>| match (plan.reproducible_time, digest) {
        (Some(time), Some(d)) => Identity::reproducible(reproducible_seed(plan, size, &d), time),
        _ => Identity::reproducible(random_seed(), Identity::random_now().time()),
    };

    // The front of the file, as the writer leaves it when given the allocation alone.
    let front_len = front_bytes(plan, size);
    let mut identity = None;
    let front = Arc::new(Front::new(front_len));
    if front_len > 0 {
        let id = identity_for(first.as_ref().and_then(|f| f.digest));
        identity = Some(id);
        let capture = Capture {
            front: front.clone(),
        };
        let mut writer = writer_for(plan, size, capture);
        if let Some(first) = &first {
            let mut pieces = Vec::new();
            for chunk in first.chunks_with_data() {
                cancel.check()?;
                let offset = chunk * CHUNK;
                pieces.clear();
                writer.place(offset, CHUNK.min(size - offset), &mut pieces)?;
            }
        }
        writer.finish(id)?;
    }

    // Pass 2: the front, then the data in order, through the same writer code.
    let stream = Arc::new(Forward {
        state: Mutex::new(ForwardState {
            out: BufWriter::with_capacity(CHUNK as usize, out),
            pos: 0,
        }),
        front,
    });
    stream.send_front()?;
    let mut writer = writer_for(plan, size, stream.clone());
    // Blocks smaller than a chunk (a VHD in 512 KiB blocks) are written one at a time:
    // placing a whole chunk at once would put the second block's bitmap before the first
    // block's data, behind the stream. Allocation, and so the layout, is the same.
    let piece = plan.block_size.map_or(CHUNK, |b| b.min(CHUNK));
    let (written, digest) = walk.second_pass(
        src,
        &mut *writer,
        first.as_ref(),
        piece,
        reproducible && fixed_vhd,
        cancel,
    )?;
    let identity = identity.unwrap_or_else(|| identity_for(digest));
    writer.finish(identity)?;
    let file_size = stream.flush()?;
    Ok(ConvertReport {
        file_size,
        data_bytes_written: written,
        warnings: src.warnings().to_vec(),
        seconds: started.elapsed().as_secs_f64(),
        ..ConvertReport::planned(plan, src.path(), PathBuf::from(STREAM), source_size, size)
    })
}

/// Bytes at the front of the file that the writer fills in last: everything before the
/// first data block (none for a fixed VHD, whose only metadata is its closing footer).
fn front_bytes(plan: &ConvertPlan, size: u64) -> u64 {
    match (plan.format, plan.disk_type) {
        (OutputFormat::Vhd, DiskType::Fixed) => 0,
        (OutputFormat::Vhd, DiskType::Dynamic) => {
            let block = plan.block_size.unwrap_or(vhd::dynamic::DEFAULT_BLOCK_SIZE);
            let entries = vhd::dynamic::bat_entries(size, block);
            vhd::dynamic::BAT_OFFSET + vhd::dynamic::bat_bytes(entries)
        }
        (OutputFormat::Vhdx, _) => {
            let p = plan.vhdx_params(size);
            let layout = vhdx::bat::BatLayout::new(size, p.block_size, u64::from(p.logical_sector));
            vhdx::format::BAT_OFFSET + layout.region_bytes()
        }
    }
}

/// The writer `convert` uses for this plan, over `sink`.
fn writer_for<'a, S: Sink + 'a>(
    plan: &ConvertPlan,
    size: u64,
    sink: S,
) -> Box<dyn ImageWriter + 'a> {
    match (plan.format, plan.disk_type) {
        (OutputFormat::Vhd, DiskType::Fixed) => {
            Box::new(vhd::write::FixedVhdWriter::new(sink, size))
        }
        (OutputFormat::Vhd, DiskType::Dynamic) => Box::new(vhd::write::DynamicVhdWriter::new(
            sink,
            size,
            plan.block_size.unwrap_or(vhd::dynamic::DEFAULT_BLOCK_SIZE),
        )),
        (OutputFormat::Vhdx, _) => {
            Box::new(vhdx::write::VhdxWriter::new(sink, plan.vhdx_params(size)))
        }
    }
}

/// What the first pass found: a bit per chunk that holds non-zero data, and the digest
/// of the whole contents when asked for.
struct FirstPass {
    nonzero: Vec<u64>,
    digest: Option<[u8; 32]>,
}

impl FirstPass {
    fn get(&self, chunk: u64) -> bool {
        self.nonzero[(chunk / 64) as usize] & (1 << (chunk % 64)) != 0
    }

    fn chunks_with_data(&self) -> impl Iterator<Item = u64> + '_ {
        self.nonzero.iter().enumerate().flat_map(|(i, &word)| {
            (0..64u64)
                .filter(move |b| word & (1 << b) != 0)
                .map(move |b| i as u64 * 64 + b)
        })
    }
}

/// The walk over the source in chunks, shared by both passes.
struct Walk<'p> {
    size: u64,
    source_size: u64,
    passes: u64,
    progress: &'p mut dyn FnMut(Progress),
}

impl Walk<'_> {
    /// Maps the chunk at `offset` and, when it holds data, reads it into `data` (zeros
    /// past the source's end). Returns whether it holds data.
    fn read_chunk(
        &self,
        src: &mut dyn Disk,
        offset: u64,
        data: &mut [u8],
        runs: &mut Vec<Run>,
    ) -> Result<bool> {
        let from_source = self
            .source_size
            .saturating_sub(offset)
            .min(data.len() as u64);
        runs.clear();
        if from_source > 0 {
            src.map(offset, from_source, runs)?;
        }
        let has_data = runs.iter().any(|r| r.kind == RunKind::Data);
        crate::disk::prefetch_ahead(src, offset, CHUNK);
        if has_data {
            read_runs(src, runs, offset, data)?;
            data[from_source as usize..].fill(0);
        }
        Ok(has_data)
    }

    fn report(&mut self, pass: u64, done: u64) {
        (self.progress)(Progress {
            phase: Phase::Convert,
            done: (pass * self.size + done) / self.passes,
            total: self.size,
        });
    }

    fn first_pass(&mut self, src: &mut dyn Disk, hash: bool, cancel: &Cancel) -> Result<FirstPass> {
        let chunks = self.size.div_ceil(CHUNK);
        let mut nonzero = vec![0u64; chunks.div_ceil(64) as usize];
        let mut seed = hash.then(ContentSeed::new);
        let mut buf = vec![0u8; CHUNK as usize];
        let mut runs = Vec::new();
        for chunk in 0..chunks {
            cancel.check()?;
            let offset = chunk * CHUNK;
            let data = &mut buf[..CHUNK.min(self.size - offset) as usize];
            let has_data = self.read_chunk(src, offset, data, &mut runs)?;
            if let Some(s) = seed.as_mut().filter(|_| has_data) {
                s.update(offset, data);
            }
            // As the file path decides: a chunk is written when it maps data that is not
            // all zeros.
            if has_data && !is_zero(data) {
                nonzero[(chunk / 64) as usize] |= 1 << (chunk % 64);
            }
            self.report(0, offset + data.len() as u64);
        }
        Ok(FirstPass {
            nonzero,
            digest: seed.map(ContentSeed::finish),
        })
    }

    /// Feeds `writer` the chunks it writes, in order, reading on this thread and writing
    /// on another. A dynamic image gets exactly the chunks the first pass found (a chunk
    /// that changed since is an error: the front already sent would be wrong). Returns
    /// the data bytes written and, when `hash`, the digest of the whole contents.
    fn second_pass(
        &mut self,
        src: &mut dyn Disk,
        writer: &mut (dyn ImageWriter + '_),
        first: Option<&FirstPass>,
        piece: u64,
        hash: bool,
        cancel: &Cancel,
    ) -> Result<(u64, Option<[u8; 32]>)> {
        let pass = self.passes - 1;
        let chunks = self.size.div_ceil(CHUNK);
        pipeline(writer, piece, |send| {
            let mut seed = hash.then(ContentSeed::new);
            let mut runs = Vec::new();
            let mut buf = vec![0u8; CHUNK as usize];
            for chunk in 0..chunks {
                cancel.check()?;
                let offset = chunk * CHUNK;
                let len = CHUNK.min(self.size - offset) as usize;
                let expected = first.map(|f| f.get(chunk));
                if expected == Some(false) {
                    // The first pass found zeros here (and took any digest).
                    self.report(pass, offset + len as u64);
                    continue;
                }
                let data = &mut buf[..len];
                let has_data = self.read_chunk(src, offset, data, &mut runs)?;
                if let Some(s) = seed.as_mut().filter(|_| has_data) {
                    s.update(offset, data);
                }
                let write = has_data && !is_zero(data);
                if expected.is_some_and(|e| e != write) {
                    return Err(changed(src.path(), offset));
                }
                if write {
                    buf = send(Job::Write { offset, buf, len })?.ok_or_else(Error::interrupted)?;
                }
                self.report(pass, offset + len as u64);
            }
            Ok(seed.map(ContentSeed::finish))
        })
    }
}

/// The source read differently in the second pass than in the first.
fn changed(path: &Path, offset: u64) -> Error {
    Error::output(
        ErrorKind::OutputIo,
        path,
        format!(
            "the chunk at virtual offset {offset} changed between the two passes over the source; the stream sent so far is invalid (was the source written to?)"
        ),
    )
    .as_input()
}

/// A sink that keeps what is written to the front of the file and drops the rest.
struct Capture {
    front: Arc<Front>,
}

impl Sink for Capture {
    fn path(&self) -> &Path {
        Path::new(STREAM)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.front.write_at(buf, offset)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.front.read_at(buf, offset)
    }

    fn set_len(&self, _len: u64) -> Result<()> {
        Ok(())
    }

    fn copy_from(
        &self,
        _src: &std::fs::File,
        _src_offset: u64,
        _offset: u64,
        _len: u64,
    ) -> Result<()> {
        Ok(())
    }

    fn hole_piece(&self) -> usize {
        64 << 10
    }
}

/// The forward stream: positioned writes at or past the current position are sent
/// (zeros fill any gap, as holes read in a file); writes into the front already sent
/// must repeat it exactly.
struct Forward<'a> {
    state: Mutex<ForwardState<'a>>,
    front: Arc<Front>,
}

struct ForwardState<'a> {
    out: BufWriter<&'a mut (dyn Write + Send)>,
    /// Bytes sent so far.
    pos: u64,
}

static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

impl ForwardState<'_> {
    fn send(&mut self, buf: &[u8]) -> Result<()> {
        self.out.write_all(buf).map_err(broken)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn zeros_to(&mut self, end: u64) -> Result<()> {
        while self.pos < end {
            let n = (end - self.pos).min(ZEROS.len() as u64) as usize;
            self.send(&ZEROS[..n])?;
        }
        Ok(())
    }
}

/// Writing the stream failed: the consumer went away or its disk filled. Not an
/// io::Error source: a reader that went away mid-image is a failure, not the quiet end of
/// `vdconv ... | head`.
fn broken(e: std::io::Error) -> Error {
    Error::output(
        ErrorKind::OutputIo,
        Path::new(STREAM),
        format!("cannot write the image to the stream ({e}); the receiver has an incomplete image"),
    )
}

impl Forward<'_> {
    fn send_front(&self) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.front.send(|piece| state.send(piece))
    }

    /// Flushes what is buffered; returns the bytes sent.
    fn flush(&self) -> Result<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.out.flush().map_err(broken)?;
        Ok(state.pos)
    }

    fn diverged(offset: u64, len: usize) -> Error {
        Error::output(
            ErrorKind::OutputIo,
            Path::new(STREAM),
            format!(
                "internal error: the writer went back to offset {offset} ({len} bytes) past what was already sent, unlike it; please report this"
            ),
        )
    }
}

impl Sink for Forward<'_> {
    fn path(&self) -> &Path {
        Path::new(STREAM)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if offset >= state.pos {
            state.zeros_to(offset)?;
            return state.send(buf);
        }
        // Behind: only the front, written again as it was sent.
        if self.front.holds(buf, offset)? {
            return Ok(());
        }
        Err(Self::diverged(offset, buf.len()))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        // Writers read back only table windows they wrote, which lie in the front.
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.front.len())
        {
            return Err(Self::diverged(offset, buf.len()));
        }
        self.front.read_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if len < state.pos {
            return Err(Self::diverged(len, 0));
        }
        state.zeros_to(len)
    }

    fn copy_from(&self, src: &std::fs::File, src_offset: u64, offset: u64, len: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len.min(CHUNK) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            src.read_exact_at(&mut buf[..n], src_offset + done)
                .map_err(|e| Error::input_io(Path::new(STREAM), "flat data", e))?;
            self.write_at(&buf[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    fn hole_piece(&self) -> usize {
        // As the file output skips them (and counts what it wrote); the gaps are sent as
        // zeros all the same.
        64 << 10
    }
}

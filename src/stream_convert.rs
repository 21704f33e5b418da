//! Converting a disk that can only be read front to back, in one pass: a streamOptimized
//! VMDK from a pipe, through a gzip decoder, or across the chunks of an export. Each grain
//! record names the sector it belongs at, so grains are placed as they pass; the dynamic
//! writers allocate a block on its first write in any order and a fixed one is placed by
//! offset, so nothing is held back. The grain tables are checked against the grains when
//! the stream ends (`vmdk::sequential`): the image is then exactly what random access
//! would have read, or the conversion fails and nothing is left behind.
//!
//! Three stages, as in `convert`: this thread reads records (and whatever hashes the
//! bytes on the way: the manifest's digests), inflating workers decode batches of grains,
//! and a writer thread places them in the order they were read, so the output's layout
//! does not depend on thread timing. Memory is a few batches of at most 1 MiB of grains
//! (or one grain, when grains are larger), whatever the disk's size.

use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use flate2::Decompress;
use sha2::{Digest, Sha256};

use crate::cancel::Cancel;
use crate::compare::hex;
use crate::convert::{
    ConvertReport, Phase, Progress, Staged, create_writer, finish_and_verify, reproducible_seed,
};
use crate::error::{Error, ErrorKind, Result};
use crate::identity::{ContentSeed, Identity};
use crate::plan::{ConvertPlan, SparseMode};
use crate::sink::ImageWriter;
use crate::vmdk::sequential::{GrainRecord, SequentialVmdk, inflate_grain};
use crate::zero::is_zero;

/// Bytes of disk a batch of grains covers at most (one grain when grains are larger).
const BATCH: usize = 1 << 20;
/// Batches queued between stages, per worker.
const QUEUED: usize = 1;

/// Inflated batches' buffers, handed back by the writer for the workers to fill again:
/// no fresh (zeroed) allocation per batch. Holds at most the batches in flight.
type Pool = std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// Grains read together, for one worker to inflate.
struct Batch {
    grains: Vec<(GrainRecord, std::ops::Range<usize>)>,
    compressed: Vec<u8>,
}

/// A batch inflated: each grain's place, its bytes in `data` (a grain's room each), and
/// whether it is all zeros (then it is not written: it reads as zeros anyway).
struct Inflated {
    grains: Vec<(GrainRecord, bool)>,
    data: Vec<u8>,
}

/// Converts the disk `src` reads into a new image as `plan` says, leaving it staged (see
/// `convert::Staged`). Returns the staged image and the reader, positioned just after the
/// stream's end (the caller drains what follows: padding, a manifest's last bytes).
pub fn convert_stream<R: Read>(
    mut src: SequentialVmdk<R>,
    plan: &ConvertPlan,
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Staged, R)> {
    if plan.in_place {
        return Err(Error::usage(
            Some("--in-place"),
            "needs a flat VMDK file; a disk read front to back has none",
        ));
    }
    let started = Instant::now();
    let dst = plan.destination.clone();
    let source_size = src.virtual_size();
    let size = plan.output_size(source_size)?;
    if plan.sparse == SparseMode::Never
        && let Some(free) = crate::output::free_space(&dst)
        && free < size.saturating_add(8 << 20)
    {
        return Err(Error::output(
            ErrorKind::NoSpace,
            &dst,
            format!(
                "needs about {} MiB and its file system has {} MiB free; nothing was written",
                (size + (8 << 20)).div_ceil(1 << 20),
                free >> 20
            ),
        ));
    }
    let (out, writer) = create_writer(plan, size)?;
    let hashing = plan.verify || plan.reproducible_time.is_some();
    let grain = src.grain_bytes();
    let per_batch = (BATCH / grain).max(1);
    // This conversion's share of the cores (all of them, unless a batch shares them).
    let workers = crate::threads::per_conversion().clamp(1, 8);
    tracing::info!(
        "converting {source_size} bytes front to back into {} ({workers} inflating threads)",
        dst.display()
    );
    let path = src.path().to_path_buf();
    let mut written_total = 0u64;
    let mut digests: Option<Digests> = None;
    let mut writer_back: Option<Box<dyn ImageWriter>> = None;
    std::thread::scope(|scope| -> Result<()> {
        let mut to_workers: Vec<SyncSender<Batch>> = Vec::new();
        let mut from_workers: Vec<Receiver<Result<Inflated>>> = Vec::new();
        let mut handles = Vec::new();
        let pool = Pool::default();
        for _ in 0..workers {
            let (btx, brx) = sync_channel::<Batch>(QUEUED);
            let (itx, irx) = sync_channel::<Result<Inflated>>(QUEUED);
            to_workers.push(btx);
            from_workers.push(irx);
            let path = path.clone();
            let pool = pool.clone();
            handles.push(scope.spawn(move || inflate_worker(brx, itx, grain, &path, &pool)));
        }
        let hashes = hashing.then(|| Hashes::new(&path, source_size, size, plan.verify));
        let writing =
            scope.spawn(move || write_in_order(writer, from_workers, grain, hashes, &pool));
        // Read records on this thread, handing batches to the workers in turn.
        let produced = (|| -> Result<()> {
            let mut turn = 0usize;
            loop {
                cancel.check()?;
                let mut batch = Batch {
                    grains: Vec::with_capacity(per_batch),
                    compressed: Vec::new(),
                };
                while batch.grains.len() < per_batch {
                    let start = batch.compressed.len();
                    let Some(record) = src.next_grain(&mut batch.compressed)? else {
                        break;
                    };
                    let end = batch.compressed.len();
                    batch.grains.push((record, start..end));
                }
                let last = batch.grains.len() < per_batch;
                if let Some((r, _)) = batch.grains.last() {
                    progress(Progress {
                        phase: Phase::Convert,
                        done: (r.offset + r.len as u64).min(size),
                        total: size,
                    });
                }
                if !batch.grains.is_empty() && to_workers[turn % workers].send(batch).is_err() {
                    // A worker or the writer stopped; its error is reported below.
                    return Err(Error::interrupted());
                }
                turn += 1;
                if last {
                    return Ok(());
                }
            }
        })();
        drop(to_workers);
        let inflating: Result<()> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(worker_panicked())))
            .fold(Ok(()), Result::and);
        let wrote = writing.join().unwrap_or_else(|_| Err(worker_panicked()));
        // The cause comes first: a writer's or worker's error explains a producer that
        // could not hand over.
        let (written, writer, hashes) = match (produced, inflating, wrote) {
            (_, _, Err(e)) | (_, Err(e), _) | (Err(e), _, _) => return Err(e),
            (Ok(()), Ok(()), Ok(done)) => done,
        };
        written_total = written;
        digests = hashes;
        writer_back = Some(writer);
        Ok(())
    })?;
    cancel.check()?;
    progress(Progress {
        phase: Phase::Convert,
        done: size,
        total: size,
    });
    let writer = writer_back.expect("set when the pipeline succeeded");
    let full = digests.and_then(|d| d.full);
    let identity = match (plan.reproducible_time, digests.and_then(|d| d.seed)) {
        (Some(time), Some(seed)) => {
            Identity::reproducible(reproducible_seed(plan, size, &seed), time)
        }
        _ => Identity::random_now(),
    };
    let content = full.map(|(_, content)| content);
    let (verified, file_size) = finish_and_verify(
        writer,
        identity,
        &out,
        &dst,
        plan.verify,
        content,
        cancel,
        progress,
    )?;
    let warnings = src.warnings().to_vec();
    let report = ConvertReport {
        file_size,
        data_bytes_written: written_total,
        verified,
        sha256: verified.and(full).map(|(_, c)| hex(&c)),
        source_sha256: verified.and(full).map(|(s, _)| hex(&s)),
        files: vec![dst.clone()],
        warnings,
        seconds: started.elapsed().as_secs_f64(),
        ..ConvertReport::planned(plan, &path, dst, source_size, size)
    };
    Ok((Staged::new(out, report), src.into_inner()))
}

fn worker_panicked() -> Error {
    Error::output_limit("a conversion thread failed unexpectedly")
}

/// Inflates batches until the producer hangs up; a corrupt grain stops it with the error.
fn inflate_worker(
    batches: Receiver<Batch>,
    out: SyncSender<Result<Inflated>>,
    grain: usize,
    path: &std::path::Path,
    pool: &Pool,
) -> Result<()> {
    let mut decoder = Decompress::new(true);
    for batch in batches {
        // Every grain's room is overwritten (inflated bytes, then zeros to its end), so a
        // reused buffer needs no clearing.
        let mut data = pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        data.resize(batch.grains.len() * grain, 0);
        let mut grains = Vec::with_capacity(batch.grains.len());
        let mut failed = None;
        for ((record, range), room) in batch.grains.iter().zip(data.chunks_mut(grain)) {
            if let Err(e) = inflate_grain(
                &mut decoder,
                &batch.compressed[range.clone()],
                room,
                record.len,
                path,
                record.record,
            ) {
                failed = Some(e);
                break;
            }
            grains.push((*record, is_zero(&room[..record.len])));
        }
        if let Some(e) = failed {
            // The writer reports it in its turn, after every batch read before it.
            let _ = out.send(Err(e));
            return Ok(());
        }
        if out.send(Ok(Inflated { grains, data })).is_err() {
            return Ok(()); // The writer stopped; it reports why.
        }
    }
    Ok(())
}

/// The virtual contents hashed in disk order, possible in one pass only when grains come
/// in order: all of it, zeros between grains included, for --verify; the data alone
/// (ContentSeed, as `convert` does) for reproducible ids.
struct Hashes {
    path: std::path::PathBuf,
    source: Option<Sha256>,
    seed: ContentSeed,
    next: u64,
    source_size: u64,
    size: u64,
}

/// What the hashes came to.
#[derive(Clone, Copy)]
struct Digests {
    /// (source digest, output digest): the output's has the zeros a target added.
    full: Option<([u8; 32], [u8; 32])>,
    seed: Option<[u8; 32]>,
}

impl Hashes {
    fn new(path: &std::path::Path, source_size: u64, size: u64, full: bool) -> Self {
        Hashes {
            path: path.to_path_buf(),
            source: full.then(Sha256::new),
            seed: ContentSeed::new(),
            next: 0,
            source_size,
            size,
        }
    }

    fn zeros(h: &mut Sha256, mut n: u64) {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            h.update(&ZEROS[..k]);
            n -= k as u64;
        }
    }

    fn grain(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset < self.next {
            return Err(Error::unsupported(
                &self.path,
                format!(
                    "the stream holds the grain for byte {offset} after the one for byte {}; its contents cannot be hashed in disk order in one pass (convert without --verify or SOURCE_DATE_EPOCH, then vdconv compare)",
                    self.next
                ),
            ));
        }
        if let Some(h) = self.source.as_mut() {
            Self::zeros(h, offset - self.next);
            h.update(data);
        }
        self.seed.update(offset, data);
        self.next = offset + data.len() as u64;
        Ok(())
    }

    fn finish(self) -> Digests {
        let (next, source_size, size) = (self.next, self.source_size, self.size);
        let full = self.source.map(|mut source| {
            Self::zeros(&mut source, source_size - next);
            let mut output = source.clone();
            Self::zeros(&mut output, size - source_size);
            (source.finalize().into(), output.finalize().into())
        });
        Digests {
            full,
            seed: Some(self.seed.finish()),
        }
    }
}

type Written = (u64, Box<dyn ImageWriter>, Option<Digests>);

/// Takes inflated batches from the workers in the order they were handed out and writes
/// their non-zero grains. Returns the data bytes written, the writer and the digests.
fn write_in_order(
    mut writer: Box<dyn ImageWriter>,
    from_workers: Vec<Receiver<Result<Inflated>>>,
    grain: usize,
    mut hashes: Option<Hashes>,
    pool: &Pool,
) -> Result<Written> {
    let mut written = 0u64;
    'batches: for turn in 0usize.. {
        let Ok(batch) = from_workers[turn % from_workers.len()].recv() else {
            break 'batches; // Every batch written: the producer hung up.
        };
        let batch = batch?;
        // Grains that follow one another on the disk and in the buffer are written in one
        // go: a batch is usually one run of 1 MiB.
        let mut run: Option<(u64, std::ops::Range<usize>)> = None;
        for (i, (record, zero)) in batch.grains.iter().enumerate() {
            let at = i * grain;
            let data = &batch.data[at..at + record.len];
            if let Some(h) = hashes.as_mut() {
                h.grain(record.offset, data)?;
            }
            let continues = run.as_ref().is_some_and(|(offset, bytes)| {
                bytes.end == at && offset + bytes.len() as u64 == record.offset
            });
            if *zero || !continues {
                if let Some((offset, bytes)) = run.take() {
                    written += writer.write(offset, &batch.data[bytes])?;
                }
            }
            if !zero {
                match run.as_mut() {
                    Some((_, bytes)) if continues => bytes.end = at + record.len,
                    _ => run = Some((record.offset, at..at + record.len)),
                }
            }
        }
        if let Some((offset, bytes)) = run {
            written += writer.write(offset, &batch.data[bytes])?;
        }
        pool.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(batch.data);
    }
    Ok((written, writer, hashes.map(Hashes::finish)))
}

//! Converting an OVA read from a pipe (`curl … | vdconv convert - DST`), front to back in
//! one pass: the descriptor first, then each disk as its member passes, its grains placed
//! as they come (`stream_convert`), every file hashed on the way for the manifest, which
//! is checked when the archive ends; only then are the images put in place. A disk whose
//! bytes cannot be read in order (not streamOptimized, chunks out of order, a disk before
//! the descriptor) is an error naming its member. Memory stays bounded whatever the
//! disks' sizes.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cancel::Cancel;
use crate::convert::{ConvertReport, Progress, Staged};
use crate::error::{Error, ExitClass, Result};
use crate::ova::gzip::{BoundedGunzip, inflate_limit};
use crate::ova::{Compression, OvaError, OvaStream, Place, StreamEntry};
use crate::plan::{ConvertPlan, ConvertRequest};
use crate::stream_convert::convert_stream;
use crate::vmdk::sequential::SequentialVmdk;

use super::advice;
use super::detect::ExportKind;
use super::disk::{BlankDisk, Typed, error_of, member_path, with_manifest};
use super::file::{fit_of_staged, one_pass};
use super::layout::{self, DiskName, MadeFolder};
use super::report::{ExportDiskReport, ExportReport, ManifestSummary, NO_MANIFEST};
use super::{ExportRequest, Observer, commit_all};

/// Converts the OVA `reader` carries (`src` names it) into `dst`.
pub fn convert(
    src: &Path,
    reader: Box<dyn Read + Send>,
    dst: &Path,
    req: &ExportRequest,
    cancel: &Cancel,
    obs: &mut dyn Observer,
) -> Result<ExportReport> {
    let started = Instant::now();
    let mut stream = OvaStream::new(reader, src)?;
    stream.set_verify(req.verify_manifest);
    let env = stream.envelope().clone();
    let names = DiskName::all(&env);
    let layout = layout::plan(&names, req.disk.as_deref(), dst, &req.convert)?;
    layout::refuse_existing(&layout, src)?;
    let mut warnings: Vec<String> = Vec::new();
    let hw = &env.system.hardware;
    let (notes, fit) = advice::firmware_advice(hw.firmware, hw.secure_boot, req.convert.target);
    for n in &notes {
        obs.note(n);
    }
    for w in fit {
        obs.warning(&w);
        warnings.push(w);
    }
    let folder = MadeFolder::create(&layout)?;
    let count = layout.disks.len();
    let mut staged: Vec<Option<Staged>> = (0..count).map(|_| None).collect();
    let mut pending: Option<StreamEntry> = None;
    loop {
        cancel.check()?;
        let entry = match pending.take() {
            Some(e) => e,
            None => match stream.next_entry()? {
                Some(e) => e,
                None => break,
            },
        };
        // Files that are no chosen disk pass by, hashed by the stream.
        let Some(slot) = entry.disk_id.as_deref().and_then(|id| {
            layout
                .disks
                .iter()
                .position(|(i, _)| names[*i].disk_id == id)
        }) else {
            pass_by(&mut stream, src, &entry, cancel)?;
            continue;
        };
        let (i, plan) = &layout.disks[slot];
        let place = Place::member(src, &entry.member.name);
        if staged[slot].is_some() {
            if entry.chunk.is_some() {
                // A chunk after the disk's end: hashed, not needed.
                pass_by(&mut stream, src, &entry, cancel)?;
                continue;
            }
            return Err(Error::refused(
                src,
                format!(
                    "member {:?} appears twice in the archive; which one is meant is ambiguous",
                    entry.member.name
                ),
            ));
        }
        if let Some(c) = entry.chunk.filter(|&c| c != 0) {
            return Err(Error::unsupported(
                src,
                format!(
                    "member {:?} is chunk {c} of {}, but chunk 0 has not come yet; chunks out of order cannot be read in one pass (save the OVA to a file first)",
                    entry.member.name,
                    names[*i].shown()
                ),
            ));
        }
        obs.disk(slot + 1, count, names[*i].shown());
        let file = entry.file_id.as_deref().and_then(|id| env.file(id));
        let chunk_size = file.and_then(|f| f.chunk_size);
        let def = &env.disks[*i];
        let path = member_path(src, names[*i].shown());
        let mut chunks = ChunkReader::new(&mut stream, entry, chunk_size, src);
        let mut progress = |p: Progress| obs.progress(p);
        let expected = (def.disk_id.as_str(), names[*i].shown(), def.capacity);
        let stage = {
            let raw = Typed::new(&mut chunks, place.clone());
            match file.map_or(Compression::Identity, |f| f.compression) {
                Compression::Identity => {
                    one_pass(raw, &path, expected, plan, cancel, &mut progress)
                }
                Compression::Gzip => {
                    let limit = inflate_limit(def.capacity);
                    let gunzip = BoundedGunzip::new(raw, limit, place.clone());
                    one_pass(
                        Typed::new(gunzip, place),
                        &path,
                        expected,
                        plan,
                        cancel,
                        &mut progress,
                    )
                }
            }
        };
        pending = chunks.into_pending();
        let mut stage = match stage {
            Ok(s) => s,
            // Damage the manifest can name says more than the structure it broke: read
            // on to the archive's end (hashing) to see whether it does.
            Err(e) if e.class() == ExitClass::Input && req.verify_manifest => {
                let manifest = stream.manifest_name().to_string();
                return Err(match stream.finish() {
                    Err(m @ OvaError::ManifestMismatch { .. }) => with_manifest(m, &manifest),
                    _ => e,
                });
            }
            Err(e) => return Err(e),
        };
        if let Some(t) = plan.target {
            let mut extra = Vec::new();
            if *i == 0
                && let Some(w) = advice::controller_advice(t, env.attachment(def).as_ref())
            {
                extra.push(w);
            }
            for w in fit_of_staged(t, &stage, cancel) {
                extra.push(format!("disk {}: {w}", names[*i].shown()));
            }
            for w in &extra {
                obs.warning(w);
            }
            stage.report.warnings.extend(extra);
        }
        staged[slot] = Some(stage);
    }
    // Blank disks need no bytes from the stream.
    for (slot, (i, plan)) in layout.disks.iter().enumerate() {
        let def = &env.disks[*i];
        if def.file_ref.is_none() {
            obs.disk(slot + 1, count, names[*i].shown());
            let mut blank = BlankDisk::new(member_path(src, &def.disk_id), def.capacity);
            let mut progress = |p: Progress| obs.progress(p);
            staged[slot] = Some(crate::convert::convert_staged(
                &mut blank,
                plan,
                cancel,
                &mut progress,
            )?);
        }
    }
    // The archive's end: the model, and every digest the manifest lists.
    let manifest_name = stream.manifest_name().to_string();
    let outcome = stream
        .finish()
        .map_err(|e| with_manifest(e, &manifest_name))?;
    let pkg = outcome.package;
    for w in &pkg.warnings {
        obs.warning(w);
        warnings.push(w.clone());
    }
    let mut stages = Vec::with_capacity(count);
    for (slot, s) in staged.into_iter().enumerate() {
        let Some(s) = s else {
            let (i, _) = &layout.disks[slot];
            return Err(Error::input_io(
                src,
                format!(
                    "disk {:?}: its file {} is not in the archive",
                    names[*i].disk_id,
                    names[*i].shown()
                ),
                io::Error::from(io::ErrorKind::NotFound),
            ));
        };
        stages.push(s);
    }
    let manifest = match &pkg.manifest {
        Some(pm) => {
            let (mut summary, mut notes) = ManifestSummary::of(pm);
            match outcome.report {
                Some(report) => {
                    summary.checked(report, &ManifestSummary::listed(pm));
                    notes.extend(summary.warnings());
                }
                None => notes.push(format!(
                    "--no-verify-manifest: the digests in {} were not checked",
                    pm.name
                )),
            }
            for w in notes {
                obs.warning(&w);
                warnings.push(w);
            }
            Some(summary)
        }
        None => {
            obs.warning(NO_MANIFEST);
            warnings.push(NO_MANIFEST.into());
            None
        }
    };
    if let Some(cert) = &pkg.certificate {
        let w = format!("certificate {cert} is present; its signature is not verified");
        obs.warning(&w);
        warnings.push(w);
    }
    let reports = commit_all(stages, req.convert.force)?;
    folder.keep();
    let disks: Vec<ExportDiskReport> = layout
        .disks
        .iter()
        .zip(reports)
        .map(|((i, _), report)| {
            let def = &env.disks[*i];
            ExportDiskReport {
                index: i + 1,
                disk_id: def.disk_id.clone(),
                href: names[*i].href.clone(),
                capacity: def.capacity,
                controller: env.attachment(def),
                report,
            }
        })
        .collect();
    Ok(ExportReport::new(
        src,
        ExportKind::Ova,
        "pipe",
        &env,
        dst,
        disks,
        manifest,
        pkg.certificate.clone(),
        warnings,
        started.elapsed().as_secs_f64(),
    ))
}

/// Reads (and so hashes) a file the conversion does not need, checking `cancel` on the
/// way: an unpicked disk may be large.
fn pass_by<R: Read>(
    stream: &mut OvaStream<R>,
    src: &Path,
    entry: &StreamEntry,
    cancel: &Cancel,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        cancel.check()?;
        match stream.read_current(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let place = Place::member(src, &entry.member.name);
                return Err(OvaError::from_io(place, "the member", e).into());
            }
        }
    }
}

/// Converts a bare streamOptimized VMDK read from a pipe into `dst`.
pub fn convert_disk(
    src: &Path,
    reader: Box<dyn Read + Send>,
    dst: &Path,
    req: &ConvertRequest,
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<ConvertReport> {
    let plan = ConvertPlan::new(dst, req)?;
    let seq = SequentialVmdk::open(reader, src)?;
    let (mut stage, mut rest) = convert_stream(seq, &plan, cancel, progress)?;
    // Read to the end, so that the writer of the pipe is not cut off.
    io::copy(&mut rest, &mut io::sink()).map_err(|e| error_of(e, src, "the pipe"))?;
    if let Some(t) = plan.target {
        let fit = fit_of_staged(t, &stage, cancel);
        stage.report.warnings.extend(fit);
    }
    stage.commit()
}

/// One stored file read across its members: the file itself, or its chunks one after
/// another (`<href>.000000000`, …), each still hashed by the stream. A chunk shorter
/// than the chunk size is the last; after a full one, the next member is looked at, and
/// when it is not the next chunk it is kept for the caller (`into_pending`).
struct ChunkReader<'a, R> {
    stream: &'a mut OvaStream<R>,
    file_id: Option<String>,
    chunk_size: Option<u64>,
    index: u32,
    in_chunk: u64,
    member: String,
    package: PathBuf,
    pending: Option<StreamEntry>,
    ended: bool,
}

impl<'a, R: Read> ChunkReader<'a, R> {
    fn new(
        stream: &'a mut OvaStream<R>,
        first: StreamEntry,
        chunk_size: Option<u64>,
        package: &Path,
    ) -> Self {
        ChunkReader {
            package: package.to_path_buf(),
            stream,
            file_id: first.file_id,
            chunk_size: chunk_size.filter(|_| first.chunk.is_some()),
            index: first.chunk.unwrap_or(0),
            in_chunk: 0,
            member: first.member.name,
            pending: None,
            ended: false,
        }
    }

    /// The entry read past the file's end, for the caller to handle next.
    fn into_pending(self) -> Option<StreamEntry> {
        self.pending
    }
}

impl<R: Read> Read for ChunkReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            let n = self.stream.read_current(buf)?;
            if n > 0 {
                self.in_chunk += n as u64;
                return Ok(n);
            }
            let Some(size) = self.chunk_size else {
                self.ended = true;
                return Ok(0);
            };
            if self.in_chunk < size {
                self.ended = true; // A short chunk is the last.
                return Ok(0);
            }
            let next = self
                .stream
                .next_entry()
                .map_err(|e| io::Error::other(Error::from(e)))?;
            match next {
                None => {
                    self.ended = true;
                    return Ok(0);
                }
                Some(e) if e.file_id.is_some() && e.file_id == self.file_id => {
                    if e.chunk != Some(self.index + 1) {
                        return Err(io::Error::other(Error::unsupported(
                            &self.package,
                            format!(
                                "member {:?} comes right after chunk {} ({:?}) of the same file; chunks out of order cannot be read in one pass (save the OVA to a file first)",
                                e.member.name, self.index, self.member
                            ),
                        )));
                    }
                    self.index += 1;
                    self.in_chunk = 0;
                    self.member = e.member.name;
                }
                Some(e) => {
                    self.pending = Some(e);
                    self.ended = true;
                    return Ok(0);
                }
            }
        }
    }
}

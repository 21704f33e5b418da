//! Converting an export opened from a file (an `.ova`, read in place) or a folder (an
//! `.ovf` and the files beside it); nothing is unpacked or copied. streamOptimized disks
//! (what VMware exports hold), and disks stored gzip-compressed or in chunks, are read
//! front to back in one pass with positioned reads of the archive, hashed for the
//! manifest as they are read: the archive is read once and no verify pass follows. Other
//! disks (monolithicSparse, VHD, VHDX), and streamOptimized ones under --verify or
//! reproducible ids, are read in place through the random-access readers while a second
//! thread reads the same bytes front to back for the digests (the page cache serves
//! both). Blank disks become empty images of their capacity.

use std::io::{self, Read};
use std::path::Path;
use std::time::Instant;

use crate::cancel::Cancel;
use crate::convert::{self, Progress, Staged};
use crate::disk::{Disk, OpenOptions};
use crate::error::{Error, ExitClass, Result};
use crate::ova::gzip::BoundedGunzip;
use crate::ova::{
    Algorithm, Compression, Digests, HashingReader, Package, PackageDisk, Piece, Place,
};
use crate::plan::ConvertPlan;
use crate::stream_convert::convert_stream;
use crate::vmdk::sequential::SequentialVmdk;

use super::advice;
use super::detect::ExportKind;
use super::disk::{
    BlankDisk, HashedPieces, Typed, capacity_mismatch, error_of, member_path, open_in_place,
    with_manifest,
};
use super::layout::{self, DiskName, MadeFolder};
use super::report::{ExportDiskReport, ExportReport, ManifestSummary, NO_MANIFEST};
use super::{ExportRequest, Observer, commit_all};

/// Digests of stored files, by name relative to the descriptor.
type Hashed = Vec<(String, Digests)>;

/// Converts the package at `src` into `dst`.
pub fn convert(
    src: &Path,
    kind: ExportKind,
    dst: &Path,
    req: &ExportRequest,
    cancel: &Cancel,
    obs: &mut dyn Observer,
) -> Result<ExportReport> {
    let started = Instant::now();
    let pkg = match kind {
        ExportKind::Ova => Package::open_file(src)?,
        ExportKind::Ovf => Package::open_dir(src)?,
    };
    let names = DiskName::all(&pkg.envelope);
    let layout = layout::plan(&names, req.disk.as_deref(), dst, &req.convert)?;
    layout::refuse_existing(&layout, src)?;
    let mut warnings = Vec::new();
    let mut warn = |obs: &mut dyn Observer, w: String| {
        obs.warning(&w);
        warnings.push(w);
    };
    for w in &pkg.warnings {
        warn(obs, w.clone());
    }
    let hw = &pkg.envelope.system.hardware;
    let (notes, fit) = advice::firmware_advice(hw.firmware, hw.secure_boot, req.convert.target);
    for n in &notes {
        obs.note(n);
    }
    for w in fit {
        warn(obs, w);
    }
    let mut manifest = match &pkg.manifest {
        Some(pm) => {
            let (summary, parsed) = ManifestSummary::of(pm);
            for w in parsed {
                warn(obs, w);
            }
            Some(summary)
        }
        None => {
            warn(obs, NO_MANIFEST.into());
            None
        }
    };
    if let Some(cert) = &pkg.certificate {
        warn(
            obs,
            format!("certificate {cert} is present; its signature is not verified"),
        );
    }
    let verify = req.verify_manifest && pkg.manifest.is_some();
    let algorithms = |name: &str| -> Vec<Algorithm> {
        match (&pkg.manifest, verify) {
            (Some(pm), true) => pm.manifest.algorithms_for(name),
            _ => Vec::new(),
        }
    };
    let options = OpenOptions {
        cancel: cancel.clone(),
        ..Default::default()
    };
    let folder = MadeFolder::create(&layout)?;
    let count = layout.disks.len();
    let mut staged: Vec<(usize, Staged)> = Vec::with_capacity(count);
    let mut hashed: Hashed = Vec::new();
    for (n, (i, plan)) in layout.disks.iter().enumerate() {
        cancel.check()?;
        let pd = &pkg.disks[*i];
        obs.disk(n + 1, count, names[*i].shown());
        let converted = convert_disk(
            &pkg,
            pd,
            &names[*i],
            plan,
            *i == 0,
            &algorithms,
            &options,
            cancel,
            obs,
        );
        let (stage, digests) = match converted {
            Ok(done) => done,
            // Damage the manifest can name says more than the structure it broke.
            Err(e) if e.class() == ExitClass::Input && verify => {
                return Err(prefer_mismatch(&pkg, pd, &algorithms, cancel, e));
            }
            Err(e) => return Err(e),
        };
        hashed.extend(digests);
        staged.push((*i, stage));
    }
    if let (Some(pm), Some(summary)) = (&pkg.manifest, manifest.as_mut()) {
        if verify {
            hashed.extend(hash_other_files(&pkg, &algorithms, cancel)?);
            let report = pkg
                .check_manifest(&pm.manifest, |name, _| {
                    Ok(hashed
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, d)| d.clone()))
                })
                .map_err(|e| with_manifest(e, &pm.name))?;
            summary.checked(report, &ManifestSummary::listed(pm));
            for w in summary.warnings() {
                warn(obs, w);
            }
        } else {
            warn(
                obs,
                format!(
                    "--no-verify-manifest: the digests in {} were not checked",
                    pm.name
                ),
            );
        }
    }
    let force = req.convert.force;
    let (indices, stages): (Vec<usize>, Vec<Staged>) = staged.into_iter().unzip();
    let reports = commit_all(stages, force)?;
    folder.keep();
    let disks: Vec<ExportDiskReport> = indices
        .into_iter()
        .zip(reports)
        .map(|(i, report)| {
            let pd = &pkg.disks[i];
            ExportDiskReport {
                index: i + 1,
                disk_id: pd.disk_id.clone(),
                href: pd.href.clone(),
                capacity: pd.capacity,
                controller: pd.attachment.clone(),
                report,
            }
        })
        .collect();
    Ok(ExportReport::new(
        src,
        kind,
        "file",
        &pkg.envelope,
        dst,
        disks,
        manifest,
        pkg.certificate.clone(),
        warnings,
        started.elapsed().as_secs_f64(),
    ))
}

/// Converts one disk to a staged image; returns it and the digests of its pieces.
#[allow(clippy::too_many_arguments)]
fn convert_disk(
    pkg: &Package,
    pd: &PackageDisk,
    name: &DiskName,
    plan: &ConvertPlan,
    first: bool,
    algorithms: &dyn Fn(&str) -> Vec<Algorithm>,
    options: &OpenOptions,
    cancel: &Cancel,
    obs: &mut dyn Observer,
) -> Result<(Staged, Hashed)> {
    let mut extra = Vec::new();
    if first
        && let Some(t) = plan.target
        && let Some(w) = advice::controller_advice(t, pd.attachment.as_ref())
    {
        obs.warning(&w);
        extra.push(w);
    }
    let mut progress = |p: Progress| obs.progress(p);
    let (mut stage, hashed, fit) = if pd.is_blank() {
        let mut blank = BlankDisk::new(member_path(&pkg.source, &pd.disk_id), pd.capacity);
        let stage = convert::convert_staged(&mut blank, plan, cancel, &mut progress)?;
        (stage, Vec::new(), Vec::new())
    } else if let Some(mut disk) = in_place(pkg, pd, plan, options)? {
        if let Some(detail) =
            capacity_mismatch(&pd.disk_id, name.shown(), pd.capacity, disk.virtual_size())
        {
            return Err(Error::inconsistent(&pkg.source, detail));
        }
        let fit = plan
            .target
            .map(|t| advice::fit_advice(t, disk.as_mut()))
            .unwrap_or_default();
        let (stage, hashed) = convert_hashing(
            pkg,
            pd,
            disk.as_mut(),
            plan,
            algorithms,
            cancel,
            &mut progress,
        )?;
        (stage, hashed, fit)
    } else {
        let (stage, hashed) =
            convert_sequential(pkg, pd, name, plan, algorithms, cancel, &mut progress)?;
        let fit = plan
            .target
            .map(|t| fit_of_staged(t, &stage, cancel))
            .unwrap_or_default();
        (stage, hashed, fit)
    };
    for w in fit {
        let w = format!("disk {}: {w}", name.shown());
        obs.warning(&w);
        extra.push(w);
    }
    stage.report.warnings.extend(extra);
    Ok((stage, hashed))
}

/// The disk opened for random access, when that is the way to read it: not for
/// streamOptimized disks (nor those stored gzip-compressed or in chunks), which are read
/// once front to back, hashed on the way (one read of the archive instead of two, and
/// inflating workers that stay busy); but for them too when --verify or reproducible ids
/// need the contents hashed in disk order, which random access gives whatever order the
/// grains are stored in.
fn in_place(
    pkg: &Package,
    pd: &PackageDisk,
    plan: &ConvertPlan,
    options: &OpenOptions,
) -> Result<Option<Box<dyn Disk>>> {
    let ordered = plan.verify || plan.reproducible_time.is_some();
    if !ordered && super::disk::readable_in_place(pd) && is_stream_optimized(pkg, &pd.pieces[0]) {
        return Ok(None);
    }
    open_in_place(pkg, pd, options)
}

/// Whether a stored file starts with the header of a streamOptimized VMDK (compressed
/// grains with markers).
fn is_stream_optimized(pkg: &Package, piece: &Piece) -> bool {
    use crate::vmdk::header::{FLAG_COMPRESSED, FLAG_MARKERS, MAGIC};
    use std::os::unix::fs::FileExt;
    let Some(view) = pkg.piece_view(piece) else {
        return false;
    };
    let mut head = [0u8; 12];
    if view.size < 512 || view.file.read_exact_at(&mut head, view.offset).is_err() {
        return false;
    }
    let flags = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    &head[..4] == MAGIC && flags & FLAG_COMPRESSED != 0 && flags & FLAG_MARKERS != 0
}

/// Converts a disk read in place while another thread hashes its stored bytes front to
/// back for the manifest.
fn convert_hashing(
    pkg: &Package,
    pd: &PackageDisk,
    disk: &mut dyn Disk,
    plan: &ConvertPlan,
    algorithms: &dyn Fn(&str) -> Vec<Algorithm>,
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Staged, Hashed)> {
    let wanted: Vec<(&Piece, Vec<Algorithm>)> = pd
        .pieces
        .iter()
        .map(|p| (p, algorithms(&p.name)))
        .filter(|(_, a)| !a.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok((
            convert::convert_staged(disk, plan, cancel, progress)?,
            Vec::new(),
        ));
    }
    // Stops the hasher when the conversion fails (and the other way round).
    let stop = Cancel::new();
    std::thread::scope(|scope| {
        let hasher = scope.spawn(|| {
            let r = hash_pieces(pkg, &wanted, cancel, &stop);
            if r.is_err() {
                stop.cancel();
            }
            r
        });
        // A failed hash (a read error) does not stop the conversion, which polls the
        // user's token only; it is rare, and the result is dropped below.
        let converted = convert::convert_staged(disk, plan, cancel, progress);
        if converted.is_err() {
            stop.cancel();
        }
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(Error::output_limit("the hashing thread failed")));
        // The conversion's error first: the hasher's is then only its being stopped.
        let stage = converted?;
        Ok((stage, hashed?))
    })
}

/// Reads `pieces` front to back, hashing each with its algorithms.
fn hash_pieces(
    pkg: &Package,
    pieces: &[(&Piece, Vec<Algorithm>)],
    cancel: &Cancel,
    stop: &Cancel,
) -> Result<Hashed> {
    let mut out = Vec::with_capacity(pieces.len());
    let mut buf = vec![0u8; 1 << 20];
    for (piece, algorithms) in pieces {
        let place = Place::member(&pkg.source, &piece.name);
        let reader = pkg.stored_reader(std::slice::from_ref(*piece))?;
        let mut r = HashingReader::new(reader, algorithms);
        loop {
            cancel.check()?;
            stop.check()?;
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(crate::ova::OvaError::from_io(place, "the stored file", e).into());
                }
            }
        }
        out.push((piece.name.clone(), r.finish().0));
    }
    Ok(out)
}

/// Converts a disk that can only be read front to back (gzip, chunks), hashing its
/// pieces as they are read.
fn convert_sequential(
    pkg: &Package,
    pd: &PackageDisk,
    name: &DiskName,
    plan: &ConvertPlan,
    algorithms: &dyn Fn(&str) -> Vec<Algorithm>,
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Staged, Hashed)> {
    let shown = name.shown();
    let path = member_path(&pkg.source, shown);
    let place = Place::member(&pkg.source, shown);
    let mut pieces = HashedPieces::new(pkg, pd, algorithms, cancel)?;
    let expected = (pd.disk_id.as_str(), shown, pd.capacity);
    let stage = {
        let raw = Typed::new(&mut pieces, place.clone());
        match pd.compression {
            Compression::Identity => one_pass(raw, &path, expected, plan, cancel, progress)?,
            Compression::Gzip => {
                let gunzip = BoundedGunzip::new(raw, pd.inflate_limit(), place.clone());
                one_pass(
                    Typed::new(gunzip, place),
                    &path,
                    expected,
                    plan,
                    cancel,
                    progress,
                )?
            }
        }
    };
    Ok((stage, pieces.finish()?))
}

/// Reads a streamOptimized disk from `reader` in one pass into a staged image, then
/// reads what follows its end (padding; for gzip, the rest of the stream and its check).
/// `path` names it (`vm.ova(disk.vmdk)`); the descriptor says `capacity` for `disk_id`,
/// stored as `shown`.
pub(super) fn one_pass<R: Read>(
    reader: R,
    path: &Path,
    expected: (&str, &str, u64),
    plan: &ConvertPlan,
    cancel: &Cancel,
    progress: &mut dyn FnMut(Progress),
) -> Result<Staged> {
    let seq = SequentialVmdk::open(reader, path)?;
    let (disk_id, shown, capacity) = expected;
    if let Some(detail) = capacity_mismatch(disk_id, shown, capacity, seq.virtual_size()) {
        return Err(Error::inconsistent(path, detail));
    }
    let (stage, mut rest) = convert_stream(seq, plan, cancel, progress)?;
    io::copy(&mut rest, &mut io::sink()).map_err(|e| error_of(e, path, "the stored file"))?;
    Ok(stage)
}

/// Fit warnings for a disk converted in one pass: read from the staged image (the
/// source cannot be read again).
pub(super) fn fit_of_staged(
    target: crate::target::Target,
    stage: &Staged,
    cancel: &Cancel,
) -> Vec<String> {
    let options = OpenOptions {
        cancel: cancel.clone(),
        ..Default::default()
    };
    match crate::open(stage.temp_path(), &options) {
        Ok(mut disk) => advice::fit_advice(target, disk.as_mut()),
        Err(e) => vec![format!("partition table unreadable, fit not checked: {e}")],
    }
}

/// Hashes the listed files that are not disks (NVRAM, ISO images): the conversion did
/// not read them. Disks not picked are left unread.
fn hash_other_files(
    pkg: &Package,
    algorithms: &dyn Fn(&str) -> Vec<Algorithm>,
    cancel: &Cancel,
) -> Result<Hashed> {
    let disk_files: Vec<&str> = pkg
        .disks
        .iter()
        .filter_map(|d| d.file_id.as_deref())
        .collect();
    let wanted: Vec<(&Piece, Vec<Algorithm>)> = pkg
        .files
        .iter()
        .filter(|f| !disk_files.contains(&f.id.as_str()))
        .flat_map(|f| f.pieces.iter())
        .map(|p| (p, algorithms(&p.name)))
        .filter(|(_, a)| !a.is_empty())
        .collect();
    hash_pieces(pkg, &wanted, cancel, &Cancel::new())
}

/// When a disk fails to convert as damaged: the descriptor and the disk's stored bytes
/// checked against the manifest. A mismatch is the better report (the file was damaged
/// or changed since the manifest was written); otherwise the conversion's error stands.
fn prefer_mismatch(
    pkg: &Package,
    pd: &PackageDisk,
    algorithms: &dyn Fn(&str) -> Vec<Algorithm>,
    cancel: &Cancel,
    e: Error,
) -> Error {
    let Some(pm) = &pkg.manifest else {
        return e;
    };
    let wanted: Vec<(&Piece, Vec<Algorithm>)> = pd
        .pieces
        .iter()
        .map(|p| (p, algorithms(&p.name)))
        .filter(|(_, a)| !a.is_empty())
        .collect();
    let Ok(hashed) = hash_pieces(pkg, &wanted, cancel, &Cancel::new()) else {
        return e;
    };
    let checked = pkg.check_manifest(&pm.manifest, |name, _| {
        Ok(hashed
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone()))
    });
    match checked {
        Err(m @ crate::ova::OvaError::ManifestMismatch { .. }) => with_manifest(m, &pm.name),
        _ => e,
    }
}

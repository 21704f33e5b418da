//! `convert` and `info` on whole-VM exports (OVA, OVF) and pipes: the binary's side of
//! `vdconv::export`. main.rs hands over when the input is one (from its content, or `-`,
//! a FIFO); otherwise the image path runs as before.

use std::fmt::Write as _;
use std::io::Write;

use vdconv::convert::Progress;
use vdconv::export::{self, ExportInfo, ExportReport, ExportRequest, Input, Observer};
use vdconv::{Cancel, Error};

use crate::cli::{ConvertArgs, InfoArgs, ProgressArg};
use crate::progress::Reporter;
use crate::{Outcome, print_json, print_text, request, warn_all};

/// What the user sees while an export converts: notes and warnings on stderr (unless
/// -q), a progress display per disk.
struct Stderr {
    quiet: bool,
    mode: ProgressArg,
    reporter: Option<Reporter>,
}

impl Stderr {
    fn line(&self, kind: &str, text: &str) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr(), "vdconv: {kind}: {text}");
        }
    }

    fn done(&mut self) {
        if let Some(r) = self.reporter.take() {
            r.finish();
        }
    }
}

impl Observer for Stderr {
    fn note(&mut self, text: &str) {
        self.line("note", text);
    }

    fn warning(&mut self, text: &str) {
        self.line("warning", text);
    }

    fn disk(&mut self, number: usize, count: usize, name: &str) {
        self.done();
        let label = if count > 1 {
            format!("{name} (disk {number} of {count})")
        } else {
            name.to_string()
        };
        self.reporter = Some(Reporter::new(self.mode, self.quiet, &label));
    }

    fn progress(&mut self, p: Progress) {
        if let Some(r) = self.reporter.as_mut() {
            r.update(p);
        }
    }
}

/// Runs `convert` when SRC is an export or a pipe; None when it is a disk image, for
/// main.rs to convert as before. The export-only options are refused for an image.
pub fn convert(args: &ConvertArgs, cancel: &Cancel) -> Result<Option<u8>, Error> {
    let input = if args.common.input_format.is_some() {
        None // -f raw: the user says it is a disk image.
    } else {
        export::sniff(&args.src)?
    };
    let Some(input) = input else {
        for (given, option) in [
            (args.disk.is_some(), "--disk"),
            (args.no_verify_manifest, "--no-verify-manifest"),
        ] {
            if given {
                return Err(Error::usage(
                    Some(option),
                    "applies to OVA and OVF exports only",
                ));
            }
        }
        return Ok(None);
    };
    if vdconv::stream_out::is_stream(&args.dst) {
        // An export's images are put in place only once every digest matched; what went
        // to stdout could not be taken back.
        return Err(Error::usage(
            None,
            "an export (or a pipe) cannot be converted to standard output: name a file, or a folder for several disks",
        ));
    }
    refuse_image_options(&args.common)?;
    for (given, option, why) in [
        (
            args.keep_chain,
            "--keep-chain",
            "keeps a snapshot chain; the disks of an export are whole disks",
        ),
        (
            args.inspect || args.force_unready,
            if args.inspect {
                "--inspect"
            } else {
                "--force-unready"
            },
            "does not apply to an export yet: convert it, then inspect the image of its boot disk",
        ),
    ] {
        if given {
            return Err(Error::usage(Some(option), why));
        }
    }
    let common = &args.common;
    let req = ExportRequest {
        convert: request(args)?,
        disk: args.disk.clone(),
        verify_manifest: !args.no_verify_manifest,
    };
    let mut obs = Stderr {
        quiet: common.quiet,
        mode: args.progress,
        reporter: None,
    };
    if let Input::Stream(s) = input {
        if s.kind == export::StreamKind::Vmdk {
            if args.disk.is_some() || args.no_verify_manifest {
                return Err(Error::usage(
                    Some(if args.disk.is_some() {
                        "--disk"
                    } else {
                        "--no-verify-manifest"
                    }),
                    "applies to OVA and OVF exports only; the pipe carries one VMDK",
                ));
            }
            obs.disk(1, 1, &args.src.display().to_string());
            let result = export::convert_piped_disk(
                &args.src,
                s,
                &args.dst,
                &req.convert,
                cancel,
                &mut |p| obs.progress(p),
            );
            obs.done();
            let report = result?;
            warn_all(common.quiet, &report.warnings);
            if common.json {
                print_json(&report)?;
            } else if !common.quiet {
                let _ = writeln!(
                    std::io::stderr(),
                    "vdconv: wrote {} ({} bytes virtual, {} bytes of data) in {:.2}s",
                    report.destination.display(),
                    report.virtual_size,
                    report.data_bytes_written,
                    report.seconds
                );
            }
            return Ok(Some(0));
        }
        let result = export::convert_export(
            &args.src,
            Input::Stream(s),
            &args.dst,
            &req,
            cancel,
            &mut obs,
        );
        obs.done();
        return finish_convert(result?, common.json, common.quiet).map(Some);
    }
    let result = export::convert_export(&args.src, input, &args.dst, &req, cancel, &mut obs);
    obs.done();
    finish_convert(result?, common.json, common.quiet).map(Some)
}

fn finish_convert(report: ExportReport, json: bool, quiet: bool) -> Outcome {
    if json {
        print_json(&report)?;
        return Ok(0);
    }
    if quiet {
        return Ok(0);
    }
    let mut err = std::io::stderr().lock();
    for d in &report.disks {
        let r = &d.report;
        let _ = writeln!(
            err,
            "vdconv: wrote {} ({} bytes virtual, {} bytes of data) in {:.2}s",
            r.destination.display(),
            r.virtual_size,
            r.data_bytes_written,
            r.seconds
        );
    }
    if let Some(m) = &report.manifest
        && m.checked
    {
        let algorithms: Vec<&str> = m.algorithms.iter().map(|a| a.name()).collect();
        let _ = writeln!(
            err,
            "vdconv: manifest {}: {} files verified ({})",
            m.name,
            m.verified.len(),
            algorithms.join(", ")
        );
    }
    Ok(0)
}

/// Runs `info` when IMG is an export; None otherwise.
pub fn info(args: &InfoArgs, cancel: &Cancel) -> Result<Option<u8>, Error> {
    if args.common.input_format.is_some() {
        return Ok(None);
    }
    // info reads files in place: a pipe is never opened (a FIFO with no writer would
    // hang); the image path refuses FIFOs and sockets saying what they are.
    if args.img.as_os_str() == "-" {
        return Err(Error::usage(
            None,
            "info reads a file in place, not standard input; save what the pipe carries to a file first",
        ));
    }
    if export::is_stream(&args.img) {
        return Ok(None);
    }
    let kind = match export::sniff(&args.img)? {
        None | Some(Input::Stream(_)) => return Ok(None),
        Some(Input::Package(kind)) => kind,
    };
    refuse_image_options(&args.common)?;
    let info = export::describe(&args.img, kind, cancel)?;
    if args.common.json {
        print_json(&info)?;
        return Ok(Some(0));
    }
    warn_all(args.common.quiet, &info.warnings);
    print_text(&render(&info))?;
    Ok(Some(0))
}

/// The export as people read it: the VM, then each disk.
fn render(info: &ExportInfo) -> String {
    let mut out = String::new();
    let vm = &info.vm;
    let _ = writeln!(out, "file: {}", info.file);
    let _ = writeln!(
        out,
        "format: {} (descriptor {})",
        match info.format {
            export::ExportKind::Ova => "ova",
            export::ExportKind::Ovf => "ovf",
        },
        info.descriptor
    );
    let _ = writeln!(out, "vm: {}", vm.name);
    let os = [
        vm.os_type.clone(),
        vm.os_id.map(|i| format!("CIM {i}")),
        vm.os_description.clone(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    if !os.is_empty() {
        let _ = writeln!(out, "guest os: {os}");
    }
    let firmware = match vm.firmware {
        vdconv::ova::Firmware::Bios => "BIOS",
        vdconv::ova::Firmware::Efi => "EFI",
        vdconv::ova::Firmware::Unknown => "not given",
    };
    let secure = match vm.secure_boot {
        Some(true) => ", secure boot on",
        Some(false) => ", secure boot off",
        None => "",
    };
    let _ = writeln!(out, "firmware: {firmware}{secure}");
    if let Some(t) = info.suggested_target {
        let _ = writeln!(out, "suggested target: {}", t.name());
    }
    if let Some(c) = vm.cpus {
        let cores = vm
            .cores_per_socket
            .map(|n| format!(" ({n} cores per socket)"))
            .unwrap_or_default();
        let _ = writeln!(out, "cpus: {c}{cores}");
    }
    if let Some(m) = vm.memory_bytes {
        let _ = writeln!(out, "memory: {} MiB", m >> 20);
    }
    if let Some(h) = &vm.hardware_version {
        let _ = writeln!(out, "hardware version: {h}");
    }
    for nic in &info.nics {
        let _ = writeln!(
            out,
            "nic: {} on {}{}",
            nic.subtype.as_deref().unwrap_or("?"),
            nic.connection.as_deref().unwrap_or("?"),
            nic.mac
                .as_deref()
                .map(|m| format!(", MAC {m}"))
                .unwrap_or_default()
        );
    }
    match &info.manifest {
        Some(m) => {
            let algorithms: Vec<&str> = m.algorithms.iter().map(|a| a.name()).collect();
            let _ = writeln!(
                out,
                "manifest: {} ({} digests, {}; checked by convert)",
                m.name,
                m.entries,
                algorithms.join(", ")
            );
        }
        None => {
            let _ = writeln!(out, "manifest: none");
        }
    }
    if let Some(c) = &info.certificate {
        let _ = writeln!(out, "certificate: {c} (not verified)");
    }
    for d in &info.disks {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "disk {}: {} ({})",
            d.index,
            d.disk_id,
            d.href.as_deref().unwrap_or("blank")
        );
        let _ = writeln!(out, "  capacity: {} bytes", d.capacity);
        if let Some(f) = &d.format {
            let _ = writeln!(out, "  format: {f}");
        }
        let mut stored = format!("{} bytes", d.stored_size);
        if d.compression == vdconv::ova::Compression::Gzip {
            stored.push_str(", gzip");
        }
        if let Some(c) = d.chunk_size {
            let _ = write!(stored, ", in chunks of {c} bytes");
        }
        let _ = writeln!(out, "  stored: {stored}; read {}", d.read);
        if let Some(a) = &d.controller {
            let kind = serde_json::to_value(&a.controller)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "other".into());
            let _ = writeln!(
                out,
                "  controller: {kind}{} bus {} unit {}",
                a.subtype
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default(),
                a.bus.map_or("?".into(), |b| b.to_string()),
                a.unit.map_or("?".into(), |u| u.to_string())
            );
        }
        if let Some(image) = &d.image {
            for line in crate::text::info(image).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        if let Some(s) = &d.stream {
            let _ = writeln!(out, "  virtual size: {} bytes", s.virtual_size);
            if let Some(c) = &s.create_type {
                let _ = writeln!(out, "  vmdk: {c}, grains of {} bytes", s.grain_size);
            }
            if let Some(a) = &s.adapter_type {
                let _ = writeln!(out, "  adapter type: {a}");
            }
        }
        if let Some(p) = &d.problem {
            let _ = writeln!(out, "  problem: {p}");
        }
    }
    out
}

/// Options of single images that mean nothing for an export: refused, not ignored.
fn refuse_image_options(common: &crate::cli::Common) -> Result<(), Error> {
    for (given, option, why) in [
        (
            common.allow_outside_paths,
            "--allow-outside-paths",
            "does not apply to an export: the files of a package must lie in it",
        ),
        (
            common.parent.is_some(),
            "--parent",
            "names a delta's parent; the disks of an export are whole disks",
        ),
        (
            common.ignore_cid,
            "--ignore-cid",
            "concerns a delta's parent; the disks of an export are whole disks",
        ),
    ] {
        if given {
            return Err(Error::usage(Some(option), why));
        }
    }
    Ok(())
}

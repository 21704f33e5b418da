//! The vdconv binary: parse arguments, call the library, turn its error into an exit code.

mod cli;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use cli::{
    CheckArgs, CheckTargetArg, Cli, Command, CompareArgs, ConvertArgs, FormatArg, InfoArgs,
    ProgressArg, SparseArg, TargetArg, TypeArg,
};
use vdconv::convert::{self, ConvertOptions, DiskType, OutputFormat, SparseMode};
use vdconv::target::{self, Target};
use vdconv::{Error, OpenOptions};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let common = match &cli.command {
        Command::Convert(a) => &a.common,
        Command::Info(a) => &a.common,
        Command::Compare(a) => &a.common,
        Command::Check(a) => &a.common,
    };
    init_tracing(common.verbose, common.quiet);
    QUIET.store(common.quiet, std::sync::atomic::Ordering::Relaxed);
    // SIGINT/SIGTERM: ask the conversion to stop; it removes its temporary file.
    let _ = ctrlc::set_handler(convert::interrupt);
    let result = match &cli.command {
        Command::Convert(args) => run_convert(args),
        Command::Info(args) => run_info(args),
        Command::Compare(args) => run_compare(args),
        Command::Check(args) => run_check(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = match e.downcast_ref::<Error>() {
                Some(err) => err.class().code(),
                None => 3,
            };
            eprintln!("vdconv: error: {e}");
            ExitCode::from(code as u8)
        }
    }
}

fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::WARN,
        (false, 1) => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
}

fn open_options(common: &cli::Common) -> OpenOptions {
    OpenOptions {
        allow_outside_paths: common.allow_outside_paths,
    }
}

/// Tolerated anomalies and platform advice: one line each on stderr, unless -q.
fn warn_all(warnings: &[String]) {
    if QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    for w in warnings {
        eprintln!("vdconv: warning: {w}");
    }
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn usage(msg: String) -> anyhow::Error {
    Error::Usage(msg).into()
}

fn run_convert(args: &ConvertArgs) -> anyhow::Result<u8> {
    let target = args.target.map(|t| match t {
        TargetArg::Azure => Target::Azure,
        TargetArg::HypervGen1 => Target::HypervGen1,
        TargetArg::HypervGen2 => Target::HypervGen2,
    });
    let asked_format = match args.format {
        Some(FormatArg::Vhd) => Some(OutputFormat::Vhd),
        Some(FormatArg::Vhdx) => Some(OutputFormat::Vhdx),
        None => OutputFormat::from_path(&args.dst),
    };
    let asked_type = args
        .disk_type
        .map(|t| match t {
            TypeArg::Fixed => DiskType::Fixed,
            TypeArg::Dynamic => DiskType::Dynamic,
        })
        // In place makes a fixed VHD: that is what a flat file plus a footer is.
        .or(args.in_place.then_some(DiskType::Fixed));
    let (format, disk_type) = target::resolve(target, asked_format, asked_type)?;
    let format = format.ok_or_else(|| {
        usage(format!(
            "{}: cannot tell the output format from the name; give -O vhd or -O vhdx",
            args.dst.display()
        ))
    })?;
    let block_size = match &args.block_size {
        Some(text) => Some(vdconv::size::parse_size(text).ok_or_else(|| {
            usage(format!(
                "--block-size {text:?}: expected bytes or a size like 2M"
            ))
        })?),
        None => None,
    };
    let options = ConvertOptions {
        format,
        disk_type,
        target,
        block_size,
        sparse: match args.sparse {
            SparseArg::Auto => SparseMode::Auto,
            SparseArg::Always => SparseMode::Always,
            SparseArg::Never => SparseMode::Never,
        },
        logical_sector: args.logical_sector,
        physical_sector: args.physical_sector,
        force: args.force,
        verify: args.verify,
    };
    let mut disk = vdconv::open(&args.src, open_options(&args.common))?;
    warn_all(disk.warnings());
    let size = disk.virtual_size();
    let mut notes = Vec::new();
    if let Some(t) = target {
        match vdconv::partition::inspect(disk.as_mut()) {
            Ok(table) => {
                notes = target::fit_warnings(t, &table, size, disk.adapter_type().as_deref())
            }
            Err(e) => notes.push(format!("partition table unreadable, fit not checked: {e}")),
        }
        let out_size = target::output_size(target, size)?;
        if out_size != size {
            notes.push(format!(
                "virtual size rounded up from {size} to {out_size} bytes (Azure takes whole MiB); the added bytes are zeros"
            ));
        }
        warn_all(&notes);
    }
    let bar = progress_bar(args.progress, args.common.quiet, size);
    let report = if args.in_place {
        convert::convert_in_place(disk.as_mut(), &args.dst, &options)?
    } else {
        convert::convert(disk.as_mut(), &args.dst, &options, &mut |done| {
            bar.set_position(done)
        })?
    };
    bar.finish_and_clear();
    if args.common.json {
        let mut doc = serde_json::to_value(&report)?;
        doc["source"] = json!(args.src);
        doc["rounded"] = json!(report.virtual_size != report.source_size);
        doc["verified"] = json!(report.sha256.is_some());
        doc["warnings"] = json!(disk.warnings().iter().chain(&notes).collect::<Vec<_>>());
        print_json(&doc)?;
    } else if !args.common.quiet {
        eprintln!(
            "vdconv: wrote {} ({} bytes virtual, {} bytes of data) in {:.2}s",
            args.dst.display(),
            report.virtual_size,
            report.data_bytes_written,
            report.seconds
        );
    }
    Ok(0)
}

fn progress_bar(mode: ProgressArg, quiet: bool, total: u64) -> ProgressBar {
    let show = match mode {
        ProgressArg::Always => true,
        ProgressArg::Never => false,
        ProgressArg::Auto => std::io::stderr().is_terminal() && !quiet,
    };
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("valid template"),
    );
    bar
}

fn run_check(args: &CheckArgs) -> anyhow::Result<u8> {
    let report = match args.target {
        Some(CheckTargetArg::Azure) => vdconv::check::check_azure(&args.img)?,
        None => vdconv::check::check(&args.img, open_options(&args.common))?,
    };
    if args.common.json {
        print_json(&serde_json::to_value(&report)?)?;
    } else if report.clean() {
        println!(
            "{}: clean ({} {} rules)",
            report.file, report.format, report.rules
        );
    } else {
        for finding in &report.findings {
            let at = finding
                .offset
                .map(|o| format!(" at offset {o}"))
                .unwrap_or_default();
            println!("{}: {}{at}: {}", report.file, finding.rule, finding.message);
        }
        println!("{}: {} finding(s)", report.file, report.findings.len());
    }
    Ok(if report.clean() { 0 } else { 1 })
}

fn run_compare(args: &CompareArgs) -> anyhow::Result<u8> {
    let options = open_options(&args.common);
    let mut a = vdconv::open(&args.a, options)?;
    let mut b = vdconv::open(&args.b, options)?;
    warn_all(a.warnings());
    warn_all(b.warnings());
    let bar = progress_bar(
        args.progress,
        args.common.quiet,
        a.virtual_size().min(b.virtual_size()),
    );
    let report =
        vdconv::compare::compare(a.as_mut(), b.as_mut(), &mut |done| bar.set_position(done))?;
    bar.finish_and_clear();
    if args.common.json {
        print_json(&serde_json::to_value(&report)?)?;
    } else if report.identical {
        println!("identical ({} bytes)", report.size_a);
    } else {
        let at = report
            .first_difference
            .map(|o| format!("first difference at byte offset {o}"))
            .unwrap_or_else(|| "contents equal up to the smaller size".to_string());
        println!(
            "different: {at}; sizes {} and {} bytes",
            report.size_a, report.size_b
        );
    }
    Ok(if report.identical { 0 } else { 1 })
}

fn run_info(args: &InfoArgs) -> anyhow::Result<u8> {
    let mut disk = vdconv::open(&args.img, open_options(&args.common))?;
    let info = vdconv::describe(disk.as_mut())?;
    if args.common.json {
        print_json(&serde_json::to_value(&info)?)?;
        return Ok(0);
    }
    warn_all(&info.warnings);
    print!("{}", info_text(&info)?);
    Ok(0)
}

/// `info` for a person: one fact a line.
fn info_text(info: &vdconv::info::ImageInfo) -> anyhow::Result<String> {
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(out, "file: {}", info.file);
    let _ = writeln!(out, "format: {} ({})", info.format, info.layout);
    let _ = writeln!(
        out,
        "virtual size: {} bytes ({})",
        info.virtual_size,
        human(info.virtual_size)
    );
    let _ = writeln!(
        out,
        "allocated: {} bytes ({})",
        info.allocated_bytes,
        human(info.allocated_bytes)
    );
    if let Some(v) = &info.vmdk {
        if let Some(a) = &v.adapter_type {
            let _ = writeln!(out, "adapter type: {a}");
        }
        if let Some(a) = &v.adapter_hyperv {
            let _ = writeln!(out, "  on Hyper-V: {a}");
        }
        if let Some(h) = &v.hardware_version {
            let _ = writeln!(out, "virtual hardware version: {h}");
        }
        if let Some(g) = &v.geometry {
            let _ = writeln!(out, "geometry: {}/{}/{}", g.cylinders, g.heads, g.sectors);
        }
        if let Some(g) = v.grain_size {
            let _ = writeln!(
                out,
                "grain size: {g} bytes{}",
                if v.compressed { ", compressed" } else { "" }
            );
        }
    }
    if let Some(v) = &info.vhd {
        let _ = writeln!(
            out,
            "creator: {:?} {} on {:?}; geometry {}/{}/{}",
            v.creator_app,
            v.creator_version,
            v.creator_host_os,
            v.geometry.cylinders,
            v.geometry.heads,
            v.geometry.sectors
        );
        if let Some(b) = v.block_size {
            let _ = writeln!(out, "block size: {b} bytes");
        }
    }
    if let Some(v) = &info.vhdx {
        let _ = writeln!(
            out,
            "block size: {} bytes; sectors: logical {}, physical {}",
            v.block_size, v.logical_sector_size, v.physical_sector_size
        );
    }
    let _ = writeln!(out, "extents:");
    for e in &info.extents {
        let _ = writeln!(
            out,
            "  {} {} at {} size {}{}",
            e.access,
            e.kind,
            e.start,
            e.size,
            e.file
                .as_ref()
                .map(|f| format!(" file {f} offset {}", e.file_offset))
                .unwrap_or_default()
        );
    }
    if let Some(t) = &info.partitions {
        let _ = writeln!(
            out,
            "partition table: {}{}",
            serde_json::to_value(t.scheme)?.as_str().unwrap_or_default(),
            if t.bootable { ", bootable" } else { "" }
        );
        for p in &t.partitions {
            let _ = writeln!(
                out,
                "  {} {} ({}) at {} size {}{}",
                p.number,
                p.type_name,
                p.type_id,
                p.start,
                p.size,
                if p.bootable { " active" } else { "" }
            );
        }
        for problem in &t.problems {
            let _ = writeln!(out, "  problem: {problem}");
        }
    }
    Ok(out)
}

fn print_json(doc: &serde_json::Value) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, doc)?;
    writeln!(stdout)?;
    Ok(())
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

//! The vdconv binary: parse, run, print, exit. Raw flags become the library's validated
//! plan once (`request`); every outcome leaves through one exit path in `main`, which
//! re-raises SIGINT/SIGTERM after cleanup so that shell loops stop.

mod batch_cmd;
mod cli;
mod export_cmd;
mod progress;
mod stdout_image;
mod text;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use serde::Serialize;

use cli::{
    CheckArgs, CheckTargetArg, Cli, Command, CompareArgs, ConvertArgs, FormatArg, InfoArgs,
    InspectArgs, SparseArg, TargetArg, TypeArg,
};
use progress::Reporter;
use vdconv::plan::{ConvertPlan, ConvertRequest, DiskType, OutputFormat, SparseMode};
use vdconv::report::ErrorReport;
use vdconv::target::Target;
use vdconv::{Cancel, Error, ErrorKind, OpenOptions};

/// How a run ended when it did not fail.
type Outcome = Result<u8, Error>;

/// A guest file system crate that panics on damaged data does so on its own thread
/// (guest::fs::confined): the thread ends, the caller gets an error and inspection
/// reports the file system as unreadable. Its panic message is not printed; -v logs it.
/// Any other panic is a bug and is printed as usual.
fn quiet_contained_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        if thread
            .name()
            .is_some_and(vdconv::guest::fs::confined::is_confined_thread)
        {
            tracing::debug!("{} stopped: {info}", thread.name().unwrap_or_default());
            return;
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_contained_panics();
    let wants_json = std::env::args_os().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            if wants_json {
                let first = e.to_string();
                let line = first
                    .lines()
                    .next()
                    .unwrap_or("usage error")
                    .trim_start_matches("error: ");
                let err = Error::usage(None, line.to_string());
                let _ = print_json(&ErrorReport::new(&err));
            } else {
                let _ = e.print();
            }
            return ExitCode::from(2);
        }
    };
    let (json, quiet, verbose) = match &cli.command {
        Command::Convert(a) => flags(&a.common),
        Command::Info(a) => flags(&a.common),
        Command::Compare(a) => flags(&a.common),
        Command::Check(a) => flags(&a.common),
        Command::Batch(a) => flags(&a.common),
        Command::Inspect(a) => flags(&a.common),
        Command::Completions(_) | Command::Man => (false, false, 0),
    };
    init_tracing(verbose, quiet);
    let cancel = Cancel::new();
    install_signal_handlers(&cancel);
    let outcome = match &cli.command {
        Command::Convert(args) => run_convert(args, &cancel),
        Command::Info(args) => run_info(args, &cancel),
        Command::Compare(args) => run_compare(args, &cancel),
        Command::Check(args) => run_check(args, &cancel),
        Command::Batch(args) => batch_cmd::run(args, &cancel),
        Command::Inspect(args) => run_inspect(args, &cancel),
        Command::Completions(args) => print_completions(args.shell),
        Command::Man => print_man(),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) if e.kind() == ErrorKind::OutputIo && is_broken_pipe(&e) => {
            // The reader of our stdout went away (`| head`): nothing more to say.
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                let _ = print_json(&ErrorReport::new(&e));
            }
            let _ = writeln!(std::io::stderr(), "vdconv: error: {e}");
            if let Some(signal) = cancel.signal() {
                reraise(signal);
            }
            ExitCode::from(e.class().code())
        }
    }
}

fn flags(c: &cli::Common) -> (bool, bool, u8) {
    (c.json, c.quiet, c.verbose)
}

fn is_broken_pipe(e: &Error) -> bool {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// SIGINT and SIGTERM set the token (only an atomic store in the handler); the run then
/// stops at its next check, removes its temporary file, and `main` re-raises the signal.
fn install_signal_handlers(cancel: &Cancel) {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let flag = cancel.flag();
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        let _ = unsafe {
            signal_hook::low_level::register(signal, move || {
                flag.store(signal, std::sync::atomic::Ordering::SeqCst)
            })
        };
    }
}

/// Dies of `signal` with its default action, so the shell sees the signal (130 for
/// SIGINT) and a loop around vdconv stops, as it would for any well-behaved tool.
fn reraise(signal: i32) {
    let _ = signal_hook::low_level::emulate_default_handler(signal);
}

fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) | (false, 0) => tracing::Level::ERROR,
        (false, 1) => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_level(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
}

fn open_options(common: &cli::Common, cancel: &Cancel) -> OpenOptions {
    OpenOptions {
        allow_outside_paths: common.allow_outside_paths,
        cancel: cancel.clone(),
        raw_fallback: common.input_format.is_some(),
        parent: common.parent.clone(),
        ignore_cid: common.ignore_cid,
    }
}

/// Tolerated anomalies and platform advice: one line each on stderr, unless -q.
fn warn_all(quiet: bool, warnings: &[String]) {
    if quiet {
        return;
    }
    let mut err = std::io::stderr().lock();
    for w in warnings {
        let _ = writeln!(err, "vdconv: warning: {w}");
    }
}

/// The raw convert flags as the library's request: types mapped, the size parsed, the
/// reproducible time read from SOURCE_DATE_EPOCH. Validation is the plan's.
fn request(args: &ConvertArgs) -> Result<ConvertRequest, Error> {
    let block_size = match &args.block_size {
        Some(text) => Some(vdconv::size::parse_size(text).ok_or_else(|| {
            Error::usage(
                Some("--block-size"),
                format!("{text:?} is not bytes or a size like 2M"),
            )
        })?),
        None => None,
    };
    let reproducible_time = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            Error::usage(
                Some("SOURCE_DATE_EPOCH"),
                format!("{v:?} is not a number of seconds since 1970"),
            )
        })?),
        Err(_) => None,
    };
    Ok(ConvertRequest {
        format: args.format.map(|f| match f {
            FormatArg::Vhd => OutputFormat::Vhd,
            FormatArg::Vhdx => OutputFormat::Vhdx,
        }),
        disk_type: args.disk_type.map(|t| match t {
            TypeArg::Fixed => DiskType::Fixed,
            TypeArg::Dynamic => DiskType::Dynamic,
        }),
        target: args.target.map(|t| match t {
            TargetArg::Azure => Target::Azure,
            TargetArg::HypervGen1 => Target::HypervGen1,
            TargetArg::HypervGen2 => Target::HypervGen2,
        }),
        block_size,
        logical_sector: args.logical_sector,
        physical_sector: args.physical_sector,
        sparse: args.sparse.map(|s| match s {
            SparseArg::Auto => SparseMode::Auto,
            SparseArg::Always => SparseMode::Always,
            SparseArg::Never => SparseMode::Never,
        }),
        in_place: args.in_place,
        verify: args.verify,
        force: args.force,
        reproducible_time,
        keep_chain: args.keep_chain,
        reflink: args.reflink.map(|r| match r {
            cli::ReflinkArg::Auto => vdconv::reflink::ReflinkMode::Auto,
            cli::ReflinkArg::Always => vdconv::reflink::ReflinkMode::Always,
            cli::ReflinkArg::Never => vdconv::reflink::ReflinkMode::Never,
        }),
    })
}

fn run_convert(args: &ConvertArgs, cancel: &Cancel) -> Outcome {
    if let Some(code) = export_cmd::convert(args, cancel)? {
        return Ok(code);
    }
    let common = &args.common;
    let plan = ConvertPlan::new(&args.dst, &request(args)?)?;
    if plan.keep_chain {
        return run_keep_chain(args, &plan, cancel);
    }
    let to_stdout = vdconv::stream_out::is_stream(&args.dst);
    if to_stdout {
        stdout_image::check(args, &plan)?;
    }
    let mut disk = vdconv::open(&args.src, &open_options(common, cancel))?;
    let mut advice = Vec::new();
    if args.inspect {
        // Read-only, before anything is written: a refusal leaves nothing behind.
        let (doc, back) = vdconv::inspect::inspect_disk(disk, plan.target, None, cancel)?;
        disk = back;
        let guest = vdconv::inspect::gate_warnings(&doc, plan.target);
        if let Err(e) = vdconv::inspect::gate(&doc, plan.target, args.force_unready) {
            warn_all(common.quiet, &guest);
            return Err(e);
        }
        // Printed with the other advice, and kept in the report's warnings.
        advice.extend(guest);
    }
    if let Some(t) = plan.target {
        advice.extend(vdconv::target::advice(t, disk.as_mut()));
        let size = disk.virtual_size();
        let out_size = plan.output_size(size)?;
        if out_size != size {
            advice.push(format!(
                "virtual size rounded up from {size} to {out_size} bytes (Azure takes whole MiB); the added bytes are zeros"
            ));
        }
    }
    warn_all(common.quiet, disk.warnings());
    warn_all(common.quiet, &advice);
    let mut reporter = Reporter::new(args.progress, common.quiet, &args.src.display().to_string());
    let result = if to_stdout {
        stdout_image::convert(disk.as_mut(), &plan, cancel, &mut |p| reporter.update(p))
    } else {
        vdconv::convert::convert(disk.as_mut(), &plan, cancel, &mut |p| reporter.update(p))
    };
    reporter.finish();
    let mut report = result?;
    report.warnings.extend(advice);
    if common.json {
        print_json(&report)?;
    } else if !common.quiet {
        let verified = match &report.sha256 {
            Some(digest) => format!("; verified, SHA-256 {digest}"),
            None => String::new(),
        };
        let _ = writeln!(
            std::io::stderr(),
            "vdconv: wrote {} ({} bytes virtual, {} bytes of data) in {:.2}s{verified}",
            report.destination.display(),
            report.virtual_size,
            report.data_bytes_written,
            report.seconds
        );
    }
    Ok(0)
}

/// `convert --keep-chain`: the chain's files written together.
fn run_keep_chain(args: &ConvertArgs, plan: &ConvertPlan, cancel: &Cancel) -> Outcome {
    let common = &args.common;
    if vdconv::stream_out::is_stream(&args.dst) {
        return Err(Error::usage(
            Some("--keep-chain"),
            "writes a file per link beside DST; DST cannot be - (stdout)",
        ));
    }
    let mut chain = vdconv::chain::open_chain(&args.src, &open_options(common, cancel))?;
    warn_all(common.quiet, vdconv::Disk::warnings(&chain));
    // --target azure is refused with --keep-chain; the Hyper-V targets only advise.
    if let Some(t) = plan.target {
        warn_all(common.quiet, &vdconv::target::advice(t, &mut chain));
    }
    let mut reporter = Reporter::new(args.progress, common.quiet, &args.src.display().to_string());
    let result = vdconv::keep_chain::convert_keep_chain(&mut chain, plan, cancel, &mut |p| {
        reporter.update(p)
    });
    reporter.finish();
    let report = result?;
    if common.json {
        print_json(&report)?;
    } else if !common.quiet {
        let files: Vec<String> = report
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        let _ = writeln!(
            std::io::stderr(),
            "vdconv: wrote {} ({} bytes virtual, {} bytes of data) in {:.2}s",
            files.join(" <- "),
            report.virtual_size,
            report.data_bytes_written,
            report.seconds
        );
    }
    Ok(0)
}

fn run_check(args: &CheckArgs, cancel: &Cancel) -> Outcome {
    if args.guest {
        let target = match args.target {
            Some(CheckTargetArg::Azure) => TargetArg::Azure,
            Some(CheckTargetArg::HypervGen1) => TargetArg::HypervGen1,
            Some(CheckTargetArg::HypervGen2) => TargetArg::HypervGen2,
            None => return Err(Error::usage(Some("--guest"), "needs --target")),
        };
        return inspect_and_print(&args.img, Some(target), &args.common, cancel);
    }
    let report = match args.target {
        Some(CheckTargetArg::Azure) => vdconv::check::check_azure(&args.img, cancel)?,
        Some(_) => {
            return Err(Error::usage(
                Some("--target"),
                "Hyper-V has no upload rules to check; add --guest to check the guest for it",
            ));
        }
        None => vdconv::check::check(&args.img, &open_options(&args.common, cancel))?,
    };
    if args.common.json {
        print_json(&report)?;
    } else {
        print_text(&text::check(&report))?;
    }
    Ok(if report.clean { 0 } else { 1 })
}

fn run_inspect(args: &InspectArgs, cancel: &Cancel) -> Outcome {
    inspect_and_print(&args.img, args.target, &args.common, cancel)
}

/// `inspect` and `check --guest`: the report on stdout (text or JSON), exit 1 when it is
/// not ready (docs/json.md: `ready`).
fn inspect_and_print(
    img: &Path,
    target: Option<TargetArg>,
    common: &cli::Common,
    cancel: &Cancel,
) -> Outcome {
    let target = target.map(|t| match t {
        TargetArg::Azure => Target::Azure,
        TargetArg::HypervGen1 => Target::HypervGen1,
        TargetArg::HypervGen2 => Target::HypervGen2,
    });
    let options = open_options(common, cancel);
    if vdconv::export::detect::is_stream(img) {
        // Never opened: a FIFO without a writer would wait forever.
        return Err(Error::not_a_file(
            img,
            "is a pipe; inspect reads files (save the export first, or convert it with --inspect)",
        ));
    }
    let doc = if vdconv::export::detect::sniff(img)?.is_some() {
        // An export: its boot disk, with the VM's firmware next to what the disk says.
        vdconv::inspect::inspect_image(img, &options, target)?
    } else {
        let disk = vdconv::open(img, &options)?;
        warn_all(common.quiet, disk.warnings());
        vdconv::inspect::inspect_disk(disk, target, None, cancel)?.0
    };
    if common.json {
        print_json(&doc)?;
    } else {
        print_text(&text::inspect(&doc, target))?;
    }
    Ok(if doc.ready { 0 } else { 1 })
}

fn run_compare(args: &CompareArgs, cancel: &Cancel) -> Outcome {
    let options = open_options(&args.common, cancel);
    let mut a = vdconv::open(&args.a, &options)?;
    // --parent names A's parent only.
    let options_b = OpenOptions {
        parent: None,
        ..options
    };
    let mut b = vdconv::open(&args.b, &options_b)?;
    warn_all(args.common.quiet, a.warnings());
    warn_all(args.common.quiet, b.warnings());
    let total = a.virtual_size().min(b.virtual_size());
    let mut reporter = Reporter::new(
        args.progress,
        args.common.quiet,
        &args.a.display().to_string(),
    );
    let result =
        vdconv::compare::compare(a.as_mut(), b.as_mut(), args.strict, cancel, &mut |done| {
            reporter.update(vdconv::convert::Progress {
                phase: vdconv::convert::Phase::Compare,
                done,
                total,
            })
        });
    reporter.finish();
    let report = result?;
    if args.common.json {
        print_json(&report)?;
    } else {
        print_text(&text::compare(&report))?;
    }
    Ok(if report.identical { 0 } else { 1 })
}

fn run_info(args: &InfoArgs, cancel: &Cancel) -> Outcome {
    if let Some(code) = export_cmd::info(args, cancel)? {
        return Ok(code);
    }
    let mut disk = vdconv::open(&args.img, &open_options(&args.common, cancel))?;
    let info = vdconv::info::describe(disk.as_mut(), cancel)?;
    if args.common.json {
        print_json(&info)?;
        return Ok(0);
    }
    warn_all(args.common.quiet, &info.image.warnings);
    print_text(&text::info(&info))?;
    Ok(0)
}

fn print_completions(shell: clap_complete::Shell) -> Outcome {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "vdconv", &mut out);
    write_stdout(&out)?;
    Ok(0)
}

fn print_man() -> Outcome {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| Error::output_io(Path::new("stdout"), "the manual page", e))?;
    write_stdout(&out)?;
    Ok(0)
}

/// Writes to stdout; a failure (a full disk, a closed pipe) is an output error, never a
/// panic.
fn write_stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Error::output_io(Path::new("stdout"), "the result", e))
}

fn print_text(text: &str) -> Result<(), Error> {
    write_stdout(text.as_bytes())
}

fn print_json<T: Serialize>(doc: &T) -> Result<(), Error> {
    let mut text = serde_json::to_string_pretty(doc).map_err(|e| {
        Error::output_io(
            Path::new("stdout"),
            "the JSON document",
            std::io::Error::other(e),
        )
    })?;
    text.push('\n');
    write_stdout(text.as_bytes())
}

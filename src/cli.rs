//! Command-line definitions (clap derive), nothing else: raw flags as typed. main.rs turns
//! them once into the library's validated plan.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "vdconv",
    version,
    about = "Convert VMware virtual disks (VMDK) to VHD and VHDX, exactly",
    long_about = "Convert VMware virtual disks (VMDK) to VHD and VHDX, exactly: every byte the guest sees is the same, and the file passes the readers it will meet (Hyper-V, Azure, qemu, libvhdi).\n\nExit codes: 0 success; 1 compare: different, check: a rule broken, inspect: something blocks the target; 2 usage error; 3 the input cannot be read; 4 the output cannot be written; 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert SRC into a new VHD or VHDX image at DST.
    Convert(ConvertArgs),
    /// Describe an image (format, layout, size, extents, partition table), or an export
    /// (the VM, and each disk).
    Info(InfoArgs),
    /// Compare the guest-visible contents of two images of any supported formats.
    Compare(CompareArgs),
    /// Validate an image's structure (or a platform's rules): one finding per broken rule.
    Check(CheckArgs),
    /// Run a plan of conversions (JSON lines), N at a time, resumable, shardable.
    Batch(BatchArgs),
    /// Will the guest inside the image boot and be reachable on Hyper-V or Azure? Read-only.
    Inspect(InspectArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `vdconv man | man -l -`.
    Man,
}

#[derive(Args, Debug)]
pub struct Common {
    /// Print one JSON document on stdout and nothing else there (also when failing).
    #[arg(long)]
    pub json: bool,
    /// Print only errors on stderr (no warnings, no summary).
    #[arg(short, long)]
    pub quiet: bool,
    /// More detail on stderr: -v what is done, -vv why.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Allow extent files outside the descriptor's folder (absolute names, '..', links).
    #[arg(long)]
    pub allow_outside_paths: bool,
    /// Read files no signature matches as raw disk images.
    #[arg(short = 'f', long = "input-format", value_enum)]
    pub input_format: Option<InputFormatArg>,
    /// The parent of the snapshot delta or differencing disk given (compare: of A),
    /// instead of the one it records.
    #[arg(long, value_name = "FILE")]
    pub parent: Option<PathBuf>,
    /// Read a chain whose links disagree (a delta's parentCID that is not its parent's
    /// CID, another parent id) with a warning instead of refusing it.
    #[arg(long)]
    pub ignore_cid: bool,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The image to convert: VMDK (any layout), VHD, VHDX, or raw with -f raw; or a
    /// whole-VM export (an .ova, an .ovf); `-` or a FIFO: an OVA (or a streamOptimized
    /// VMDK) read front to back from a pipe.
    #[arg(value_name = "SRC")]
    pub src: PathBuf,
    /// The image to write; its extension (.vhd, .vhdx) names the format unless -O does.
    /// An export with several disks: a folder (created if missing) receiving one image
    /// per disk.
    #[arg(value_name = "DST")]
    pub dst: PathBuf,
    /// An export: convert only this disk (its number in the descriptor's order, from 1,
    /// or its disk id, file id or file name); DST is then the file to write.
    #[arg(long, value_name = "N|ID")]
    pub disk: Option<String>,
    /// An export: do not check the digests its manifest lists.
    #[arg(long)]
    pub no_verify_manifest: bool,
    /// Output format; default from DST's extension, or from --target.
    #[arg(short = 'O', long = "output-format", value_enum)]
    pub format: Option<FormatArg>,
    /// Fixed (all space allocated) or dynamic (grows with data); default dynamic.
    #[arg(long = "type", value_enum)]
    pub disk_type: Option<TypeArg>,
    /// Where the image goes: azure (fixed VHD, whole-MiB size), hyperv-gen1, hyperv-gen2
    /// (VHDX); warns when the disk's partition table does not fit.
    #[arg(long, value_enum)]
    pub target: Option<TargetArg>,
    /// Block size of a dynamic VHD (512K to 256M) or a VHDX (1M to 256M), a power of
    /// two: bytes, or with a K/M/G suffix (default: VHD 2M, VHDX 32M).
    #[arg(long, value_name = "SIZE")]
    pub block_size: Option<String>,
    /// VHDX logical sector size (default 512).
    #[arg(long, value_parser = parse_sector, value_name = "512|4096")]
    pub logical_sector: Option<u32>,
    /// VHDX physical sector size (default 4096).
    #[arg(long, value_parser = parse_sector, value_name = "512|4096")]
    pub physical_sector: Option<u32>,
    /// Zero ranges: holes where the source has none (auto, the default), holes for every
    /// zero 4 KiB (always), or every byte written (never, for files headed to NTFS).
    #[arg(long, value_enum)]
    pub sparse: Option<SparseArg>,
    /// Flat VMDK to fixed VHD without copying: append a footer to the flat file and
    /// move it to DST (the descriptor is left as it is).
    #[arg(long)]
    pub in_place: bool,
    /// Read the result back and check it against the source before putting it in place.
    #[arg(long)]
    pub verify: bool,
    /// Write a snapshot chain as a chain: the base as DST, each delta as a differencing
    /// disk beside it (.avhdx, or .vhd), named after its own file.
    #[arg(long)]
    pub keep_chain: bool,
    /// Replace DST if it exists.
    #[arg(long)]
    pub force: bool,
    /// Inspect the guest first; a finding that blocks --target stops the conversion.
    #[arg(long)]
    pub inspect: bool,
    /// With --inspect: convert even when a finding blocks the target (printed as warnings).
    #[arg(long, requires = "inspect")]
    pub force_unready: bool,
    /// Fixed outputs of flat data: share the source's blocks (FICLONERANGE) where the
    /// file system can (auto, the default), or fail saying why (always), or never share
    /// (never: the data is read and written).
    #[arg(long, value_enum, value_name = "auto|always|never")]
    pub reflink: Option<ReflinkArg>,
    /// Progress on stderr: auto (a bar on a terminal), always (a bar, or plain lines
    /// off a terminal), never, json (JSON lines).
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The image to describe.
    #[arg(value_name = "IMG")]
    pub img: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The image to check.
    #[arg(value_name = "IMG")]
    pub img: PathBuf,
    /// Check the platform's rules instead of the format's structure (azure: fixed VHD,
    /// whole MiB, file size, footer, size bounds); with --guest, the guest's readiness.
    #[arg(long, value_enum)]
    pub target: Option<CheckTargetArg>,
    /// Check the guest inside the image for --target (as inspect does): exit 1 when
    /// something blocks it.
    #[arg(long, requires = "target")]
    pub guest: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The image whose guest to inspect: VMDK (any layout), VHD, VHDX, or raw with -f raw.
    #[arg(value_name = "IMG")]
    pub img: PathBuf,
    /// The platform to judge for (exit 1 when something blocks it); default: all three,
    /// exit 1 when something blocks every one.
    #[arg(long, value_enum)]
    pub target: Option<TargetArg>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The first image.
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The second image.
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Also require equal sizes (by default a size difference made only of zeros is
    /// identical, as qemu-img compare judges).
    #[arg(long)]
    pub strict: bool,
    /// Progress on stderr: auto, always, never, json (as for convert).
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
#[command(mut_arg("json", |a| a.help(
    "One JSON line per item on stdout as it finishes, then a summary line (docs/json.md)"
)))]
pub struct BatchArgs {
    /// The plan: JSON lines, one conversion each ({"source": ..., "destination": ...,
    /// and convert's options}); relative paths are from the plan's folder; - reads stdin.
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,
    /// Conversions side by side; each gets an equal share of the cores.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1, value_parser = parse_jobs)]
    pub jobs: usize,
    /// Take only shard I of N (0 <= I < N): the lines L with (L - 1) mod N = I, so N
    /// runs split the plan with no overlap (e.g. --shard $JOB_COMPLETION_INDEX/N).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<vdconv::batch::Shard>,
    #[command(flatten)]
    pub common: Common,
}

/// 1 to vdconv::batch::MAX_JOBS.
fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=vdconv::batch::MAX_JOBS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number from 1 to {}",
            vdconv::batch::MAX_JOBS
        )),
    }
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    Vhd,
    Vhdx,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormatArg {
    /// A raw disk image: the file is the disk byte for byte.
    Raw,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeArg {
    Fixed,
    Dynamic,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckTargetArg {
    Azure,
    HypervGen1,
    HypervGen2,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetArg {
    Azure,
    HypervGen1,
    HypervGen2,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseArg {
    Auto,
    Always,
    Never,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReflinkArg {
    Auto,
    Always,
    Never,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressArg {
    Auto,
    Always,
    Never,
    Json,
}

/// 512 or 4096.
fn parse_sector(text: &str) -> Result<u32, String> {
    match text {
        "512" => Ok(512),
        "4096" => Ok(4096),
        _ => Err("expected 512 or 4096".to_string()),
    }
}

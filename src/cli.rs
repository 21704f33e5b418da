//! Command-line definitions (clap derive), nothing else.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "vdconv",
    version,
    about = "Convert VMware virtual disks (VMDK) to VHD and VHDX, exactly"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert SRC into a new VHD or VHDX image at DST.
    Convert(ConvertArgs),
    /// Describe an image: format, layout, size, extents.
    Info(InfoArgs),
    /// Compare the guest-visible contents of two images of any supported formats.
    Compare(CompareArgs),
    /// Validate an image's structure: one finding per broken rule.
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct Common {
    /// Print one JSON document on stdout and nothing else there.
    #[arg(long)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// More detail on stderr (-v, -vv).
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Allow extent files outside the descriptor's folder (absolute names, '..', links).
    #[arg(long)]
    pub allow_outside_paths: bool,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    pub src: PathBuf,
    pub dst: PathBuf,
    /// Output format; default from DST's extension.
    #[arg(short = 'O', long = "output-format", value_enum)]
    pub format: Option<FormatArg>,
    /// Fixed (all space allocated) or dynamic (grows with data); default dynamic.
    #[arg(long = "type", value_enum)]
    pub disk_type: Option<TypeArg>,
    /// Where the image goes: azure (fixed VHD, whole-MiB size), hyperv-gen1, hyperv-gen2
    /// (VHDX); warns when the disk's partition table does not fit.
    #[arg(long, value_enum)]
    pub target: Option<TargetArg>,
    /// Block size: bytes, or with a K/M/G suffix (default: VHD 2M, VHDX 32M).
    #[arg(long)]
    pub block_size: Option<String>,
    /// VHDX logical sector size.
    #[arg(long, default_value_t = 512, value_parser = parse_sector)]
    pub logical_sector: u32,
    /// VHDX physical sector size.
    #[arg(long, default_value_t = 4096, value_parser = parse_sector)]
    pub physical_sector: u32,
    /// Zero ranges of a fixed image: holes (auto, always) or written out (never, for NTFS).
    #[arg(long, value_enum, default_value_t = SparseArg::Auto)]
    pub sparse: SparseArg,
    /// Flat VMDK to fixed VHD without copying: append a footer to the flat file and
    /// rename it to DST (the descriptor is left as it is).
    #[arg(long)]
    pub in_place: bool,
    /// Read the result back and check it against the source before putting it in place.
    #[arg(long)]
    pub verify: bool,
    /// Replace DST if it exists.
    #[arg(long)]
    pub force: bool,
    /// Progress bar on stderr: auto shows it on a terminal only.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    pub img: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    pub img: PathBuf,
    /// Check the platform's rules instead of the format's structure (azure: fixed VHD,
    /// whole MiB, file size, footer, size bounds).
    #[arg(long, value_enum)]
    pub target: Option<CheckTargetArg>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    pub a: PathBuf,
    pub b: PathBuf,
    /// Progress bar on stderr: auto shows it on a terminal only.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    #[command(flatten)]
    pub common: Common,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    Vhd,
    Vhdx,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeArg {
    Fixed,
    Dynamic,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckTargetArg {
    Azure,
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
pub enum ProgressArg {
    Auto,
    Always,
    Never,
}

/// 512 or 4096.
fn parse_sector(text: &str) -> Result<u32, String> {
    match text {
        "512" => Ok(512),
        "4096" => Ok(4096),
        _ => Err("expected 512 or 4096".to_string()),
    }
}

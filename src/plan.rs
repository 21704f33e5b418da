//! One validated plan for a conversion. What the user asked ([`ConvertRequest`]: every
//! field optional, as typed) is turned once into what will be done ([`ConvertPlan`]): every
//! default decided here and nowhere else, every option checked against the output it
//! would apply to, and an option that does not apply refused rather than ignored.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::reflink::ReflinkMode;
use crate::target::Target;
use crate::{vhd, vhdx};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Vhd,
    Vhdx,
}

impl OutputFormat {
    /// The format named by a file's extension, if any.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "vhd" => Some(OutputFormat::Vhd),
            "vhdx" => Some(OutputFormat::Vhdx),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Vhd => "vhd",
            OutputFormat::Vhdx => "vhdx",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskType {
    Fixed,
    Dynamic,
}

/// How zero ranges of the output are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SparseMode {
    /// Ranges the source maps as zero become holes; stored data is copied as it is (the
    /// kernel may copy zeros it holds as data).
    Auto,
    /// Every all-zero 4 KiB of the output becomes a hole, data copied by the kernel
    /// included: the smallest file, at the cost of reading every byte.
    Always,
    /// Every byte written, holes filled: for files headed to NTFS, where Windows refuses
    /// sparse image files.
    Never,
}

/// What the user asked for. `None` means "not given": the plan decides.
#[derive(Debug, Clone, Default)]
pub struct ConvertRequest {
    /// `-O`; else DST's extension; else the target's format.
    pub format: Option<OutputFormat>,
    pub disk_type: Option<DiskType>,
    pub target: Option<Target>,
    /// Bytes.
    pub block_size: Option<u64>,
    pub logical_sector: Option<u32>,
    pub physical_sector: Option<u32>,
    pub sparse: Option<SparseMode>,
    pub in_place: bool,
    pub verify: bool,
    pub force: bool,
    /// Seconds since the Unix epoch for reproducible output (SOURCE_DATE_EPOCH): ids are
    /// then derived from the content and this time, so two runs write the same bytes.
    pub reproducible_time: Option<u64>,
    /// Write a snapshot chain as a chain: the base as DST, each delta as a differencing
    /// disk beside it (`--keep-chain`).
    pub keep_chain: bool,
    /// `--reflink`: whether a fixed output shares the source's blocks; default auto.
    pub reflink: Option<ReflinkMode>,
}

/// What will be done: every field decided.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertPlan {
    pub destination: PathBuf,
    pub format: OutputFormat,
    #[serde(rename = "type")]
    pub disk_type: DiskType,
    pub target: Option<Target>,
    /// Output block size; None for a fixed VHD, which has no blocks.
    pub block_size: Option<u64>,
    /// VHDX only.
    pub logical_sector: Option<u32>,
    /// VHDX only.
    pub physical_sector: Option<u32>,
    pub sparse: SparseMode,
    pub in_place: bool,
    pub verify: bool,
    pub force: bool,
    pub reproducible_time: Option<u64>,
    /// Write a chain as a chain (`--keep-chain`).
    pub keep_chain: bool,
    /// With --keep-chain: the block size of the differencing children (--block-size, or
    /// Hyper-V's 2 MiB for checkpoints). None otherwise.
    pub child_block_size: Option<u64>,
    pub reflink: ReflinkMode,
}

fn usage(option: &str, detail: impl Into<String>) -> Error {
    Error::usage(Some(option), detail)
}

impl ConvertPlan {
    /// Validates `req` for writing `dst`.
    pub fn new(dst: &Path, req: &ConvertRequest) -> Result<Self> {
        let format = resolve_format(dst, req)?;
        let disk_type = resolve_type(req)?;
        let block_size = resolve_block_size(format, disk_type, req.block_size)?;
        let (logical_sector, physical_sector) = match format {
            OutputFormat::Vhdx => (
                Some(sector(req.logical_sector, 512, "--logical-sector")?),
                Some(sector(req.physical_sector, 4096, "--physical-sector")?),
            ),
            OutputFormat::Vhd => {
                for (given, option) in [
                    (req.logical_sector, "--logical-sector"),
                    (req.physical_sector, "--physical-sector"),
                ] {
                    if given.is_some() {
                        return Err(usage(
                            option,
                            "applies to VHDX output only; a VHD always has 512-byte sectors",
                        ));
                    }
                }
                (None, None)
            }
        };
        let child_block_size = if req.keep_chain {
            Some(resolve_child_block_size(format, req)?)
        } else {
            None
        };
        if req.in_place {
            if req.keep_chain {
                return Err(usage(
                    "--keep-chain",
                    "does not go with --in-place, which turns one flat file into a VHD",
                ));
            }
            if format != OutputFormat::Vhd {
                return Err(usage(
                    "--in-place",
                    "makes a fixed VHD only (the flat file becomes its data); name DST .vhd or pass -O vhd",
                ));
            }
            if req.verify {
                return Err(usage(
                    "--in-place",
                    "copies no data, so there is nothing to verify; drop --verify (or run vdconv compare on a copy)",
                ));
            }
            if req.sparse.is_some() {
                return Err(usage(
                    "--sparse",
                    "does not apply to --in-place, which keeps the flat file as it is",
                ));
            }
        }
        let reflink = req.reflink.unwrap_or_default();
        if reflink == ReflinkMode::Always {
            check_reflink_always(disk_type, req)?;
        }
        Ok(ConvertPlan {
            destination: dst.to_path_buf(),
            format,
            disk_type,
            target: req.target,
            block_size,
            logical_sector,
            physical_sector,
            sparse: req.sparse.unwrap_or(SparseMode::Auto),
            in_place: req.in_place,
            verify: req.verify,
            force: req.force,
            reproducible_time: req.reproducible_time,
            keep_chain: req.keep_chain,
            child_block_size,
            reflink,
        })
    }

    /// The VHDX shape for a disk of `size` bytes.
    pub fn vhdx_params(&self, size: u64) -> vhdx::write::VhdxParams {
        vhdx::write::VhdxParams {
            size,
            block_size: self.block_size.unwrap_or(vhdx::write::DEFAULT_BLOCK_SIZE),
            logical_sector: self.logical_sector.unwrap_or(512),
            physical_sector: self.physical_sector.unwrap_or(4096),
            fixed: self.disk_type == DiskType::Fixed,
        }
    }

    /// The output's virtual size for a source of `source_size` bytes (a target may round
    /// it up), checked against what the output format holds.
    pub fn output_size(&self, source_size: u64) -> Result<u64> {
        let size = crate::target::output_size(self.target, source_size)?;
        match self.format {
            OutputFormat::Vhd => {
                // Azure reads current size, not CHS: it takes VHDs past the spec's 2040 GiB.
                let max = if self.target == Some(Target::Azure) {
                    crate::target::AZURE_MAX_SIZE
                } else {
                    vhd::write::MAX_SIZE
                };
                vhd::write::check_size(size, max)?;
            }
            OutputFormat::Vhdx => self.vhdx_params(size).validate()?,
        }
        Ok(size)
    }
}

fn resolve_format(dst: &Path, req: &ConvertRequest) -> Result<OutputFormat> {
    let from_target = match req.target {
        Some(Target::Azure) => Some(OutputFormat::Vhd),
        Some(Target::HypervGen2) => Some(OutputFormat::Vhdx),
        _ => None,
    };
    let asked = req.format.or_else(|| OutputFormat::from_path(dst));
    match (asked, from_target) {
        (Some(OutputFormat::Vhdx), Some(OutputFormat::Vhd)) => Err(usage(
            "--target",
            "azure takes only fixed VHD; name DST .vhd or pass -O vhd",
        )),
        (Some(OutputFormat::Vhd), Some(OutputFormat::Vhdx)) => Err(usage(
            "--target",
            "hyperv-gen2 machines boot only from VHDX; name DST .vhdx or pass -O vhdx",
        )),
        (Some(f), _) | (None, Some(f)) => Ok(f),
        (None, None) => Err(Error::usage(
            None,
            format!(
                "{}: cannot tell the output format from the name; give -O vhd or -O vhdx",
                dst.display()
            ),
        )),
    }
}

/// The differencing children's block size: --block-size when given (the base's too),
/// otherwise 2 MiB, Hyper-V's for checkpoints, which keeps a child close to the size of
/// the data its delta changes.
fn resolve_child_block_size(format: OutputFormat, req: &ConvertRequest) -> Result<u64> {
    if req.target == Some(Target::Azure) {
        return Err(usage(
            "--keep-chain",
            "does not go with --target azure: Azure takes one fixed VHD",
        ));
    }
    let (min, max) = match format {
        OutputFormat::Vhd => (vhd::write::MIN_BLOCK_SIZE, vhd::write::MAX_BLOCK_SIZE),
        OutputFormat::Vhdx => (vhdx::write::MIN_BLOCK_SIZE, vhdx::write::MAX_BLOCK_SIZE),
    };
    let size = req
        .block_size
        .unwrap_or(vhdx::diff_write::DEFAULT_BLOCK_SIZE);
    if !size.is_power_of_two() || !(min..=max).contains(&size) {
        return Err(usage(
            "--block-size",
            format!(
                "{size} bytes is not a power of two from {} KiB to {} MiB, as a differencing {} needs",
                min >> 10,
                max >> 20,
                format.name().to_uppercase()
            ),
        ));
    }
    Ok(size)
}

/// `--reflink always` promises shared blocks: only a fixed image, which lays the disk out
/// as one run, can keep it (a dynamic one packs its blocks in the order they are met).
fn check_reflink_always(disk_type: DiskType, req: &ConvertRequest) -> Result<()> {
    let why = if disk_type != DiskType::Fixed {
        "shares the source's blocks into a fixed image only; pass --type fixed, or --reflink auto"
    } else if req.in_place {
        "does not apply to --in-place, which copies nothing"
    } else if req.sparse == Some(SparseMode::Always) {
        "does not go with --sparse always, which reads the data to punch out zeros"
    } else {
        return Ok(());
    };
    Err(usage("--reflink", why))
}

fn resolve_type(req: &ConvertRequest) -> Result<DiskType> {
    let azure = req.target == Some(Target::Azure);
    match req.disk_type {
        Some(DiskType::Dynamic) if azure => Err(usage(
            "--type",
            "dynamic is refused by --target azure: Azure takes only fixed VHD",
        )),
        Some(DiskType::Dynamic) if req.in_place => Err(usage(
            "--type",
            "dynamic does not go with --in-place, which makes a fixed VHD",
        )),
        Some(t) => Ok(t),
        // In place makes a fixed VHD: that is what a flat file plus a footer is.
        None if azure || req.in_place => Ok(DiskType::Fixed),
        None => Ok(DiskType::Dynamic),
    }
}

fn resolve_block_size(
    format: OutputFormat,
    disk_type: DiskType,
    asked: Option<u64>,
) -> Result<Option<u64>> {
    let (min, max, default) = match (format, disk_type) {
        (OutputFormat::Vhd, DiskType::Fixed) => {
            if asked.is_some() {
                return Err(usage(
                    "--block-size",
                    "does not apply to a fixed VHD, which has no blocks",
                ));
            }
            return Ok(None);
        }
        (OutputFormat::Vhd, DiskType::Dynamic) => (
            vhd::write::MIN_BLOCK_SIZE,
            vhd::write::MAX_BLOCK_SIZE,
            vhd::dynamic::DEFAULT_BLOCK_SIZE,
        ),
        (OutputFormat::Vhdx, _) => (
            vhdx::write::MIN_BLOCK_SIZE,
            vhdx::write::MAX_BLOCK_SIZE,
            vhdx::write::DEFAULT_BLOCK_SIZE,
        ),
    };
    let Some(size) = asked else {
        return Ok(Some(default));
    };
    if !size.is_power_of_two() || !(min..=max).contains(&size) {
        return Err(usage(
            "--block-size",
            format!(
                "{size} bytes is not a power of two from {} KiB to {} MiB, as a {} {} needs",
                min >> 10,
                max >> 20,
                match disk_type {
                    DiskType::Fixed => "fixed",
                    DiskType::Dynamic => "dynamic",
                },
                format.name().to_uppercase()
            ),
        ));
    }
    Ok(Some(size))
}

fn sector(given: Option<u32>, default: u32, option: &str) -> Result<u32> {
    match given.unwrap_or(default) {
        v @ (512 | 4096) => Ok(v),
        v => Err(usage(option, format!("{v} is not 512 or 4096"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dst: &str, req: ConvertRequest) -> Result<ConvertPlan> {
        ConvertPlan::new(Path::new(dst), &req)
    }

    #[test]
    fn defaults_are_decided_once() {
        let p = plan("a.vhd", ConvertRequest::default()).unwrap();
        assert_eq!(p.format, OutputFormat::Vhd);
        assert_eq!(p.disk_type, DiskType::Dynamic);
        assert_eq!(p.block_size, Some(2 << 20));
        assert_eq!(p.sparse, SparseMode::Auto);
        assert_eq!(p.logical_sector, None);
        let p = plan("a.vhdx", ConvertRequest::default()).unwrap();
        assert_eq!(p.block_size, Some(32 << 20));
        assert_eq!(
            (p.logical_sector, p.physical_sector),
            (Some(512), Some(4096))
        );
        let p = plan(
            "a.img",
            ConvertRequest {
                target: Some(Target::Azure),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (p.format, p.disk_type),
            (OutputFormat::Vhd, DiskType::Fixed)
        );
    }

    #[test]
    fn options_that_do_not_apply_are_refused() {
        let fixed = ConvertRequest {
            disk_type: Some(DiskType::Fixed),
            block_size: Some(3 << 20),
            ..Default::default()
        };
        let e = plan("a.vhd", fixed.clone()).unwrap_err();
        assert!(e.to_string().starts_with("--block-size: "), "{e}");
        let e = plan("a.vhdx", fixed).unwrap_err();
        assert!(e.to_string().contains("not a power of two"), "{e}");
        let e = plan(
            "a.vhd",
            ConvertRequest {
                logical_sector: Some(4096),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("--logical-sector: "), "{e}");
        assert!(plan("a.img", ConvertRequest::default()).is_err());
        assert!(
            plan(
                "a.vhdx",
                ConvertRequest {
                    target: Some(Target::Azure),
                    ..Default::default()
                }
            )
            .is_err()
        );
        assert!(
            plan(
                "a.vhd",
                ConvertRequest {
                    target: Some(Target::HypervGen2),
                    ..Default::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn sizes_are_checked_without_wrapping() {
        let p = plan(
            "a.vhd",
            ConvertRequest {
                target: Some(Target::Azure),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p.output_size((100 << 20) + 12800).unwrap(), 101 << 20);
        assert!(p.output_size(u64::MAX - 511).is_err());
        let p = plan("a.vhd", ConvertRequest::default()).unwrap();
        assert!(p.output_size(2041 << 30).is_err());
    }
}

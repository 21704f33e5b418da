//! vdconv: convert VMware virtual disks (VMDK) to VHD and VHDX, exactly.
//!
//! Open any supported image with [`open`], which detects the format from the content (never
//! from the name), then [`convert::convert`] it under a validated [`plan::ConvertPlan`],
//! describe it with [`info::describe`], [`check`] its structure or [`compare::compare`] it
//! with another. Every long walk takes a [`Cancel`] token.
//!
//! ```no_run
//! use std::path::Path;
//! use vdconv::{Cancel, OpenOptions};
//! use vdconv::plan::{ConvertPlan, ConvertRequest};
//!
//! let cancel = Cancel::new();
//! let options = OpenOptions { cancel: cancel.clone(), ..Default::default() };
//! let mut disk = vdconv::open(Path::new("disk.vmdk"), &options)?;
//! let plan = ConvertPlan::new(Path::new("disk.vhdx"), &ConvertRequest::default())?;
//! let report = vdconv::convert::convert(disk.as_mut(), &plan, &cancel, &mut |_| {})?;
//! println!("{} bytes of data written", report.data_bytes_written);
//! # Ok::<(), vdconv::Error>(())
//! ```
//!
//! Layers, lowest first; each imports only from those before it:
//! 1. [`error`], [`rules`], [`cancel`], [`size`], [`zero`], [`identity`], [`threads`],
//!    [`platform`] (the names of the targets), [`quote`] (input text in messages);
//! 2. [`disk`]: the reader contract, input files, the `info` record;
//! 3. formats: [`vmdk`], [`vhd`], [`vhdx`], [`raw`], [`partition`], [`guest`] (none imports
//!    another, nor anything after this layer), [`sink`], the contract writers write through, and
//!    [`reflink`], block sharing between files;
//! 4. [`output`]: the destination file;
//! 5. [`chain`]: opening an image with its parents;
//! 6. the pipeline: [`target`], [`plan`], [`convert`], [`keep_chain`], [`stream_out`],
//!    [`compare`], [`check`], [`info`], [`report`], [`inspect`] (guest readiness over any
//!    image), [`batch`] above `convert`, [`stream_convert`] (one pass over a disk read
//!    front to back), and [`export`] (OVA and OVF packages: their disks converted and
//!    described).

pub mod cancel;
pub mod error;
pub mod identity;
pub mod platform;
pub mod quote;
pub mod rules;
pub mod size;
pub mod threads;
pub mod zero;

pub mod disk;

pub mod detect;
pub mod guest;
pub mod ova;
pub mod partition;
pub mod raw;
pub mod reflink;
pub mod sink;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

pub mod output;

pub mod batch;
pub mod chain;
pub mod check;
pub mod compare;
pub mod convert;
pub mod export;
pub mod info;
pub mod inspect;
pub mod keep_chain;
pub mod plan;
pub mod report;
pub mod stream_convert;
pub mod stream_out;
pub mod target;

use std::path::Path;

pub use cancel::Cancel;
pub use detect::Format;
pub use disk::{Disk, OpenOptions};
pub use error::{Error, ErrorKind, ExitClass, Result};

/// Opens an image, detecting its format from its content (never from its name). With
/// `options.raw_fallback`, a file no signature matches is read as a raw disk image. A
/// snapshot delta or differencing disk is opened with its parents, as one flattened disk
/// ([`chain`]).
pub fn open(path: &Path, options: &OpenOptions) -> Result<Box<dyn Disk>> {
    chain::open(path, options)
}

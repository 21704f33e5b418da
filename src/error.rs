//! Typed library errors. Each error knows which exit-code class it belongs to, so the
//! binary can map it to the documented exit code without inspecting messages.

use std::io;
use std::path::{Path, PathBuf};

/// The exit-code classes of the command-line contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// 2: the command line was wrong.
    Usage,
    /// 3: the input cannot be read (missing, corrupt, unsupported).
    Input,
    /// 4: the output cannot be written.
    Output,
    /// 130: interrupted by SIGINT or SIGTERM.
    Interrupted,
}

impl ExitClass {
    pub fn code(self) -> i32 {
        match self {
            ExitClass::Usage => 2,
            ExitClass::Input => 3,
            ExitClass::Output => 4,
            ExitClass::Interrupted => 130,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading an input file failed at the OS level.
    #[error("{}: cannot read {what}: {source}", path.display())]
    InputIo {
        path: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },
    /// An input structure breaks a rule of its format.
    #[error("{}: {structure} at offset {offset}: {detail}", path.display())]
    Corrupt {
        path: PathBuf,
        structure: &'static str,
        offset: u64,
        detail: String,
    },
    /// A descriptor line is malformed or names something unusable.
    #[error("{}: descriptor line {line}: {detail}", path.display())]
    Descriptor {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    /// The input is valid but of a kind vdconv does not convert.
    #[error("{}: {detail}", path.display())]
    Unsupported { path: PathBuf, detail: String },
    /// The input names something it may not (a file outside its folder, a device).
    #[error("{}: {detail}", path.display())]
    Refused { path: PathBuf, detail: String },
    /// The request itself is invalid (bad option value, impossible size).
    #[error("{0}")]
    Usage(String),
    /// The destination exists and --force was not given.
    #[error("{}: already exists; pass --force to replace it", path.display())]
    OutputExists { path: PathBuf },
    /// The destination is one of the input files.
    #[error("{}: the destination is one of the input files", path.display())]
    OutputIsInput { path: PathBuf },
    /// Writing the output failed at the OS level.
    #[error("{}: cannot write {what}: {source}", path.display())]
    OutputIo {
        path: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },
    /// A request the output format cannot hold (too large, wrong alignment).
    #[error("{0}")]
    OutputLimit(String),
    /// The written image does not read back as the source (--verify).
    #[error("verification failed: {0}")]
    Verify(String),
    /// SIGINT or SIGTERM arrived while working.
    #[error("interrupted; no output was left behind")]
    Interrupted,
}

impl Error {
    pub fn class(&self) -> ExitClass {
        match self {
            Error::InputIo { .. }
            | Error::Corrupt { .. }
            | Error::Descriptor { .. }
            | Error::Unsupported { .. }
            | Error::Refused { .. } => ExitClass::Input,
            Error::Usage(_) => ExitClass::Usage,
            Error::OutputExists { .. }
            | Error::OutputIsInput { .. }
            | Error::OutputIo { .. }
            | Error::OutputLimit(_)
            | Error::Verify(_) => ExitClass::Output,
            Error::Interrupted => ExitClass::Interrupted,
        }
    }

    pub fn input_io(path: &Path, what: impl Into<String>, source: io::Error) -> Self {
        Error::InputIo {
            path: path.to_path_buf(),
            what: what.into(),
            source,
        }
    }

    pub fn output_io(path: &Path, what: impl Into<String>, source: io::Error) -> Self {
        Error::OutputIo {
            path: path.to_path_buf(),
            what: what.into(),
            source,
        }
    }

    pub fn corrupt(
        path: &Path,
        structure: &'static str,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            path: path.to_path_buf(),
            structure,
            offset,
            detail: detail.into(),
        }
    }

    pub fn unsupported(path: &Path, detail: impl Into<String>) -> Self {
        Error::Unsupported {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

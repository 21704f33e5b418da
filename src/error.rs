//! Typed library errors. Each error has a stable kind (what scripts match on), an exit-code
//! class, the file (or option) at fault, and where there is one, the structure and byte
//! offset; its message is one line in the README's `FILE: STRUCTURE at offset N: detail`
//! shape.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::rules::Rule;

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
    pub fn code(self) -> u8 {
        match self {
            ExitClass::Usage => 2,
            ExitClass::Input => 3,
            ExitClass::Output => 4,
            ExitClass::Interrupted => 130,
        }
    }
}

/// What went wrong, as a stable name scripts can match on (`kind` in JSON error documents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The command line is wrong (a bad value, options that do not go together).
    Usage,
    /// An input file does not exist.
    MissingFile,
    /// A file a descriptor names as an extent does not exist.
    MissingExtent,
    /// The parent of a delta or differencing disk cannot be found.
    MissingParent,
    /// The input is a directory, a FIFO, a device: not a regular file.
    NotAFile,
    /// A descriptor names a file outside its folder, or a device.
    PathRefused,
    /// The file given is an extent of a disk; its descriptor is what to convert.
    IsExtent,
    /// A structure extends past the end of its file.
    Truncated,
    /// A structure breaks a rule of its format.
    Corrupt,
    /// Valid, but of a kind vdconv does not read.
    Unsupported,
    /// A delta's parentCID is not its parent's CID.
    CidMismatch,
    /// A snapshot chain is broken: a cycle, too deep, links of different sizes.
    ChainBroken,
    /// A file of an export does not hash to what its manifest says.
    ManifestMismatch,
    /// `convert --inspect`: the guest inside the source would not boot or be reachable
    /// on the target, and `--force-unready` was not given.
    GuestNotReady,
    /// Reading an input failed at the OS level.
    InputIo,
    /// Access to a file was refused by the OS.
    PermissionDenied,
    /// The destination exists and --force was not given.
    Exists,
    /// The destination is one of the input files.
    OutputIsInput,
    /// The destination's file system is full (or the quota is).
    NoSpace,
    /// Writing the output failed at the OS level.
    OutputIo,
    /// The output format cannot hold the disk (too large, wrong alignment).
    OutputLimit,
    /// The written image does not read back as the source (--verify).
    VerifyFailed,
    /// SIGINT or SIGTERM arrived.
    Interrupted,
}

impl ErrorKind {
    /// The name used in JSON documents and the docs.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::MissingFile => "missing-file",
            ErrorKind::MissingExtent => "missing-extent",
            ErrorKind::MissingParent => "missing-parent",
            ErrorKind::NotAFile => "not-a-file",
            ErrorKind::PathRefused => "path-refused",
            ErrorKind::IsExtent => "is-extent",
            ErrorKind::Truncated => "truncated",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::CidMismatch => "cid-mismatch",
            ErrorKind::ChainBroken => "chain-broken",
            ErrorKind::ManifestMismatch => "manifest-mismatch",
            ErrorKind::GuestNotReady => "guest-not-ready",
            ErrorKind::InputIo => "input-io",
            ErrorKind::PermissionDenied => "permission-denied",
            ErrorKind::Exists => "exists",
            ErrorKind::OutputIsInput => "output-is-input",
            ErrorKind::NoSpace => "no-space",
            ErrorKind::OutputIo => "output-io",
            ErrorKind::OutputLimit => "output-limit",
            ErrorKind::VerifyFailed => "verify-failed",
            ErrorKind::Interrupted => "interrupted",
        }
    }

    /// Every kind, for the docs and the tests that keep them in step.
    pub const ALL: [ErrorKind; 23] = [
        ErrorKind::Usage,
        ErrorKind::MissingFile,
        ErrorKind::MissingExtent,
        ErrorKind::MissingParent,
        ErrorKind::NotAFile,
        ErrorKind::PathRefused,
        ErrorKind::IsExtent,
        ErrorKind::Truncated,
        ErrorKind::Corrupt,
        ErrorKind::Unsupported,
        ErrorKind::CidMismatch,
        ErrorKind::ChainBroken,
        ErrorKind::ManifestMismatch,
        ErrorKind::GuestNotReady,
        ErrorKind::InputIo,
        ErrorKind::PermissionDenied,
        ErrorKind::Exists,
        ErrorKind::OutputIsInput,
        ErrorKind::NoSpace,
        ErrorKind::OutputIo,
        ErrorKind::OutputLimit,
        ErrorKind::VerifyFailed,
        ErrorKind::Interrupted,
    ];
}

/// What the error is about: a file, or a command-line option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    File(PathBuf),
    Option(String),
}

/// A library error: one line for people, typed fields for programs.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    class: ExitClass,
    subject: Option<Subject>,
    structure: Option<&'static str>,
    offset: Option<u64>,
    rule: Option<&'static Rule>,
    detail: String,
    source: Option<io::Error>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Some(Subject::File(p)) => write!(f, "{}: ", p.display())?,
            Some(Subject::Option(o)) => write!(f, "{o}: ")?,
            None => {}
        }
        match (self.structure, self.offset) {
            (Some(s), Some(o)) => write!(f, "{s} at offset {o}: ")?,
            (Some(s), None) => write!(f, "{s}: ")?,
            _ => {}
        }
        f.write_str(&self.detail)?;
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Error {
    fn new(kind: ErrorKind, class: ExitClass, detail: impl Into<String>) -> Self {
        Error {
            kind,
            class,
            subject: None,
            structure: None,
            offset: None,
            rule: None,
            detail: detail.into(),
            source: None,
        }
    }

    fn file(mut self, path: &Path) -> Self {
        self.subject = Some(Subject::File(path.to_path_buf()));
        self
    }

    fn at(mut self, structure: &'static str, offset: u64) -> Self {
        self.structure = Some(structure);
        self.offset = Some(offset);
        self
    }

    fn io(mut self, source: io::Error) -> Self {
        self.source = Some(source);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn class(&self) -> ExitClass {
        self.class
    }

    /// The file at fault, if any.
    pub fn path(&self) -> Option<&Path> {
        match &self.subject {
            Some(Subject::File(p)) => Some(p),
            _ => None,
        }
    }

    /// The file or option at fault, as JSON error documents name it.
    pub fn subject(&self) -> Option<&Subject> {
        self.subject.as_ref()
    }

    pub fn structure(&self) -> Option<&'static str> {
        self.structure
    }

    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// The format rule broken, for corrupt structures that have one.
    pub fn rule(&self) -> Option<&'static Rule> {
        self.rule
    }

    /// The detail alone, without the file and structure.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The command line is wrong; `option` names the option at fault, if one is.
    pub fn usage(option: Option<&str>, detail: impl Into<String>) -> Self {
        let mut e = Error::new(ErrorKind::Usage, ExitClass::Usage, detail);
        e.subject = option.map(|o| Subject::Option(o.to_string()));
        e
    }

    /// Reading an input failed at the OS level: a missing file and a refused permission
    /// get kinds of their own.
    pub fn input_io(path: &Path, what: impl Into<String>, source: io::Error) -> Self {
        let kind = match source.kind() {
            io::ErrorKind::NotFound => ErrorKind::MissingFile,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            _ => ErrorKind::InputIo,
        };
        Error::new(
            kind,
            ExitClass::Input,
            format!("cannot read {}", what.into()),
        )
        .file(path)
        .io(source)
    }

    /// A file named by a descriptor cannot be opened.
    pub fn missing_extent(path: &Path, what: impl Into<String>, source: io::Error) -> Self {
        let mut e = Error::input_io(path, what, source);
        if e.kind == ErrorKind::MissingFile {
            e.kind = ErrorKind::MissingExtent;
        }
        e
    }

    /// A delta's parent cannot be opened.
    pub fn missing_parent(path: &Path, detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::MissingParent, ExitClass::Input, detail).file(path)
    }

    /// A structure breaks a rule of its format.
    pub fn corrupt(
        path: &Path,
        structure: &'static str,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        Error::new(ErrorKind::Corrupt, ExitClass::Input, detail)
            .file(path)
            .at(structure, offset)
    }

    /// A structure breaks `rule`; `check` reports the same rule id for the same fault.
    pub fn broken(
        path: &Path,
        rule: &'static Rule,
        structure: &'static str,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        let mut e = Error::corrupt(path, structure, offset, detail);
        e.rule = Some(rule);
        e
    }

    /// This error, naming the format rule it breaks.
    pub fn with_rule(mut self, rule: &'static Rule) -> Self {
        self.rule = Some(rule);
        self
    }

    /// A structure extends past the end of its file.
    pub fn truncated(
        path: &Path,
        structure: &'static str,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        Error::new(ErrorKind::Truncated, ExitClass::Input, detail)
            .file(path)
            .at(structure, offset)
    }

    /// A descriptor line is malformed or names something unusable.
    pub fn descriptor(path: &Path, line: usize, detail: impl Into<String>) -> Self {
        Error::new(
            ErrorKind::Corrupt,
            ExitClass::Input,
            format!("descriptor line {line}: {}", detail.into()),
        )
        .file(path)
    }

    /// Valid input of a kind vdconv does not read.
    pub fn unsupported(path: &Path, detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unsupported, ExitClass::Input, detail).file(path)
    }

    /// The input names something it may not (a file outside its folder, a device).
    pub fn refused(path: &Path, detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::PathRefused, ExitClass::Input, detail).file(path)
    }

    /// The input is not a regular file.
    pub fn not_a_file(path: &Path, detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotAFile, ExitClass::Input, detail).file(path)
    }

    /// The file given is an extent; `detail` names the descriptor to use.
    pub fn is_extent(path: &Path, detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::IsExtent, ExitClass::Input, detail).file(path)
    }

    /// A delta's parentCID differs from its parent's CID.
    pub fn cid_mismatch(child: &Path, detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::CidMismatch, ExitClass::Input, detail).file(child)
    }

    /// A chain is broken (a cycle, too deep, links of different sizes).
    pub fn chain_broken(path: &Path, detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::ChainBroken, ExitClass::Input, detail).file(path)
    }

    /// Two parts of an input disagree (an export's descriptor and the disk it stores):
    /// which one is right cannot be known.
    pub fn inconsistent(path: &Path, detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, ExitClass::Input, detail).file(path)
    }

    /// This error, naming the format rule it breaks (a link of a chain: `vmdk-parent`).
    pub fn breaking(mut self, rule: &'static Rule) -> Self {
        self.rule = Some(rule);
        self
    }

    /// A file does not hash to its manifest's digest; `manifest` is named as the file.
    pub fn manifest_mismatch(manifest: &Path, detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::ManifestMismatch, ExitClass::Input, detail).file(manifest)
    }

    /// The guest inside `path` is not ready for the target (`convert --inspect`): an input
    /// refused, exit 3, with a kind of its own so that scripts can tell it from damage.
    pub fn guest_not_ready(path: &Path, detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::GuestNotReady, ExitClass::Input, detail).file(path)
    }

    /// Writing the output failed at the OS level: a full file system and a refused
    /// permission get kinds of their own.
    pub fn output_io(path: &Path, what: impl Into<String>, source: io::Error) -> Self {
        let kind = match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => ErrorKind::NoSpace,
            Some(libc::EACCES | libc::EPERM | libc::EROFS) => ErrorKind::PermissionDenied,
            _ => ErrorKind::OutputIo,
        };
        Error::new(
            kind,
            ExitClass::Output,
            format!("cannot write {}", what.into()),
        )
        .file(path)
        .io(source)
    }

    /// The destination cannot be written (checked before any work: a folder, no space).
    pub fn output(kind: ErrorKind, path: &Path, detail: impl Into<String>) -> Self {
        Error::new(kind, ExitClass::Output, detail).file(path)
    }

    /// The destination exists and --force was not given.
    pub fn exists(path: &Path) -> Self {
        Error::output(
            ErrorKind::Exists,
            path,
            "already exists; pass --force to replace it",
        )
    }

    /// The destination is one of the input files.
    pub fn output_is_input(path: &Path) -> Self {
        Error::output(
            ErrorKind::OutputIsInput,
            path,
            "the destination is one of the input files",
        )
    }

    /// A request the output format cannot hold (too large, wrong alignment).
    pub fn output_limit(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::OutputLimit, ExitClass::Output, detail)
    }

    /// The written image does not read back as the source.
    pub fn verify_failed(path: &Path, detail: impl Into<String>) -> Self {
        Error::output(ErrorKind::VerifyFailed, path, detail)
    }

    /// Cancellation was asked for; nothing was left behind.
    pub fn interrupted() -> Self {
        Error::new(
            ErrorKind::Interrupted,
            ExitClass::Interrupted,
            "interrupted; no output was left behind",
        )
    }

    /// This error with the exit class of an input error: a read failure met while
    /// writing (a source that shrank under a kernel copy) is the input's fault.
    pub fn as_input(mut self) -> Self {
        if self.class == ExitClass::Output {
            self.class = ExitClass::Input;
            if matches!(self.kind, ErrorKind::OutputIo) {
                self.kind = ErrorKind::InputIo;
            }
        }
        self
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_structure_and_offset() {
        let e = Error::corrupt(Path::new("a.vmdk"), "grain table", 512, "bad");
        assert_eq!(e.to_string(), "a.vmdk: grain table at offset 512: bad");
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert_eq!(e.class().code(), 3);
        let e = Error::usage(Some("--block-size"), "3M is not a power of two");
        assert_eq!(e.to_string(), "--block-size: 3M is not a power of two");
        assert_eq!(e.class().code(), 2);
    }

    #[test]
    fn os_errors_get_their_kinds() {
        let nf = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(
            Error::input_io(Path::new("x"), "the file", nf).kind(),
            ErrorKind::MissingFile
        );
        let full = io::Error::from_raw_os_error(libc::ENOSPC);
        let e = Error::output_io(Path::new("y"), "data", full);
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        assert_eq!(e.class().code(), 4);
        assert!(e.to_string().starts_with("y: cannot write data: "));
    }

    #[test]
    fn kind_names_are_unique() {
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}

//! Errors of the OVA/OVF layer. Every error names the package file (the `.ova`, or the
//! `.ovf` descriptor of a folder) and, where there is one, the member or referenced file
//! inside it, so that a user can find what is wrong without a hex editor.
//!
//! The kinds match what the caller has to decide on (corrupt, refused, unsupported,
//! missing, over a limit, manifest mismatch); `From<OvaError> for crate::Error` maps them
//! onto the crate's exit-code classes without losing the member name.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Where in a package something went wrong: the package file, and the member (archive
/// member or file referenced by the descriptor) when the problem is inside one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub package: PathBuf,
    pub member: Option<String>,
}

impl Place {
    pub fn package(package: &Path) -> Self {
        Place {
            package: package.to_path_buf(),
            member: None,
        }
    }

    pub fn member(package: &Path, member: impl Into<String>) -> Self {
        Place {
            package: package.to_path_buf(),
            member: Some(member.into()),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.member {
            Some(m) => write!(f, "{}: member {m:?}", self.package.display()),
            None => write!(f, "{}", self.package.display()),
        }
    }
}

/// A digest algorithm a manifest may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512];

    /// The spelling manifests use.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// Length of a digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a package could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OvaError {
    /// Reading failed at the OS level.
    #[error("{place}: cannot read {what}: {source}")]
    Io {
        place: Place,
        what: String,
        #[source]
        source: io::Error,
    },
    /// A structure breaks a rule of its format (tar header, XML, manifest line).
    /// `offset` is a byte offset in the package file (tar) or in the member (XML,
    /// manifest), as `structure` says.
    #[error("{place}: {structure} at offset {offset}: {detail}")]
    Corrupt {
        place: Place,
        structure: &'static str,
        offset: u64,
        detail: String,
    },
    /// The package names something it may not: a path leaving the package, a device, a
    /// link, a URL, a DTD.
    #[error("{place}: {detail}")]
    Refused { place: Place, detail: String },
    /// Valid, but not something this reader handles (GNU sparse members, several
    /// virtual systems).
    #[error("{place}: {detail}")]
    Unsupported { place: Place, detail: String },
    /// A file the descriptor references is not in the package.
    #[error("{place}: {detail}")]
    Missing { place: Place, detail: String },
    /// A bound on memory or work was reached (descriptor size, member count).
    #[error("{place}: {detail}")]
    Limit { place: Place, detail: String },
    /// A file's digest is not the one the manifest lists.
    #[error(
        "{place}: {algorithm} digest does not match the manifest: expected {expected}, found {found}"
    )]
    ManifestMismatch {
        place: Place,
        algorithm: Algorithm,
        expected: String,
        found: String,
    },
}

pub type OvaResult<T> = std::result::Result<T, OvaError>;

impl OvaError {
    pub fn place(&self) -> &Place {
        match self {
            OvaError::Io { place, .. }
            | OvaError::Corrupt { place, .. }
            | OvaError::Refused { place, .. }
            | OvaError::Unsupported { place, .. }
            | OvaError::Missing { place, .. }
            | OvaError::Limit { place, .. }
            | OvaError::ManifestMismatch { place, .. } => place,
        }
    }

    /// An `io::Error` from one of this module's readers may carry an `OvaError` (a
    /// truncated member, a gzip stream inflating past its bound): unwraps it, or wraps
    /// a plain I/O error with the place and what was being read.
    pub fn from_io(place: Place, what: impl Into<String>, e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<OvaError>()) {
            match e.into_inner().map(|inner| inner.downcast::<OvaError>()) {
                Some(Ok(inner)) => return *inner,
                // Unreachable after the check above; keep a plain error all the same.
                _ => return OvaError::io(place, what, io::Error::other("unreadable")),
            }
        }
        OvaError::io(place, what, e)
    }

    pub(crate) fn corrupt(
        place: Place,
        structure: &'static str,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        OvaError::Corrupt {
            place,
            structure,
            offset,
            detail: detail.into(),
        }
    }

    pub(crate) fn refused(place: Place, detail: impl Into<String>) -> Self {
        OvaError::Refused {
            place,
            detail: detail.into(),
        }
    }

    pub(crate) fn unsupported(place: Place, detail: impl Into<String>) -> Self {
        OvaError::Unsupported {
            place,
            detail: detail.into(),
        }
    }

    pub(crate) fn missing(place: Place, detail: impl Into<String>) -> Self {
        OvaError::Missing {
            place,
            detail: detail.into(),
        }
    }

    pub(crate) fn limit(place: Place, detail: impl Into<String>) -> Self {
        OvaError::Limit {
            place,
            detail: detail.into(),
        }
    }

    pub(crate) fn io(place: Place, what: impl Into<String>, source: io::Error) -> Self {
        OvaError::Io {
            place,
            what: what.into(),
            source,
        }
    }
}

/// Prefix for details that concern one member, so the crate error still names it.
fn in_member(place: &Place, detail: String) -> String {
    match &place.member {
        Some(m) => format!("member {m:?}: {detail}"),
        None => detail,
    }
}

/// Maps onto the crate's kinds: all are input errors (exit 3).
impl From<OvaError> for Error {
    fn from(e: OvaError) -> Self {
        match e {
            OvaError::Io {
                place,
                what,
                source,
            } => {
                let what = in_member(&place, what);
                Error::input_io(&place.package, what, source)
            }
            OvaError::Corrupt {
                place,
                structure,
                offset,
                detail,
            } => Error::corrupt(&place.package, structure, offset, in_member(&place, detail)),
            OvaError::Refused { place, detail } => {
                Error::refused(&place.package, in_member(&place, detail))
            }
            OvaError::Unsupported { place, detail } | OvaError::Limit { place, detail } => {
                Error::unsupported(&place.package, in_member(&place, detail))
            }
            OvaError::Missing { place, detail } => Error::input_io(
                &place.package,
                in_member(&place, detail),
                io::Error::from(io::ErrorKind::NotFound),
            ),
            OvaError::ManifestMismatch {
                place,
                algorithm,
                expected,
                found,
            } => Error::manifest_mismatch(
                &place.package,
                format!(
                    "manifest: {}: {algorithm} digest is {found}, the manifest says {expected}",
                    place.member.as_deref().unwrap_or("a listed file")
                ),
            ),
        }
    }
}

//! Errors of the guest readers. Each names the structure and, where there is one, the byte
//! offset inside the volume it was read from.

/// Why something inside the guest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// Reading the underlying disk failed (the image itself is damaged or unreadable).
    #[error("cannot read {what} at offset {offset}: {detail}")]
    Io {
        what: String,
        offset: u64,
        detail: String,
    },
    /// A guest structure breaks a rule of its format.
    #[error("{structure} at offset {offset}: {detail}")]
    Corrupt {
        structure: &'static str,
        offset: u64,
        detail: String,
    },
    /// Valid, but of a kind this reader does not handle (an unknown incompat feature).
    #[error("{0}")]
    Unsupported(String),
    /// A bound on memory or work was reached (a 4 GiB "initramfs", a symlink loop).
    #[error("{0}")]
    Limit(String),
    /// The path does not exist.
    #[error("{0}: not found")]
    NotFound(String),
    /// The path exists but is not what the call needs (a directory read as a file).
    #[error("{path}: {detail}")]
    WrongKind { path: String, detail: String },
    /// Cancellation was asked for.
    #[error("interrupted")]
    Interrupted,
}

pub type GuestResult<T> = Result<T, GuestError>;

//! The store's error type: every failure names the file, URL or name involved.

use super::GgufError;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the store or while pulling into it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A model name that is not `family[:tag]` of safe characters.
    #[error("invalid model name {name:?}: {why}")]
    BadName {
        /// The name as given (shortened).
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// No manifest for this name.
    #[error("model '{name}' is not installed (installed: {installed}); get it with {how}")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The installed names, comma-separated, or `none`.
        installed: String,
        /// The command that would install it.
        how: String,
    },
    /// A path given as a model file that is not a file.
    #[error("no such model file: {}", .0.display())]
    NoFile(PathBuf),
    /// A file system operation failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error (in the message, not a separate `source`, so the CLI's
        /// one-line error does not repeat it).
        cause: io::Error,
    },
    /// A file that does not parse as GGUF.
    #[error("{}: not a usable GGUF file: {cause}", path.display())]
    Gguf {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        cause: GgufError,
    },
    /// A manifest that cannot be read back, or whose blob is gone.
    #[error("{}: {why}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// No platform data directory and no explicit root.
    #[error(
        "cannot find a data directory for the model store; set HEARTH_MODELS or pass --models DIR"
    )]
    NoDataDir,
    /// A change asked of a model that another tool's store holds.
    #[error("{0}")]
    ReadOnly(String),
    /// A pull spec that names nothing we can download.
    #[error("{0}")]
    BadSpec(String),
    /// The server answered, but not with what we asked for.
    #[error("{url}: {why}")]
    Http {
        /// The request.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The server stopped answering for longer than the timeout.
    #[error("{url}: no data from the server for {secs} s (timeout; set HEARTH_HTTP_TIMEOUT to wait longer); run the command again to resume")]
    Timeout {
        /// The request.
        url: String,
        /// The timeout in seconds.
        secs: u64,
    },
    /// The downloaded bytes are not the published file.
    #[error("{url}: sha256 mismatch: the server publishes {expected}, the download is {actual}; nothing was installed")]
    HashMismatch {
        /// The download.
        url: String,
        /// Published digest.
        expected: String,
        /// Digest of what arrived.
        actual: String,
    },
}

/// Shorthand for store results.
pub type Result<T> = std::result::Result<T, StoreError>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |cause| StoreError::Io {
        path: path.to_owned(),
        cause,
    }
}

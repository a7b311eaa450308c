//! The crate's error type. Every error says what went wrong *and what to do about it*.

use std::path::PathBuf;

/// Everything that can go wrong in dlhist.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch, dtype, device...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing, e.g. "cannot read".
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A download failed (network error, HTTP status, dropped connection).
    #[error("download of {url} failed: {reason}")]
    Download {
        /// The URL requested.
        url: String,
        /// What went wrong and what to do.
        reason: String,
    },

    /// A file's SHA-256 is not the one expected.
    #[error("checksum mismatch for {path}: expected sha256 {expected}, got {actual}. The file is corrupt or was changed upstream; delete it and fetch it again, or check the source")]
    Checksum {
        /// The file (or URL) whose bytes were hashed.
        path: String,
        /// The expected hex digest.
        expected: String,
        /// The digest of the bytes we got.
        actual: String,
    },

    /// A file exists but its content is not in the expected format.
    #[error("{path} is not a valid {format} file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The format expected, e.g. "IDX image".
        format: &'static str,
        /// What is wrong with it and what to do.
        reason: String,
    },

    /// A dataset or file was not found anywhere dlhist looked.
    #[error("{what} not found; looked in: {}. {hint}", .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// What was looked for.
        what: String,
        /// Every place that was searched, in order.
        searched: Vec<PathBuf>,
        /// What the user can do.
        hint: String,
    },

    /// Training diverged: the loss stopped being a finite number.
    #[error(
        "the loss became {loss} at step {step}; lower the learning rate (or clip the gradients), or check the data"
    )]
    Diverged {
        /// The optimizer step (from 0) whose loss was not finite.
        step: usize,
        /// The loss at that step (NaN or infinite).
        loss: f64,
    },

    /// An argument is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),

    /// The device asked for is not available.
    #[error("{0}")]
    Device(String),

    /// Drawing a figure failed.
    #[error("plot: {0}")]
    Plot(String),

    /// Building a results table failed.
    #[error(transparent)]
    Polars(#[from] polars::error::PolarsError),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }
}

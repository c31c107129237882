//! How things fail: one error type for the engine, carrying what failed and where.

use std::path::PathBuf;

pub type Result<T, E = EddyError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EddyError {
    /// A configuration value that cannot be used.
    #[error("invalid configuration value {value:?} for '{key}': {reason}")]
    Config { key: String, value: String, reason: String },

    /// A configuration file that cannot be read or parsed.
    #[error("cannot load configuration file {}: {reason}", path.display())]
    ConfigFile { path: PathBuf, reason: String },

    /// A file-system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A network operation failed.
    #[error("{action} {address}: {source}")]
    Network {
        action: &'static str,
        address: String,
        #[source]
        source: std::io::Error,
    },

    /// Input data that cannot be read as what it should be.
    #[error("bad input in {location}: {reason}")]
    BadInput { location: String, reason: String },

    /// The job graph is not valid (for example a parallelism of 0).
    #[error("invalid job: {0}")]
    InvalidJob(String),

    /// User code (a function, source or sink) returned an error or panicked.
    #[error("{operator} ({subtask}/{parallelism}) failed: {message}")]
    Task {
        operator: String,
        /// 1-based, as Flink prints it.
        subtask: usize,
        parallelism: usize,
        message: String,
    },

    /// The job was cancelled.
    #[error("job {0} was cancelled")]
    Cancelled(String),

    /// Anything else raised by user code, as text.
    #[error("{0}")]
    User(String),
}

impl EddyError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EddyError::Io { action, path: path.into(), source }
    }

    pub fn user(message: impl std::fmt::Display) -> Self {
        EddyError::User(message.to_string())
    }
}

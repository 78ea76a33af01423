//! The one error of every port: a failure of the storage engine itself.

/// A failure of the storage engine itself (never a client's mistake).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Engine(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("no ironhub data in {0}: start `ironhub serve --data-dir {0}` once first")]
    NotInitialised(String),
}

/// What every port returns.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

//! The one error of every port: a failure of the storage engine itself.

/// A failure of the storage engine itself (never a client's mistake).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Engine(String),
    /// The disk holding the data is full: the write was not made.
    #[error("the disk of the data directory is full: {0}")]
    Full(String),
    /// The engine's server cannot be reached now (stopped, restarting, unreachable): the
    /// operation failed and a retry may succeed once it is back.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("no ironhub data in {0}: start `ironhub serve --data-dir {0}` once first")]
    NotInitialised(String),
}

/// What every port returns.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a client is told when the store failed (the details go to the server's log): a full
/// disk is named, as the operator can act on it; anything else points at the log.
pub fn failure_message(e: &StoreError) -> &'static str {
    match e {
        StoreError::Full(_) => {
            "The server's storage is full, so nothing was written; retry once space is freed."
        }
        StoreError::Unavailable(_) => {
            "The server's storage cannot be reached now, so the operation failed; retry later."
        }
        _ => "The server could not complete the operation; see its log.",
    }
}

//! The engine's internal errors: SQLite and JSON failures, turned into the ports'
//! [`StoreError`] at the boundary.

use ironhub_store::StoreError;

/// A failure inside the engine.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct Error(pub(crate) StoreError);

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Error(StoreError::Full(e.to_string())),
            _ => Error(StoreError::Engine(e.to_string())),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error(StoreError::Corrupt(e.to_string()))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error(e)
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        e.0
    }
}

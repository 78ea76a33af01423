//! NATS failures as the store ports report them.

use ironhub_store::StoreError;

/// A NATS failure while doing `context`.
pub(crate) fn engine(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(format!("NATS: {context}: {e}"))
}

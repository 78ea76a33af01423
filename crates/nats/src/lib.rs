//! ironhub on NATS JetStream: the event log ([`NatsEventLog`]) and the device bus
//! ([`NatsBus`]) that let many nodes serve one hub. DESIGN.md ("NATS") maps partitions,
//! streams, KV buckets and subjects.

mod bus;
mod connect;
mod eventlog;
mod names;

pub use bus::NatsBus;
pub use connect::{NatsOptions, connect};
pub use eventlog::NatsEventLog;
pub use names::Names;

use ironhub_store::StoreError;

/// A NATS failure as the store ports report it.
fn engine(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(format!("NATS: {context}: {e}"))
}

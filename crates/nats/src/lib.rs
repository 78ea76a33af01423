//! ironhub on NATS JetStream: the event log ([`NatsEventLog`]), named event streams
//! ([`NatsEventStreams`]) and the device bus
//! ([`NatsBus`]) that let many nodes serve one hub. DESIGN.md ("NATS") maps partitions,
//! streams, KV buckets and subjects.

mod bus;
mod connect;
mod error;
mod eventlog;
mod names;
mod streams;

/// A connection to NATS, as [`connect`] opens it.
pub use async_nats::Client as NatsClient;
pub use bus::NatsBus;
pub use connect::{NatsOptions, connect, redacted};
pub use eventlog::NatsEventLog;
pub use names::Names;
pub use streams::NatsEventStreams;

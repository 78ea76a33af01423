//! Named event streams: event logs beside the built-in one, each with its own partitions,
//! consumer groups and checkpoints. Message routing appends to them (a custom event-stream
//! endpoint, or the delivery stream of an external endpoint that a delivery pump reads).
//!
//! A stream is an [`EventLog`] like the built-in one, so everything that reads the built-in
//! log (the REST event stream, the AMQP Event Hubs endpoint) reads a stream the same way.
//! An engine keeps the streams durable and shared by every node: `open_stream` on two nodes
//! returns the same stream.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{EventLog, Result};

/// Most partitions a stream may have (Event Hubs' standard tier allows 32).
pub const MAX_STREAM_PARTITIONS: u32 = 32;

/// Whether `name` may name a stream: 1–128 ASCII letters, digits, `.`, `_`, `-` and `$`, not
/// starting with `.`. (Engines use it as a file, table or subject name.)
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'$'))
}

/// See the module documentation. Names are case-sensitive; callers pick one case.
#[async_trait]
pub trait EventStreams: Send + Sync + std::fmt::Debug + 'static {
    /// The stream `name`, created with `partitions` partitions if it does not exist (an
    /// existing stream keeps the count it was created with).
    async fn open_stream(&self, name: &str, partitions: u32) -> Result<Arc<dyn EventLog>>;
    /// The stream `name`, if it exists.
    async fn stream(&self, name: &str) -> Result<Option<Arc<dyn EventLog>>>;
    /// The names of the streams, in order.
    async fn list_streams(&self) -> Result<Vec<String>>;
    /// Deletes a stream and everything in it; false if there was none.
    async fn delete_stream(&self, name: &str) -> Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_safe_for_files_and_subjects() {
        for ok in ["hot", "a.b_c-d", "$delivery.x", "E1"] {
            assert!(valid_stream_name(ok), "{ok}");
        }
        for bad in ["", ".x", "a/b", "a b", "..", "é", &"x".repeat(129)] {
            assert!(!valid_stream_name(bad), "{bad}");
        }
    }
}

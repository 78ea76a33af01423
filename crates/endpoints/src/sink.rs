//! The one trait every endpoint kind implements, and how a delivery fails.

use async_trait::async_trait;
use ironhub_store::Event;

/// Why a delivery failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    pub message: String,
    /// `false` when the endpoint refused the message for good (a webhook's 400, a message
    /// too large for the NATS server): it is dead-lettered at once.
    pub retryable: bool,
}

impl DeliveryError {
    /// A failure that may pass on a later attempt (endpoint down, timeout, 5xx, 429).
    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure no retry can fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError {
            message: message.into(),
            retryable: false,
        }
    }
}

/// A batch that failed part way: the first `delivered` events of it went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    pub delivered: usize,
    pub error: DeliveryError,
}

/// What a sink did with a batch it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The endpoint has every event of the batch: the pump may checkpoint past it.
    Delivered,
    /// The sink took the first `n` events of the batch into an open chunk (the file sink;
    /// fewer than all when the chunk is full, none when it must be closed first). They count
    /// as delivered once [`Sink::close_due`] reports their chunk closed.
    Buffered(usize),
}

/// An endpoint the pump delivers to. Each call carries events of one partition, in order;
/// calls for different partitions may run at the same time.
#[async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug + 'static {
    /// Delivers `batch` (non-empty, one partition, in sequence order).
    async fn deliver(&self, batch: &[Event]) -> Result<Accepted, BatchError>;

    /// Checks that the endpoint can be reached now (a NATS connection, a webhook's TCP
    /// connection), for a configuration that wants to refuse an endpoint that is down.
    async fn probe(&self) -> Result<(), DeliveryError> {
        Ok(())
    }

    /// Whether the sink buffers (answers [`Accepted::Buffered`]).
    fn buffering(&self) -> bool {
        false
    }

    /// For a buffering sink: closes the partition's open chunk, durably, if it is due (or
    /// whatever its age if `force`), and returns the sequence number after its last event.
    async fn close_due(&self, _partition: u32, _force: bool) -> Result<Option<u64>, DeliveryError> {
        Ok(None)
    }

    /// For a buffering sink: when the partition's open chunk falls due.
    fn due_at(&self, _partition: u32) -> Option<tokio::time::Instant> {
        None
    }

    /// For a buffering sink: drops the partition's open chunk after a failure (its events
    /// are read again from the delivery stream).
    async fn discard(&self, _partition: u32) {}
}

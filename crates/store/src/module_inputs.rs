//! The module input queue port: messages routed to a module's inputs (IoT Edge's
//! `BrokeredEndpoint("/modules/{m}/inputs/{i}")`), kept until the module acknowledges them or
//! they expire, as IoT Edge's hub stores and forwards them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{InputMessage, Result};

/// A message waiting in a module's input queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedInput {
    /// Assigned by the store at enqueue: grows with every message of the hub, so a module's
    /// messages are delivered in this order.
    pub sequence_number: u64,
    /// When the message is dropped undelivered.
    pub expiry_time: DateTime<Utc>,
    pub message: InputMessage,
}

/// One queue per module (all its inputs together, in arrival order). A queue goes with its
/// module (and its device).
#[async_trait]
pub trait ModuleInputStore: Send + Sync {
    /// Appends a message to the queue of module `module_id` of `device_id`, to expire at
    /// `expiry_time`; returns its sequence number, or `None` when there is no such module.
    async fn input_enqueue(
        &self,
        device_id: &str,
        module_id: &str,
        message: &InputMessage,
        expiry_time: DateTime<Utc>,
    ) -> Result<Option<u64>>;
    /// Up to `max` unexpired messages of the module's queue with a sequence number above
    /// `after`, oldest first.
    async fn input_pending(
        &self,
        device_id: &str,
        module_id: &str,
        after: u64,
        max: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<QueuedInput>>;
    /// Removes a delivered message; `false` when it was not there (removed or expired).
    async fn input_remove(
        &self,
        device_id: &str,
        module_id: &str,
        sequence_number: u64,
    ) -> Result<bool>;
    /// Removes the expired messages of every queue; returns how many.
    async fn input_expire(&self, now: DateTime<Utc>) -> Result<u64>;
}

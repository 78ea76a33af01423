//! The port a hub's move (`ironhub migrate`) reads and writes the runtime state through that
//! the other ports only hand out one at a time: persistent MQTT sessions, the feedback waiting
//! for services and the file upload notifications waiting for them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// Listing and importing persistent MQTT sessions and the hub's two service queues.
#[async_trait]
pub trait MoveStore: Send + Sync {
    /// Persistent MQTT sessions (client id, subscriptions) in client id order, after `after`,
    /// at most `limit`.
    async fn mqtt_sessions_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<String>)>>;
    /// The records of `queue` after position `after`, oldest first, at most `limit`, expired
    /// or not, locked or not, as stored.
    async fn queue_page(
        &self,
        queue: ServiceQueue,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<QueuedDoc>>;
    /// Appends records read from another hub's `queue` in order, as they were (document,
    /// enqueued and expiry times, delivery count), without a lock (the receiver that held one
    /// is gone); each gets a new position. All or nothing.
    async fn queue_import(&self, queue: ServiceQueue, records: Vec<QueuedDoc>) -> Result<()>;
}

/// A queue services read from the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceQueue {
    /// Cloud-to-device feedback records (`FeedbackRecord` documents).
    Feedback,
    /// File upload notifications (`FileNotification` documents).
    FileNotifications,
}

impl ServiceQueue {
    /// The table both engines keep it in (the same columns in each: `seq`, `enqueued`,
    /// `expiry`, `delivery_count`, `lock_token`, `locked_until`, `doc`).
    pub fn table(self) -> &'static str {
        match self {
            ServiceQueue::Feedback => "c2d_feedback",
            ServiceQueue::FileNotifications => "file_notifications",
        }
    }
}

/// One record of a [`ServiceQueue`] as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedDoc {
    /// Its place in the queue of the store it was read from.
    pub position: i64,
    pub enqueued: DateTime<Utc>,
    pub expiry: DateTime<Utc>,
    pub delivery_count: u32,
    pub doc: serde_json::Value,
}

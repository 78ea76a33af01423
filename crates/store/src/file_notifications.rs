//! The file upload notification port: what the hub tells services about a blob a device
//! uploaded, queued until a service receives and completes it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// The file upload notification queue, shared by every node.
#[async_trait]
pub trait FileNotificationStore: Send + Sync {
    /// Appends a file upload notification, kept until `expiry` unless a service completes it.
    async fn file_notification_enqueue(
        &self,
        notification: FileNotification,
        expiry: DateTime<Utc>,
    ) -> Result<()>;
    /// Drops expired notifications and those received `rules.max_delivery_count` times, then
    /// locks the oldest visible one for `rules.lock_duration` under a new lock token, counting
    /// a delivery.
    async fn file_notification_lock(
        &self,
        rules: FileNotificationRules,
        now: DateTime<Utc>,
    ) -> Result<Option<LockedFileNotification>>;
    /// Completes (deletes) or abandons (unlocks) the notification locked under `lock_token`;
    /// `false` when none holds that lock any more.
    async fn file_notification_settle(
        &self,
        lock_token: &str,
        complete: bool,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}

/// A file upload notification, in IoT Hub's JSON shape (the `ironhub-wire` type).
pub use ironhub_wire::hub::FileNotification;

/// The file notification queue's rules (IoT Hub's file upload notification settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileNotificationRules {
    /// How long a received notification stays locked before it is visible again.
    pub lock_duration: chrono::TimeDelta,
    /// How many times a notification is received before it is dropped uncompleted.
    pub max_delivery_count: u32,
}

/// A notification a service received, under its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedFileNotification {
    pub lock_token: String,
    /// How many times it was received, this time included.
    pub delivery_count: u32,
    pub notification: FileNotification,
}

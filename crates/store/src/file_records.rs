//! File upload notifications: what the hub tells services about a blob a device uploaded.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A file upload notification, in IoT Hub's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileNotification {
    pub device_id: String,
    pub blob_uri: String,
    pub blob_name: String,
    pub last_updated_time: Option<DateTime<Utc>>,
    pub blob_size_in_bytes: Option<u64>,
    pub enqueued_time_utc: DateTime<Utc>,
}

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

//! How records are written in the embedded engine's rows, shared by the files that read them.

use chrono::{DateTime, Utc};
use ironhub_store::DeviceRecord;

use crate::error::Result;

/// A device read from its JSON document, with the C2D queue depth kept beside it.
pub(crate) fn device_from_doc(doc: &str, c2d_count: u64) -> Result<DeviceRecord> {
    let mut device: DeviceRecord = serde_json::from_str(doc)?;
    device.cloud_to_device_message_count = c2d_count;
    Ok(device)
}

/// Times are stored as milliseconds since the Unix epoch.
pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The time of a stored millisecond count (the epoch for an impossible one).
pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

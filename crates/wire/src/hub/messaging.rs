//! Cloud-to-device purge and feedback, and direct methods (Azure REST API reference, IoT
//! Hub service: "Cloud To Device Messages - Purge Cloud To Device Message Queue", "Devices -
//! Invoke Method"; feedback records as described in "Send cloud-to-device messages from an
//! IoT hub", section "Message feedback").

use serde::{Deserialize, Serialize};

/// `DELETE /devices/{id}/commands`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PurgeResult {
    pub total_messages_purged: u64,
    pub device_id: String,
}

/// How a cloud-to-device message left its queue (a feedback record's `statusCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedbackStatus {
    Success,
    Expired,
    DeliveryCountExceeded,
    Rejected,
    Purged,
}

impl FeedbackStatus {
    /// The `description` IoT Hub gives a record with this status.
    pub fn description(self) -> &'static str {
        match self {
            FeedbackStatus::Success => "Success",
            FeedbackStatus::Expired => "Message Expired",
            FeedbackStatus::DeliveryCountExceeded => "Message delivery count exceeded",
            FeedbackStatus::Rejected => "Message rejected",
            FeedbackStatus::Purged => "Message purged",
        }
    }
}

/// One feedback record, as the body of a feedback message holds a list of them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackRecord {
    pub original_message_id: String,
    pub description: String,
    pub device_generation_id: String,
    pub device_id: String,
    pub enqueued_time_utc: String,
    pub status_code: FeedbackStatus,
}

/// `POST /twins/{id}/methods` (IoT Hub's `CloudToDeviceMethod`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MethodRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method_name: Option<String>,
    /// Pass-through: the JSON handed to the device as it is.
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_timeout_in_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout_in_seconds: Option<i64>,
}

/// A method's answer: the device's status and its payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MethodResult {
    pub status: i32,
    /// Pass-through: the device's JSON as it sent it (`null` when it sent none).
    #[serde(default)]
    pub payload: serde_json::Value,
}

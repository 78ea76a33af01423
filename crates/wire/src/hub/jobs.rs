//! Scheduled jobs (`/jobs/v2/{id}`, `/jobs/v2/query`) and their per-device records
//! (`SELECT * FROM devices.jobs`): IoT Hub's `JobRequest`, `JobResponse`,
//! `DeviceJobStatistics` and `DeviceJob`, as the service SDKs send and parse them.

use serde::{Deserialize, Serialize};

use super::MethodRequest;

/// `PUT /jobs/v2/{id}`'s body.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// `scheduleUpdateTwin` or `scheduleDeviceMethod`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_method: Option<MethodRequest>,
    /// A twin patch (`tags`, `properties.desired`, `etag` `*`): pass-through JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_twin: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_condition: Option<String>,
    /// ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_execution_time_in_seconds: Option<i64>,
}

/// How a job's devices are doing.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJobStatistics {
    pub device_count: u64,
    pub failed_count: u64,
    pub succeeded_count: u64,
    pub running_count: u64,
    pub pending_count: u64,
}

/// A job as `GET /jobs/v2/{id}` answers it (IoT Hub's `JobResponse`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobResponse {
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_execution_time_in_seconds: Option<i64>,
    #[serde(rename = "type")]
    pub job_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_method: Option<MethodRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_twin: Option<serde_json::Value>,
    /// `queued`, `scheduled`, `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_job_statistics: Option<DeviceJobStatistics>,
}

/// A job's error on one device.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJobError {
    pub code: String,
    pub description: String,
}

/// What a job did on one device: a method job's answer.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJobOutcome {
    pub device_method_response: Option<super::MethodResult>,
}

/// One device's record of a job, as `SELECT * FROM devices.jobs` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJob {
    pub device_id: String,
    pub job_id: String,
    pub job_type: String,
    /// `pending`, `scheduled`, `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<DeviceJobOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DeviceJobError>,
}

//! Import and export jobs (`POST /jobs/create`, `GET /jobs`, `GET|DELETE /jobs/{id}`: Azure
//! REST API reference, IoT Hub service, "Jobs - Create Import Export Job"), and the lines
//! of their blobs.

use serde::{Deserialize, Serialize};

/// An import or export job (IoT Hub's `JobProperties`), as a client sends it to create one
/// and as the hub answers it. Fields the hub sets are ignored in a request.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ImportExportJob {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub job_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time_utc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time_utc: Option<String>,
    /// `export` or `import`.
    #[serde(rename = "type")]
    pub job_type: String,
    /// `enqueued`, `running`, `completed`, `failed` or `cancelled`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// The percentage done.
    pub progress: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_blob_container_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_blob_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_blob_container_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_blob_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_keys_in_export: Option<bool>,
    /// `keyBased` (the container URI carries a SAS) or `identityBased`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_authentication_type: Option<String>,
    /// The managed identity of `identityBased` storage authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_configurations: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configurations_blob_name: Option<String>,
}

/// `properties` of an export line: the twin's desired and reported documents, passed
/// through untouched (with their `$metadata` and `$version`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImportTwinProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One line of `importErrors.log`: a row of an import that failed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImportError {
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    pub error_code: String,
    pub error_status: String,
}

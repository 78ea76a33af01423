//! `POST /devices`: bulk registry operations (Azure REST API reference, IoT Hub service,
//! "Bulk Registry - Update Registry").

use serde::{Deserialize, Serialize};

use super::{AuthenticationSpec, CapabilitiesSpec, ImportTwinProperties};

/// One entry of `POST /devices` (IoT Hub's `ExportImportDevice`), and one line of an import
/// or export job's blob (a device, or one of its modules when `moduleId` is given, with its
/// twin's `twinETag`, `tags` and `properties`; `POST /devices` ignores those).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExportImportDevice {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    #[serde(
        rename = "eTag",
        alias = "etag",
        skip_serializing_if = "Option::is_none"
    )]
    pub e_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationSpec>,
    #[serde(rename = "twinETag", default, skip_serializing_if = "Option::is_none")]
    pub twin_e_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<ImportTwinProperties>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<CapabilitiesSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_scopes: Option<Vec<String>>,
}

/// One failed entry of a bulk operation, as IoT Hub reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BulkError {
    pub device_id: String,
    pub error_code: String,
    pub error_status: String,
}

/// The answer to `POST /devices`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BulkResult {
    pub is_successful: bool,
    #[serde(default)]
    pub errors: Vec<BulkError>,
    #[serde(default)]
    pub warnings: Vec<BulkError>,
}

//! Automatic device management: IoT Hub's `Configuration` (`/configurations/{id}`), which is
//! also an IoT Edge deployment when its content is `modulesContent`, and the content that
//! `POST /devices/{id}/applyConfigurationContent` applies to one Edge device.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::JsonMap;

/// A configuration or an IoT Edge deployment as the service API sends and returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub content: ConfigurationContent,
    #[serde(default)]
    pub target_condition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_time_utc: Option<String>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub system_metrics: ConfigurationMetrics,
    #[serde(default)]
    pub metrics: ConfigurationMetrics,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// What a configuration writes: desired properties of device twins (`deviceContent`), of
/// module twins (`moduleContent`), or an IoT Edge deployment manifest (`modulesContent`:
/// module id → `properties.desired…` → value). Keys are twin paths such as
/// `properties.desired.firmware`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_content: Option<JsonMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_content: Option<JsonMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules_content: Option<BTreeMap<String, JsonMap>>,
}

/// Metric queries (name → `SELECT deviceId FROM devices WHERE …`) and their last counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigurationMetrics {
    #[serde(default)]
    pub results: BTreeMap<String, u64>,
    #[serde(default)]
    pub queries: BTreeMap<String, String>,
}

//! IoT Hub's JSON shapes: what the registry API accepts and returns.

use chrono::{DateTime, Utc};
use ironhub_store::{AuthType, ConnectionState, DeviceRecord, DeviceStatus};
use serde::{Deserialize, Serialize};

/// IoT Hub's timestamp format: seven fractional digits, `0001-01-01T00:00:00Z` for "never".
pub fn azure_time(t: Option<DateTime<Utc>>) -> String {
    match t {
        None => "0001-01-01T00:00:00Z".to_owned(),
        Some(t) => format!(
            "{}.{:07}Z",
            t.format("%Y-%m-%dT%H:%M:%S"),
            t.timestamp_subsec_nanos() / 100
        ),
    }
}

/// A device as the registry API returns it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    pub device_id: String,
    pub generation_id: String,
    pub etag: String,
    pub connection_state: ConnectionState,
    pub status: DeviceStatus,
    pub status_reason: Option<String>,
    pub connection_state_updated_time: String,
    pub status_updated_time: String,
    pub last_activity_time: String,
    pub cloud_to_device_message_count: u64,
    pub authentication: AuthenticationView,
    pub capabilities: Capabilities,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_scope: Option<String>,
    pub parent_scopes: Vec<String>,
}

/// `authentication` as returned: both credential objects are always present.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationView {
    pub symmetric_key: SymmetricKeyView,
    pub x509_thumbprint: ThumbprintView,
    #[serde(rename = "type")]
    pub kind: AuthType,
    /// ironhub's: the issuing CA that issued the device's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_authority_name: Option<String>,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyView {
    pub primary_key: Option<String>,
    pub secondary_key: Option<String>,
}

impl std::fmt::Debug for SymmetricKeyView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKeyView(..)")
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThumbprintView {
    pub primary_thumbprint: Option<String>,
    pub secondary_thumbprint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    #[serde(default)]
    pub iot_edge: bool,
}

impl From<&DeviceRecord> for DeviceView {
    fn from(d: &DeviceRecord) -> Self {
        let auth = &d.authentication;
        DeviceView {
            device_id: d.device_id.clone(),
            generation_id: d.generation_id.clone(),
            etag: d.etag.clone(),
            connection_state: d.connection_state,
            status: d.status,
            status_reason: d.status_reason.clone(),
            connection_state_updated_time: azure_time(d.connection_state_updated_time),
            status_updated_time: azure_time(d.status_updated_time),
            last_activity_time: azure_time(d.last_activity_time),
            cloud_to_device_message_count: d.cloud_to_device_message_count,
            authentication: AuthenticationView {
                symmetric_key: SymmetricKeyView {
                    primary_key: auth.symmetric_key.primary_key.clone(),
                    secondary_key: auth.symmetric_key.secondary_key.clone(),
                },
                x509_thumbprint: ThumbprintView {
                    primary_thumbprint: auth.x509_thumbprint.primary_thumbprint.clone(),
                    secondary_thumbprint: auth.x509_thumbprint.secondary_thumbprint.clone(),
                },
                kind: auth.kind,
                certificate_authority_name: auth.certificate_authority_name.clone(),
            },
            capabilities: Capabilities {
                iot_edge: d.iot_edge,
            },
            device_scope: d.device_scope.clone(),
            parent_scopes: d.parent_scopes.clone(),
        }
    }
}

/// A device as a client sends it in `PUT /devices/{id}`. Every field is optional; read-only
/// fields a client echoes back (`etag`, `generationId`, `connectionState`, …) are ignored.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSpec {
    pub device_id: Option<String>,
    pub status: Option<String>,
    pub status_reason: Option<String>,
    pub authentication: Option<AuthenticationSpec>,
    pub capabilities: Option<CapabilitiesSpec>,
    pub device_scope: Option<String>,
    pub parent_scopes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationSpec {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub symmetric_key: Option<SymmetricKeySpec>,
    pub x509_thumbprint: Option<ThumbprintSpec>,
    /// ironhub's: the issuing CA that issued a `certificateAuthority` device's certificate.
    pub certificate_authority_name: Option<String>,
}

#[derive(Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeySpec {
    pub primary_key: Option<String>,
    pub secondary_key: Option<String>,
}

impl std::fmt::Debug for SymmetricKeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKeySpec(..)")
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ThumbprintSpec {
    pub primary_thumbprint: Option<String>,
    pub secondary_thumbprint: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CapabilitiesSpec {
    pub iot_edge: Option<bool>,
}

/// One entry of `POST /devices` (IoT Hub's `ExportImportDevice`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportImportDevice {
    pub id: Option<String>,
    #[serde(rename = "eTag", alias = "etag")]
    pub e_tag: Option<String>,
    pub import_mode: Option<String>,
    pub status: Option<String>,
    pub status_reason: Option<String>,
    pub authentication: Option<AuthenticationSpec>,
    pub capabilities: Option<CapabilitiesSpec>,
    pub device_scope: Option<String>,
    pub parent_scopes: Option<Vec<String>>,
}

/// One failed entry of a bulk operation, as IoT Hub reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BulkError {
    pub device_id: String,
    pub error_code: String,
    pub error_status: String,
}

/// The answer to `POST /devices`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BulkResult {
    pub is_successful: bool,
    pub errors: Vec<BulkError>,
    pub warnings: Vec<BulkError>,
}

/// `GET /statistics/devices`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatistics {
    pub total_device_count: u64,
    pub enabled_device_count: u64,
    pub disabled_device_count: u64,
}

/// `GET /statistics/service`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatistics {
    pub connected_device_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_time_has_seven_digits() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T01:02:03.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(azure_time(Some(t)), "2026-11-22T01:02:03.1234567Z");
        assert_eq!(azure_time(None), "0001-01-01T00:00:00Z");
    }
}

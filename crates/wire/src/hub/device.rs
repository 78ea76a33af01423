//! A device identity: what `GET /devices/{id}` returns ([`Device`]) and what
//! `PUT /devices/{id}` accepts ([`DeviceSpec`]). See the Azure REST API reference, IoT Hub
//! service, "Devices - Create Or Update Identity".

use serde::{Deserialize, Serialize};

use crate::JsonMap;

/// Whether a device may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    #[default]
    Enabled,
    Disabled,
}

impl DeviceStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Enabled => "enabled",
            DeviceStatus::Disabled => "disabled",
        }
    }
}

/// Whether a device holds a connection right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ConnectionState {
    #[default]
    Disconnected,
    Connected,
}

impl ConnectionState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Disconnected => "Disconnected",
            ConnectionState::Connected => "Connected",
        }
    }
}

/// How a device authenticates, with IoT Hub's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum AuthType {
    #[default]
    Sas,
    SelfSigned,
    CertificateAuthority,
    None,
}

impl AuthType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Sas => "sas",
            AuthType::SelfSigned => "selfSigned",
            AuthType::CertificateAuthority => "certificateAuthority",
            AuthType::None => "none",
        }
    }
}

/// A device as the registry API returns it. Every field is read with a default, so a
/// device from a hub that leaves some out (or from a newer API version) still reads.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Device {
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
    pub authentication: Authentication,
    pub capabilities: Capabilities,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_scope: Option<String>,
    pub parent_scopes: Vec<String>,
    /// Pass-through: fields of another hub's answer that this version does not know, kept
    /// so that a client which reads a device, changes it and sends it back loses nothing.
    /// The server never fills it.
    #[serde(flatten)]
    pub other: JsonMap,
}

/// `authentication` as returned (and stored): both credential objects are always present.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Authentication {
    pub symmetric_key: SymmetricKey,
    pub x509_thumbprint: Thumbprint,
    #[serde(rename = "type")]
    pub kind: AuthType,
    /// ironhub's: the issuing CA that issued a `certificateAuthority` device its certificate
    /// (and renews it), when ironhub issued one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_authority_name: Option<String>,
}

/// A device's two keys (base64), `null` when unset, as the registry returns them and the store
/// keeps them. `Debug` never shows them.
#[derive(Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct SymmetricKey {
    pub primary_key: Option<String>,
    pub secondary_key: Option<String>,
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKey(..)")
    }
}

/// A device's two certificate thumbprints (upper-case hex, SHA-1 or SHA-256), `null` when
/// unset, as the registry returns them and the store keeps them.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Thumbprint {
    pub primary_thumbprint: Option<String>,
    pub secondary_thumbprint: Option<String>,
}

/// `capabilities`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    #[serde(default)]
    pub iot_edge: bool,
}

/// A device as a client sends it in `PUT /devices/{id}`. Every field is optional and an
/// absent one is left out of what is written; read-only fields a client echoes back
/// (`etag`, `generationId`, `connectionState`, …) are ignored when read.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// `enabled` or `disabled`; kept as text so the domain can name a wrong value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<CapabilitiesSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_scopes: Option<Vec<String>>,
}

/// `authentication` as sent; absent credentials are generated (keys) or left empty.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationSpec {
    /// `sas`, `selfSigned`, `certificateAuthority` or `none`; kept as text so the domain can
    /// name a wrong value.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeySpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x509_thumbprint: Option<ThumbprintSpec>,
    /// ironhub's: the issuing CA that issued a `certificateAuthority` device's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_authority_name: Option<String>,
}

/// Keys as sent (`{}` to have both generated). `Debug` never shows them.
#[derive(Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeySpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
}

impl std::fmt::Debug for SymmetricKeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKeySpec(..)")
    }
}

/// Thumbprints as sent; a `null` one reads as absent.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ThumbprintSpec {
    pub primary_thumbprint: Option<String>,
    pub secondary_thumbprint: Option<String>,
}

/// `capabilities` as sent.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CapabilitiesSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iot_edge: Option<bool>,
}

impl From<&Device> for DeviceSpec {
    /// What a client sends back to replace a device it read: the writable fields, credentials
    /// that are `null` left out.
    fn from(d: &Device) -> Self {
        let auth = &d.authentication;
        DeviceSpec {
            device_id: Some(d.device_id.clone()),
            status: Some(d.status.as_str().to_owned()),
            status_reason: d.status_reason.clone(),
            authentication: Some(AuthenticationSpec {
                kind: Some(auth.kind.as_str().to_owned()),
                symmetric_key: Some(SymmetricKeySpec {
                    primary_key: auth.symmetric_key.primary_key.clone(),
                    secondary_key: auth.symmetric_key.secondary_key.clone(),
                }),
                x509_thumbprint: Some(ThumbprintSpec {
                    primary_thumbprint: auth.x509_thumbprint.primary_thumbprint.clone(),
                    secondary_thumbprint: auth.x509_thumbprint.secondary_thumbprint.clone(),
                }),
                certificate_authority_name: auth.certificate_authority_name.clone(),
            }),
            capabilities: Some(CapabilitiesSpec {
                iot_edge: Some(d.capabilities.iot_edge),
            }),
            device_scope: d.device_scope.clone(),
            parent_scopes: Some(d.parent_scopes.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_device_round_trips_with_unknown_fields() {
        let sent = json!({
            "deviceId": "d1", "generationId": "g", "etag": "MA==",
            "connectionState": "Connected", "status": "disabled", "statusReason": null,
            "connectionStateUpdatedTime": "0001-01-01T00:00:00Z",
            "statusUpdatedTime": "0001-01-01T00:00:00Z",
            "lastActivityTime": "0001-01-01T00:00:00Z",
            "cloudToDeviceMessageCount": 2,
            "authentication": {
                "symmetricKey": {"primaryKey": null, "secondaryKey": null},
                "x509Thumbprint": {"primaryThumbprint": "AB", "secondaryThumbprint": null},
                "type": "selfSigned"
            },
            "capabilities": {"iotEdge": true},
            "parentScopes": [],
            "someFutureField": {"x": 1}
        });
        let device: Device = serde_json::from_value(sent.clone()).unwrap();
        assert_eq!(device.status, DeviceStatus::Disabled);
        assert_eq!(device.authentication.kind, AuthType::SelfSigned);
        assert_eq!(serde_json::to_value(&device).unwrap(), sent);
    }

    #[test]
    fn a_spec_leaves_out_what_is_absent() {
        let spec = DeviceSpec {
            device_id: Some("d1".into()),
            status: Some("enabled".into()),
            authentication: Some(AuthenticationSpec {
                kind: Some("sas".into()),
                symmetric_key: Some(SymmetricKeySpec::default()),
                x509_thumbprint: None,
                certificate_authority_name: None,
            }),
            capabilities: Some(CapabilitiesSpec {
                iot_edge: Some(false),
            }),
            ..DeviceSpec::default()
        };
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"deviceId": "d1", "status": "enabled",
                   "authentication": {"type": "sas", "symmetricKey": {}},
                   "capabilities": {"iotEdge": false}})
        );
        assert!(!format!("{spec:?}").contains("primary_key"));
    }
}

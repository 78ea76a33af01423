//! A device twin: what `GET /twins/{id}` returns ([`Twin`]) and what `PATCH`/`PUT
//! /twins/{id}` send ([`TwinPatch`]). See the Azure REST API reference, IoT Hub service,
//! "Devices - Get Twin" / "Devices - Update Twin", and "Understand and use device twins in
//! IoT Hub" for the document's structure.

use serde::{Deserialize, Serialize};

use super::{AuthType, Capabilities, ConnectionState, DeviceStatus, Thumbprint};
use crate::JsonMap;

/// A twin as the registry API returns it. The identity fields are typed; `tags` and the two
/// property sections are passed through as the hub keeps them (with `$metadata` and
/// `$version`). Every field reads with a default. Fields are declared in the order of their
/// JSON names, which is the order the server has always written them in.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Twin {
    pub authentication_type: AuthType,
    pub capabilities: Capabilities,
    pub cloud_to_device_message_count: u64,
    pub connection_state: ConnectionState,
    pub device_etag: String,
    pub device_id: String,
    /// The device's own scope (an Edge device's, or the parent's for a child device); left
    /// out when the device has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_scope: Option<String>,
    pub etag: String,
    pub last_activity_time: String,
    pub model_id: String,
    /// The module's id, in a module's twin only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// The scope of the device's parent, when it has one.
    pub parent_scopes: Vec<String>,
    pub properties: TwinProperties,
    pub status: DeviceStatus,
    pub status_reason: Option<String>,
    pub status_update_time: String,
    /// Pass-through: the twin's tags.
    pub tags: JsonMap,
    pub version: u64,
    pub x509_thumbprint: Thumbprint,
    /// Pass-through: fields of another hub's answer that this version does not know.
    /// The server never fills it.
    #[serde(flatten)]
    pub other: JsonMap,
}

/// A twin's property sections.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct TwinProperties {
    /// Pass-through: desired properties with `$metadata` and `$version`.
    pub desired: JsonMap,
    /// Pass-through: reported properties with `$metadata` and `$version`.
    pub reported: JsonMap,
}

/// The body of a twin update: tags and desired properties, each left out when absent.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TwinPatch {
    /// Pass-through: tags to merge (`PATCH`) or to set (`PUT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<JsonMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<TwinPatchProperties>,
}

/// The `properties` of a twin update.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TwinPatchProperties {
    /// Pass-through: desired properties to merge (`PATCH`) or to set (`PUT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<JsonMap>,
}

impl TwinPatch {
    /// An update that sets these tags and desired properties.
    pub fn new(tags: JsonMap, desired: JsonMap) -> Self {
        TwinPatch {
            tags: Some(tags),
            properties: Some(TwinPatchProperties {
                desired: Some(desired),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_twin_reads_with_its_property_documents_untouched() {
        let twin: Twin = serde_json::from_value(json!({
            "deviceId": "d1", "etag": "AAAA", "version": 3,
            "tags": {"site": "lab"},
            "properties": {
                "desired": {"fw": 2, "$metadata": {}, "$version": 2},
                "reported": {"$version": 1}
            },
            "deviceScope": "ms-azure-iot-edge://x",
            "someFutureField": {"x": 1}
        }))
        .unwrap();
        assert_eq!(twin.tags["site"], "lab");
        assert_eq!(twin.properties.desired["$version"], 2);
        assert_eq!(twin.device_scope.as_deref(), Some("ms-azure-iot-edge://x"));
        assert_eq!(twin.other["someFutureField"]["x"], 1);
        // As the server writes it (nothing passed through): its keys in order, byte for byte
        // as a `serde_json::Value` writes it.
        let mut served = twin.clone();
        served.other.clear();
        let text = serde_json::to_string(&served).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, value.to_string());
        let mut desired = JsonMap::new();
        desired.insert("fw".into(), json!(3));
        let patch = TwinPatch::new(twin.tags.clone(), desired);
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!({"tags": {"site": "lab"}, "properties": {"desired": {"fw": 3}}})
        );
    }
}

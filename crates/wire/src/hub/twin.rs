//! A device twin: what `GET /twins/{id}` returns ([`Twin`]) and what `PATCH`/`PUT
//! /twins/{id}` send ([`TwinPatch`]). See the Azure REST API reference, IoT Hub service,
//! "Devices - Get Twin" / "Devices - Update Twin", and "Understand and use device twins in
//! IoT Hub" for the document's structure.

use serde::{Deserialize, Serialize};

use super::{AuthType, Capabilities, ConnectionState, DeviceStatus, Thumbprint};
use crate::JsonMap;

/// A twin as the registry API returns it. The identity fields are typed; `tags` and the two
/// property sections are passed through as the hub keeps them (with `$metadata` and
/// `$version`). Every field reads with a default.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Twin {
    pub device_id: String,
    pub etag: String,
    pub device_etag: String,
    pub status: DeviceStatus,
    pub status_reason: Option<String>,
    pub status_update_time: String,
    pub connection_state: ConnectionState,
    pub last_activity_time: String,
    pub cloud_to_device_message_count: u64,
    pub authentication_type: AuthType,
    pub x509_thumbprint: Thumbprint,
    pub model_id: String,
    pub version: u64,
    /// Pass-through: the twin's tags.
    pub tags: JsonMap,
    pub properties: TwinProperties,
    pub capabilities: Capabilities,
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
            "deviceScope": "ms-azure-iot-edge://x"
        }))
        .unwrap();
        assert_eq!(twin.tags["site"], "lab");
        assert_eq!(twin.properties.desired["$version"], 2);
        assert_eq!(twin.other["deviceScope"], "ms-azure-iot-edge://x");
        let mut desired = JsonMap::new();
        desired.insert("fw".into(), json!(3));
        let patch = TwinPatch::new(twin.tags.clone(), desired);
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!({"tags": {"site": "lab"}, "properties": {"desired": {"fw": 3}}})
        );
    }
}

//! Linked IoT hubs: in Azure a property of the DPS resource (`iotHubs`, Azure REST API
//! reference, Device Provisioning Service resource, "Iot Dps Resource - Get"); ironhub serves
//! them as `/dps/linkedHubs`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A linked IoT hub, in the shape of the `iotHubs` entries of the DPS resource
/// (`docs/protocol/dps-json.md` §4): `name` is the hub's host name, devices are sent there.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkedHub {
    pub name: String,
    /// An owner-level connection string (`HostName=…;SharedAccessKeyName=iothubowner;…`).
    pub connection_string: String,
    /// Relative weight for evenly weighted distribution; 1 when absent (Azure docs, "Tutorial:
    /// Provision devices across load-balanced IoT hubs").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_weight: Option<u32>,
    /// Whether the service's allocation may pick this hub for enrollments that do not name
    /// their hubs; true when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_allocation_policy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl fmt::Debug for LinkedHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string holds a key: never in logs.
        f.debug_struct("LinkedHub")
            .field("name", &self.name)
            .field("allocation_weight", &self.allocation_weight)
            .field("apply_allocation_policy", &self.apply_allocation_policy)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl LinkedHub {
    /// The weight evenly weighted distribution gives the hub.
    pub fn weight(&self) -> u32 {
        self.allocation_weight.unwrap_or(1)
    }

    /// Whether the service may pick this hub on its own.
    pub fn applies_allocation_policy(&self) -> bool {
        self.apply_allocation_policy.unwrap_or(true)
    }
}

/// A linked hub as the API shows it: the connection string's key is masked
/// (`SharedAccessKey=****`), as Azure shows the `iotHubs` of a DPS resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkedHubView {
    #[serde(flatten)]
    pub hub: LinkedHub,
    /// ironhub's addition: the round trip last measured from the DPS to the hub, in
    /// milliseconds, which lowest-latency allocation compares; absent until it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

impl From<&LinkedHub> for LinkedHubView {
    fn from(h: &LinkedHub) -> Self {
        let masked = h
            .connection_string
            .split(';')
            .map(|part| match part.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("SharedAccessKey") => format!("{k}=****"),
                _ => part.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(";");
        LinkedHubView {
            hub: LinkedHub {
                connection_string: masked,
                ..h.clone()
            },
            latency_ms: None,
        }
    }
}

/// `GET /dps/linkedHubs`: `{"value": [hub, …]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LinkedHubList {
    /// Written with each hub's keys in order, as the list always has been (a single hub is
    /// written in field order).
    #[serde(default, serialize_with = "crate::keys_in_order")]
    pub value: Vec<LinkedHubView>,
}

/// `PUT /dps/linkedHubs/{name}` body; the name comes from the path. An update without
/// `connectionString` keeps the link's own.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LinkedHubSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_allocation_policy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl fmt::Debug for LinkedHubSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string holds a key: never in logs.
        f.debug_struct("LinkedHubSpec")
            .field("allocation_weight", &self.allocation_weight)
            .field("apply_allocation_policy", &self.apply_allocation_policy)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_view_masks_the_key_and_reads_back() {
        let hub = LinkedHub {
            name: "hub1.example".into(),
            connection_string:
                "HostName=hub1.example;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0"
                    .into(),
            allocation_weight: Some(3),
            apply_allocation_policy: None,
            location: None,
            etag: Some("MQ==".into()),
        };
        let view = LinkedHubView {
            latency_ms: Some(1.5),
            ..LinkedHubView::from(&hub)
        };
        let text = serde_json::to_string(&view).unwrap();
        assert!(!text.contains("c2VjcmV0"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            json!({"name": "hub1.example",
                   "connectionString": "HostName=hub1.example;SharedAccessKeyName=iothubowner;SharedAccessKey=****",
                   "allocationWeight": 3, "etag": "MQ==", "latencyMs": 1.5})
        );
        assert!(text.starts_with(r#"{"name":"hub1.example","connectionString""#));
        let list = serde_json::to_string(&LinkedHubList {
            value: vec![view.clone()],
        })
        .unwrap();
        assert!(list.starts_with(r#"{"value":[{"allocationWeight":3,"connectionString""#));
        let back: LinkedHubView = serde_json::from_str(&text).unwrap();
        assert_eq!(back, view);
        assert!(!format!("{back:?}").contains("****"));
    }
}

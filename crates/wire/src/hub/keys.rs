//! `POST /devices/keys/regenerate`: new symmetric keys for several devices at once, what
//! `az iot hub device-identity renew-key` calls (IoT Hub's `BulkRegenerateDeviceKey` request
//! and `BulkRegenerateKeyResult` answer, in the Azure CLI's generated IoT Hub service client).

use serde::{Deserialize, Serialize};

/// The request body: which keys (`primaryKey`, `secondaryKey` or `both`) of which devices.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RegenerateRequest {
    /// `primaryKey`, `secondaryKey` or `both`; kept as text so the domain can name a wrong
    /// value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<RegenerateTarget>>,
}

/// One device (or module) whose keys to regenerate.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RegenerateTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
}

impl RegenerateTarget {
    /// A device, by id.
    pub fn device(id: &str) -> Self {
        RegenerateTarget {
            id: Some(id.to_owned()),
            module_id: None,
        }
    }
}

/// The answer, with 200 (every device re-keyed), 207 (some) or 400 (none).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RegenerateResult {
    pub policy_key: String,
    pub rotated_keys: Vec<RotatedKeys>,
    #[serde(default)]
    pub errors: Vec<RegenerateError>,
}

/// A device's keys after regeneration. `Debug` never shows them.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RotatedKeys {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    pub primary_key: String,
    pub secondary_key: String,
}

impl std::fmt::Debug for RotatedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RotatedKeys({})", self.id)
    }
}

/// A device whose keys were not regenerated, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RegenerateError {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    pub error_code: String,
    pub error_status: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_regeneration_round_trips_in_its_order() {
        let request = RegenerateRequest {
            policy_key: Some("both".into()),
            devices: Some(vec![RegenerateTarget::device("d1")]),
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"policyKey": "both", "devices": [{"id": "d1"}]})
        );
        let result = RegenerateResult {
            policy_key: "both".into(),
            rotated_keys: vec![RotatedKeys {
                id: "d1".into(),
                module_id: None,
                primary_key: "cA==".into(),
                secondary_key: "cw==".into(),
            }],
            errors: vec![RegenerateError {
                id: "d2".into(),
                module_id: None,
                error_code: "DeviceNotFound".into(),
                error_status: "no".into(),
            }],
        };
        let text = serde_json::to_string(&result).unwrap();
        assert_eq!(
            text,
            r#"{"policyKey":"both","rotatedKeys":[{"id":"d1","primaryKey":"cA==","secondaryKey":"cw=="}],"errors":[{"id":"d2","errorCode":"DeviceNotFound","errorStatus":"no"}]}"#
        );
        assert_eq!(
            serde_json::from_str::<RegenerateResult>(&text).unwrap(),
            result
        );
        assert!(!format!("{result:?}").contains("cA=="));
        // An error body is not a result.
        assert!(
            serde_json::from_value::<RegenerateResult>(json!({"Message": "x", "ErrorCode": 1}))
                .is_err()
        );
    }
}

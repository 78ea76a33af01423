//! The error bodies IoT Hub and DPS answer with.
//!
//! IoT Hub sends both the classic `Message: "ErrorCode:Name;text"` form (which the Node SDK
//! parses) and the newer `errorCode`/`trackingId`/`message`/`timestampUtc` fields; DPS sends
//! only the newer fields (its `ProvisioningServiceErrorDetails`). Azure Resource Manager
//! style answers nest theirs under `error`. [`ErrorBody`] reads all three.

use serde::{Deserialize, Serialize};

/// An error answer. Every field is optional and left out when absent. Fields are declared in
/// the order of their JSON names, which is the order the server has always written them in.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// IoT Hub's classic tracking line: `Tracking ID:…-G:0-TimeStamp:…`.
    #[serde(rename = "ExceptionMessage", skip_serializing_if = "Option::is_none")]
    pub exception_message: Option<String>,
    /// IoT Hub's classic form: `ErrorCode:DeviceNotFound;Device d1 not found.`
    #[serde(rename = "Message", skip_serializing_if = "Option::is_none")]
    pub classic_message: Option<String>,
    /// Azure Resource Manager's nested form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// The six-digit error code (`404001`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_utc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
}

/// `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct ErrorDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ErrorBody {
    /// The human text, whichever form carried it (classic first).
    pub fn text(&self) -> Option<&str> {
        self.classic_message
            .as_deref()
            .or(self.message.as_deref())
            .or_else(|| self.error.as_ref().and_then(|e| e.message.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_form_reads() {
        let hub: ErrorBody = serde_json::from_value(json!({
            "Message": "ErrorCode:DeviceNotFound;Device d1 not found.",
            "ExceptionMessage": "Tracking ID:x-G:0-TimeStamp:y",
            "errorCode": 404001, "trackingId": "x", "message": "Device d1 not found.",
            "timestampUtc": "2026-01-01T00:00:00.0000000Z"
        }))
        .unwrap();
        // Written with its keys in order, byte for byte as a `serde_json::Value` writes it.
        let text = serde_json::to_string(&hub).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, value.to_string());
        assert_eq!(
            hub.text(),
            Some("ErrorCode:DeviceNotFound;Device d1 not found.")
        );
        let dps: ErrorBody =
            serde_json::from_value(json!({"errorCode": 401002, "message": "no"})).unwrap();
        assert_eq!((dps.error_code, dps.text()), (Some(401002), Some("no")));
        let arm: ErrorBody =
            serde_json::from_value(json!({"error": {"code": "X", "message": "arm"}})).unwrap();
        assert_eq!(arm.text(), Some("arm"));
        assert_eq!(
            serde_json::to_value(&dps).unwrap(),
            json!({"errorCode": 401002, "message": "no"})
        );
    }
}

//! The health of routing endpoints as IoT Hub's ARM resource answers it
//! (`GET …/IotHubs/{name}/routingEndpointsHealth`: `EndpointHealthDataListResult`, a `value`
//! list of `EndpointHealthData`). Times are RFC 1123 (`Wed, 13 Sep 2022 18:04:32 GMT`), as ARM
//! renders them.

use serde::{Deserialize, Serialize};

/// ARM's `healthStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointHealthStatus {
    /// Nothing was delivered to or refused by the endpoint yet.
    #[default]
    Unknown,
    /// The endpoint takes messages.
    Healthy,
    /// Some of the endpoint's partitions deliver while others retry.
    Degraded,
    /// The endpoint refuses messages and they are being retried.
    Unhealthy,
    /// The endpoint refused messages until they were dead-lettered.
    Dead,
}

/// ARM's `EndpointHealthData`: one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHealth {
    pub endpoint_id: String,
    pub health_status: EndpointHealthStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_known_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_known_error_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_send_attempt_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_send_attempt_time: Option<String>,
}

/// ARM's `EndpointHealthDataListResult`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EndpointHealthList {
    pub value: Vec<EndpointHealth>,
    #[serde(default, rename = "nextLink", skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// A time as ARM renders it in `EndpointHealthData` (RFC 1123, GMT).
pub fn arm_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_arms_shape() {
        let time = chrono::DateTime::parse_from_rfc3339("2022-09-13T18:04:32Z")
            .map(|t| t.to_utc())
            .ok();
        let list = EndpointHealthList {
            value: vec![EndpointHealth {
                endpoint_id: "id3".into(),
                health_status: EndpointHealthStatus::Unhealthy,
                last_known_error: Some("NotFound".into()),
                last_known_error_time: time.map(arm_time),
                ..EndpointHealth::default()
            }],
            next_link: None,
        };
        assert_eq!(
            serde_json::to_value(&list).ok(),
            Some(serde_json::json!({"value": [{
                "endpointId": "id3", "healthStatus": "unhealthy", "lastKnownError": "NotFound",
                "lastKnownErrorTime": "Tue, 13 Sep 2022 18:04:32 GMT"}]}))
        );
    }
}

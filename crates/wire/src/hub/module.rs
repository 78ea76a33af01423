//! A module identity: what `GET /devices/{id}/modules/{mid}` returns ([`Module`]) and what
//! `PUT /devices/{id}/modules/{mid}` accepts ([`ModuleSpec`]). See the Azure REST API
//! reference, IoT Hub service, "Modules - Create Or Update Identity".

use serde::{Deserialize, Serialize};

use super::device::{Authentication, AuthenticationSpec, ConnectionState};

/// A module as the registry API returns it. Every field is read with a default.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Module {
    pub module_id: String,
    pub device_id: String,
    /// Who manages the module (`iotEdge` for the IoT Edge runtime's own); `null` when unset.
    pub managed_by: Option<String>,
    pub generation_id: String,
    pub etag: String,
    pub connection_state: ConnectionState,
    pub connection_state_updated_time: String,
    pub last_activity_time: String,
    pub cloud_to_device_message_count: u64,
    pub authentication: Authentication,
}

/// A module as a client sends it; read-only fields it echoes back are ignored.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModuleSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationSpec>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_reads_what_the_python_sdk_sends() {
        let spec: ModuleSpec = serde_json::from_str(
            r#"{"moduleId":"m","deviceId":"d","managedBy":null,"etag":"x",
                "authentication":{"type":"sas","symmetricKey":{"primaryKey":"","secondaryKey":""}}}"#,
        )
        .unwrap();
        assert_eq!(spec.module_id.as_deref(), Some("m"));
        assert_eq!(spec.managed_by, None);
        assert_eq!(spec.authentication.unwrap().kind.as_deref(), Some("sas"));
    }
}

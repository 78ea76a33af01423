//! The device registration API: what a device sends to register and the operation status it
//! polls (Azure REST API reference, Device Provisioning Service, "Runtime Registration -
//! Register Device" and "Operation Status Lookup"), and the registration state the service
//! API shows ("Device Registration State - Get").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TpmAttestation;
use crate::time;

/// Where a registration stands (`docs/protocol/dps-json.md` §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RegistrationStatus {
    Unassigned,
    Assigning,
    Assigned,
    Failed,
    Disabled,
}

/// How the latest assignment came about (`docs/protocol/dps-json.md` §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Substatus {
    /// Assigned to a hub for the first time (or again, keeping its data on the same hub).
    InitialAssignment,
    /// Moved to another hub, with its twin carried over.
    DeviceDataMigrated,
    /// Given the enrollment's initial twin again (on a new hub or on the same one).
    DeviceDataReset,
    /// Kept on the hub it was assigned to before (never re-provision).
    ReprovisionedToInitialAssignment,
}

/// A device's registration record ("registration state").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationState {
    pub registration_id: String,
    #[serde(default, with = "time", skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub status: RegistrationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<Substatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, with = "time", skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// A custom allocation's payload for the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// For a TPM device: its hub key, sealed to its TPM as in the challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmRegistrationResult>,
    /// For a device that sent a CSR: the certificate issued to it, then its issuers (base64
    /// DER, API `2025-07-01-preview`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_certificate_chain: Option<Vec<String>>,
}

/// What a TPM device gets back on assignment: `{"authenticationKey"}`, which it imports into
/// its TPM (the Node SDK's `activateIdentityKey`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmRegistrationResult {
    pub authentication_key: String,
}

/// The answer (HTTP 401) to a TPM device's first register request over HTTPS, which has its
/// TPM's keys and no token: the key sealed to the TPM, which the device imports, and the key
/// name its SAS token is then signed with (`registration`). See `docs/protocol/tpm.md`, "The
/// exchange".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmChallenge {
    /// The sealed key (base64), as in [`TpmRegistrationResult`].
    pub authentication_key: String,
    pub key_name: String,
    /// ironhub's addition: what the device does next.
    #[serde(default)]
    pub message: String,
}

/// The answer to a device's register or poll: `{"operationId", "status", "registrationState"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationOperationStatus {
    pub operation_id: String,
    pub status: RegistrationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationState>,
}

/// What a device sends to register (`docs/protocol/dps-json.md` §1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistration {
    #[serde(default)]
    pub registration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmAttestation>,
    /// Opaque JSON for custom allocation (PYDEV sends `null` when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// A PKCS#10 certificate signing request (base64 DER): the device asks for an
    /// operational certificate (API `2025-07-01-preview`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_results_have_the_shape_devices_parse() {
        // docs/protocol/dps-json.md §2.
        let state = DeviceRegistrationState {
            registration_id: "reg-1".into(),
            created_date_time_utc: None,
            assigned_hub: Some("localhost".into()),
            device_id: Some("reg-1".into()),
            status: RegistrationStatus::Assigned,
            substatus: Some(Substatus::InitialAssignment),
            error_code: None,
            error_message: None,
            last_updated_date_time_utc: None,
            etag: Some("IjAwMDAi".into()),
            payload: None,
            tpm: None,
            issued_certificate_chain: None,
        };
        let op = RegistrationOperationStatus {
            operation_id: "4.abc.1f0c".into(),
            status: RegistrationStatus::Assigned,
            registration_state: Some(state),
        };
        let text = serde_json::to_string(&op).unwrap();
        // Tasmota looks for this exact compact substring (docs/protocol/dps-json.md §2).
        assert!(text.contains("\"status\":\"assigned\""));
        assert!(text.contains("\"substatus\":\"initialAssignment\""));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["registrationState"]["assignedHub"], "localhost");
        assert_eq!(
            serde_json::to_value(Substatus::ReprovisionedToInitialAssignment).unwrap(),
            "reprovisionedToInitialAssignment"
        );
        let challenge = TpmChallenge {
            authentication_key: "a2V5".into(),
            key_name: "registration".into(),
            message: "m".into(),
        };
        assert_eq!(
            serde_json::to_string(&challenge).unwrap(),
            r#"{"authenticationKey":"a2V5","keyName":"registration","message":"m"}"#
        );
    }
}

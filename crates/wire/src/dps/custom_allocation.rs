//! Custom allocation: the request DPS sends the enrollment's webhook and the answer it reads
//! back (Azure docs, "How to use custom allocation policies", and "Tutorial: Use custom
//! allocation policies with Device Provisioning Service (DPS)", which shows both bodies).

use serde::{Deserialize, Serialize};

use super::{EnrollmentGroup, IndividualEnrollment, InitialTwin, X509CertificateInfo};
use crate::JsonMap;

/// The body of the webhook call: the enrollment (without its secrets) under its kind's name,
/// what DPS knows of the device, and the hubs it may be assigned to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomAllocationRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub individual_enrollment: Option<IndividualEnrollment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group: Option<EnrollmentGroup>,
    pub device_runtime_context: DeviceRuntimeContext,
    /// The host names of the candidate hubs.
    #[serde(default)]
    pub linked_hubs: Vec<String>,
}

/// What DPS knows of the device when it calls the webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRuntimeContext {
    pub registration_id: String,
    /// The hub and device id of the device's current assignment, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_iot_hub_host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_device_id: Option<String>,
    /// `{}` for a symmetric key device: the keys are never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<JsonMap>,
    /// The device certificate's information, for an X.509 device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509CertificateInfo>,
    /// Pass-through: the device's custom payload, as it sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// What the webhook answers: the hub, and optionally an initial twin and a payload for the
/// device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CustomAllocationResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    /// Pass-through: the payload handed to the device in its registration state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

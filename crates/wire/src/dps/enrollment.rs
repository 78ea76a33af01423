//! Individual enrollments and enrollment groups (Azure REST API reference, Device
//! Provisioning Service: "Individual Enrollment - Create Or Update", "Enrollment Group -
//! Create Or Update").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AttestationMechanism, DeviceRegistrationState};
use crate::time;

/// Device capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCapabilities {
    #[serde(default)]
    pub iot_edge: bool,
}

/// The desired properties of an initial twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InitialTwinProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The twin a device starts with: `{"tags": {…}, "properties": {"desired": {…}}}` (Azure
/// docs, "How to transfer payloads between devices and DPS").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InitialTwin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<InitialTwinProperties>,
}

/// Whether an enrollment may provision devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ProvisioningStatus {
    #[default]
    #[serde(rename = "enabled", alias = "Enabled")]
    Enabled,
    #[serde(rename = "disabled", alias = "Disabled")]
    Disabled,
}

/// What DPS does with a device that registers again (Azure docs, "IoT Hub Device
/// reprovisioning concepts", section "Reprovisioning policies"):
/// `{true, true}` re-provision and migrate data (the default), `{true, false}` re-provision
/// and reset to the initial config, `updateHubAssignment: false` never re-provision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReprovisionPolicy {
    #[serde(default = "yes")]
    pub update_hub_assignment: bool,
    #[serde(default = "yes")]
    pub migrate_device_data: bool,
}

fn yes() -> bool {
    true
}

impl Default for ReprovisionPolicy {
    fn default() -> Self {
        ReprovisionPolicy {
            update_hub_assignment: true,
            migrate_device_data: true,
        }
    }
}

/// How DPS picks a hub (Azure docs, "IoT Hub Device Provisioning Service (DPS)
/// terminology", section "Allocation policy").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AllocationPolicy {
    /// Evenly weighted distribution, the default (`Hashed` in ARM).
    #[default]
    #[serde(rename = "hashed", alias = "Hashed")]
    Hashed,
    /// Lowest latency.
    #[serde(rename = "geoLatency", alias = "GeoLatency", alias = "geolatency")]
    GeoLatency,
    /// The hub named in the enrollment.
    #[serde(rename = "static", alias = "Static")]
    Static,
    /// A webhook decides.
    #[serde(rename = "custom", alias = "Custom")]
    Custom,
}

/// The webhook custom allocation calls (`docs/protocol/dps-json.md` §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CustomAllocationDefinition {
    #[serde(default)]
    pub webhook_url: String,
    #[serde(default)]
    pub api_version: String,
}

/// Which issuing CA signs the certificates of an enrollment's devices (DPS's
/// `clientCertificateIssuancePolicy`, as the Azure DPS service SDKs model it; the default CA
/// when it names none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificateIssuancePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_name: Option<String>,
}

/// The settings individual enrollments and enrollment groups share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentSettings {
    #[serde(default)]
    pub attestation: AttestationMechanism,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<DeviceCapabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_status: Option<ProvisioningStatus>,
    /// `None` when never set: the default applies, except for devices on a pre-reprovisioning
    /// API version (Azure docs, "IoT Hub Device reprovisioning concepts", section "Managing
    /// backwards compatibility").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    #[serde(default, with = "time", skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<DateTime<Utc>>,
    #[serde(default, with = "time", skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<DateTime<Utc>>,
    /// `None`: the service's default, evenly weighted distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<AllocationPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hubs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_allocation_definition: Option<CustomAllocationDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_issuance_policy: Option<ClientCertificateIssuancePolicy>,
}

impl EnrollmentSettings {
    /// Settings with this attestation and nothing else.
    pub fn new(attestation: AttestationMechanism) -> Self {
        EnrollmentSettings {
            attestation,
            capabilities: None,
            iot_hub_host_name: None,
            initial_twin: None,
            etag: None,
            provisioning_status: None,
            reprovision_policy: None,
            created_date_time_utc: None,
            last_updated_date_time_utc: None,
            allocation_policy: None,
            iot_hubs: None,
            custom_allocation_definition: None,
            client_certificate_issuance_policy: None,
        }
    }

    /// The issuing CA the enrollment names, if any.
    pub fn certificate_authority_name(&self) -> Option<&str> {
        self.client_certificate_issuance_policy
            .as_ref()
            .and_then(|p| p.certificate_authority_name.as_deref())
    }

    /// Whether the enrollment provisions devices.
    pub fn is_enabled(&self) -> bool {
        self.provisioning_status.unwrap_or_default() == ProvisioningStatus::Enabled
    }

    /// Whether devices of this enrollment are IoT Edge devices.
    pub fn iot_edge(&self) -> bool {
        self.capabilities.is_some_and(|c| c.iot_edge)
    }
}

/// An individual enrollment: one device, by registration id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndividualEnrollment {
    #[serde(default)]
    pub registration_id: String,
    /// The IoT Hub device id; the registration id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The device's registration, when it has registered (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationState>,
    #[serde(flatten)]
    pub settings: EnrollmentSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional_device_information: Option<serde_json::Value>,
}

/// An enrollment group: the devices that share an attestation (a group key or a CA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentGroup {
    #[serde(default)]
    pub enrollment_group_id: String,
    #[serde(flatten)]
    pub settings: EnrollmentSettings,
}

/// What individual enrollments and enrollment groups share, for code that handles both
/// (the service API's paths, the domain's rules, the CLI's updates).
pub trait EnrollmentRecord:
    Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
    /// The collection's path in the service API: `/enrollments` or `/enrollmentGroups`.
    const COLLECTION_PATH: &'static str;

    /// The id (`registrationId` or `enrollmentGroupId`).
    fn id(&self) -> &str;
    fn set_id(&mut self, id: &str);
    fn settings(&self) -> &EnrollmentSettings;
    fn settings_mut(&mut self) -> &mut EnrollmentSettings;
}

impl EnrollmentRecord for IndividualEnrollment {
    const COLLECTION_PATH: &'static str = "/enrollments";

    fn id(&self) -> &str {
        &self.registration_id
    }
    fn set_id(&mut self, id: &str) {
        id.clone_into(&mut self.registration_id);
    }
    fn settings(&self) -> &EnrollmentSettings {
        &self.settings
    }
    fn settings_mut(&mut self) -> &mut EnrollmentSettings {
        &mut self.settings
    }
}

impl EnrollmentRecord for EnrollmentGroup {
    const COLLECTION_PATH: &'static str = "/enrollmentGroups";

    fn id(&self) -> &str {
        &self.enrollment_group_id
    }
    fn set_id(&mut self, id: &str) {
        id.clone_into(&mut self.enrollment_group_id);
    }
    fn settings(&self) -> &EnrollmentSettings {
        &self.settings
    }
    fn settings_mut(&mut self) -> &mut EnrollmentSettings {
        &mut self.settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dps::AttestationType;
    use serde_json::json;

    #[test]
    fn group_json_from_the_custom_allocation_tutorial_round_trips() {
        // An enrollment group as DPS sends it to a custom allocation webhook (Azure docs,
        // "Tutorial: Use custom allocation policies with Device Provisioning Service (DPS)").
        let sent = json!({
            "enrollmentGroupId": "contoso-custom-allocated-devices",
            "attestation": { "type": "symmetricKey" },
            "capabilities": { "iotEdge": false },
            "etag": "\"e8002126-0000-0100-0000-5f6b2a570000\"",
            "provisioningStatus": "enabled",
            "reprovisionPolicy": { "updateHubAssignment": true, "migrateDeviceData": true },
            "createdDateTimeUtc": "2024-02-03T04:05:06.12345Z",
            "lastUpdatedDateTimeUtc": "2024-02-03T04:05:06.12345Z",
            "allocationPolicy": "custom",
            "iotHubs": ["hub-a.example.net"],
            "customAllocationDefinition": {
                "webhookUrl": "https://allocator.example.net/api/allocate?code=secret",
                "apiVersion": "2019-03-31"
            }
        });
        let group: EnrollmentGroup = serde_json::from_value(sent.clone()).unwrap();
        assert_eq!(
            group.settings.allocation_policy,
            Some(AllocationPolicy::Custom)
        );
        assert_eq!(
            group.settings.reprovision_policy,
            Some(ReprovisionPolicy::default())
        );
        assert!(group.settings.is_enabled());
        let back = serde_json::to_value(&group).unwrap();
        assert_eq!(back["enrollmentGroupId"], sent["enrollmentGroupId"]);
        assert_eq!(back["attestation"], sent["attestation"]);
        assert_eq!(
            back["customAllocationDefinition"],
            sent["customAllocationDefinition"]
        );
        assert_eq!(back["createdDateTimeUtc"], "2024-02-03T04:05:06.1234500Z");
    }

    #[test]
    fn sdk_enrollment_json_parses() {
        // What the Node sample and the Python SDK send (docs/protocol/dps-json.md §3: the
        // SDKs send `symmetricKey: {}` to have keys generated).
        let node: IndividualEnrollment = serde_json::from_value(json!({
            "registrationId": "first",
            "attestation": { "type": "tpm", "tpm": { "endorsementKey": "AToAAQAL" } }
        }))
        .unwrap();
        assert_eq!(node.settings.attestation.kind, AttestationType::Tpm);
        let py: IndividualEnrollment = serde_json::from_value(json!({
            "registrationId": "reg-1",
            "deviceId": "dev-1",
            "attestation": { "type": "symmetricKey", "symmetricKey": {} },
            "capabilities": { "iotEdge": true },
            "initialTwin": { "tags": { "a": 1 }, "properties": { "desired": { "b": 2 } } },
            "provisioningStatus": "disabled",
            "allocationPolicy": "geoLatency",
            "someFutureField": 7
        }))
        .unwrap();
        assert!(py.settings.iot_edge());
        assert!(!py.settings.is_enabled());
        assert_eq!(
            py.settings.allocation_policy,
            Some(AllocationPolicy::GeoLatency)
        );
        let out = serde_json::to_value(&py).unwrap();
        assert_eq!(out["initialTwin"]["properties"]["desired"]["b"], 2);
        assert!(out.get("registrationState").is_none());
        assert!(out.get("someFutureField").is_none());
    }
}

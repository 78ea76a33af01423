//! The DPS service API's JSON, as the service SDKs send and parse it (`azure-iot-deviceprovisioning`
//! and npm `azure-iot-provisioning-service`, api-version 2021-10-01; `clients.md` §7), and the
//! registration results devices parse (`clients.md` §4.1).
//!
//! Unknown fields are ignored and absent optional fields are left out of what is written, so a
//! client can send back what it read (seed 004 L9005–L9017: the Node sample updates the object
//! the server returned).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Timestamps as DPS writes them: ISO-8601 UTC with 7 fractional digits
/// (`2021-10-06T03:51:16.6849749Z`, seed 004 L10770). Any RFC 3339 time is read.
pub mod time {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// `2021-10-06T03:51:16.6849749Z`.
    pub fn format(t: &DateTime<Utc>) -> String {
        format!(
            "{}.{:07}Z",
            t.format("%Y-%m-%dT%H:%M:%S"),
            t.timestamp_subsec_nanos() / 100
        )
    }

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.filter(|t| !t.is_empty())
            .map(|t| {
                DateTime::parse_from_rfc3339(&t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

/// How a device proves its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttestationType {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "tpm", alias = "TPM", alias = "Tpm")]
    Tpm,
    #[serde(rename = "x509", alias = "X509")]
    X509,
    #[serde(
        rename = "symmetricKey",
        alias = "SymmetricKey",
        alias = "symmetrickey"
    )]
    SymmetricKey,
}

impl AttestationType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttestationType::None => "none",
            AttestationType::Tpm => "tpm",
            AttestationType::X509 => "x509",
            AttestationType::SymmetricKey => "symmetricKey",
        }
    }
}

/// A pair of symmetric keys (base64). `Debug` never shows them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyAttestation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
}

impl fmt::Debug for SymmetricKeyAttestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKeyAttestation(..)")
    }
}

/// A TPM's keys (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TpmAttestation {
    #[serde(default)]
    pub endorsement_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_root_key: Option<String>,
}

/// What DPS shows about a certificate it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateInfo {
    pub subject_name: String,
    pub sha1_thumbprint: String,
    pub sha256_thumbprint: String,
    pub issuer_name: String,
    #[serde(default, with = "time", skip_serializing_if = "Option::is_none")]
    pub not_before_utc: Option<DateTime<Utc>>,
    #[serde(default, with = "time", skip_serializing_if = "Option::is_none")]
    pub not_after_utc: Option<DateTime<Utc>>,
    pub serial_number: String,
    pub version: u32,
}

/// A certificate slot: the PEM a client uploads, and the information DPS derives from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateWithInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<X509CertificateInfo>,
}

/// A primary and an optional secondary certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509Certificates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<X509CertificateWithInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<X509CertificateWithInfo>,
}

/// Names of CA certificates uploaded to the provisioning service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509CaReferences {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
}

/// X.509 attestation: the device's own certificates (individual enrollments), the signing
/// certificates of a group (root or intermediate), or references to uploaded CAs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509Attestation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificates: Option<X509Certificates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificates: Option<X509Certificates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_references: Option<X509CaReferences>,
}

/// How devices of an enrollment attest. Absent in a request, it is `none`, which every write
/// refuses with a clear message (a bulk delete needs only the ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationMechanism {
    #[serde(rename = "type")]
    pub kind: AttestationType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmAttestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509Attestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyAttestation>,
}

impl Default for AttestationMechanism {
    fn default() -> Self {
        AttestationMechanism {
            kind: AttestationType::None,
            tpm: None,
            x509: None,
            symmetric_key: None,
        }
    }
}

impl AttestationMechanism {
    /// Symmetric key attestation with the given keys (`None` to have them generated).
    pub fn symmetric_key(primary: Option<&str>, secondary: Option<&str>) -> Self {
        AttestationMechanism {
            kind: AttestationType::SymmetricKey,
            tpm: None,
            x509: None,
            symmetric_key: Some(SymmetricKeyAttestation {
                primary_key: primary.map(str::to_owned),
                secondary_key: secondary.map(str::to_owned),
            }),
        }
    }

    /// The same mechanism without secrets or certificates: symmetric keys and certificate
    /// PEMs removed, certificate `info` kept. DPS answers `GET` and queries this way since
    /// api-version 2019-03-31 (the keys come from the attestation-mechanism call, which is
    /// why `az iot dps enrollment show` has `--show-keys`).
    pub fn without_secrets(&self) -> Self {
        let mut m = self.without_certificates();
        if let Some(k) = m.symmetric_key.as_mut() {
            *k = SymmetricKeyAttestation::default();
        }
        m
    }

    /// The same mechanism with certificate PEMs removed (`info` kept) and keys kept: what
    /// the attestation-mechanism call and a create-or-update answer with.
    pub fn without_certificates(&self) -> Self {
        let mut m = self.clone();
        if let Some(x) = m.x509.as_mut() {
            for certs in [&mut x.client_certificates, &mut x.signing_certificates]
                .into_iter()
                .flatten()
            {
                for slot in [&mut certs.primary, &mut certs.secondary]
                    .into_iter()
                    .flatten()
                {
                    slot.certificate = None;
                }
            }
        }
        m
    }
}

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

/// The twin a device starts with: `{"tags": {…}, "properties": {"desired": {…}}}` (seed 004
/// L8091–L8099, L10708–L10715).
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

/// What DPS does with a device that registers again (seed 004 L7294–L7304):
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

/// How DPS picks a hub (seed 004 L6189–L6195).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AllocationPolicy {
    /// Evenly weighted distribution, the default (`Hashed` in ARM, seed 004 L811).
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

/// The webhook custom allocation calls (seed 004 L4517–L4518).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CustomAllocationDefinition {
    #[serde(default)]
    pub webhook_url: String,
    #[serde(default)]
    pub api_version: String,
}

/// Which issuing CA signs the certificates of an enrollment's devices (DPS's
/// `clientCertificateIssuancePolicy`; the default CA when it names none).
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
    /// API version (seed 004 L7332–L7348).
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

/// Where a registration stands (`clients.md` §4.1; seed 004 L8763–L8768).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RegistrationStatus {
    Unassigned,
    Assigning,
    Assigned,
    Failed,
    Disabled,
}

/// How the latest assignment came about (`clients.md` §4.1).
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

/// The answer to a device's register or poll: `{"operationId", "status", "registrationState"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationOperationStatus {
    pub operation_id: String,
    pub status: RegistrationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationState>,
}

/// What a device sends to register (`clients.md` §4; seed 004 L8073–L8081).
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

/// `POST …/query` body: `{"query": "SELECT *"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct QuerySpecification {
    #[serde(default)]
    pub query: String,
}

/// How a bulk operation applies each item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BulkMode {
    /// Only new records (409 for an existing one).
    #[serde(rename = "create", alias = "Create")]
    Create,
    /// Create or replace, whatever the etag.
    #[serde(rename = "update", alias = "Update")]
    Update,
    /// Replace an existing record whose etag is the item's (412 otherwise).
    #[serde(
        rename = "updateIfMatchETag",
        alias = "UpdateIfMatchETag",
        alias = "updateIfMatchEtag"
    )]
    UpdateIfMatchEtag,
    /// Delete an existing record (conditioned on the item's etag when it has one).
    #[serde(rename = "delete", alias = "Delete")]
    Delete,
}

/// `POST /enrollments`: up to 10 individual enrollments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperation {
    pub mode: BulkMode,
    #[serde(default)]
    pub enrollments: Vec<IndividualEnrollment>,
}

/// `POST /enrollmentGroups`: up to 10 enrollment groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentGroupOperation {
    pub mode: BulkMode,
    #[serde(default)]
    pub enrollment_groups: Vec<EnrollmentGroup>,
}

/// One failed item of a bulk operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperationError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
    pub error_code: u32,
    pub error_status: String,
}

/// The result of a bulk operation. ironhub applies all items or none (see `DESIGN.md`), so
/// `errors` lists every item that kept the batch from being applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperationResult {
    pub is_successful: bool,
    pub errors: Vec<BulkEnrollmentOperationError>,
}

/// A linked IoT hub, in the shape of the `iotHubs` entries of the DPS resource (seed 004
/// L817–L821): `name` is the hub's host name, devices are sent there.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkedHub {
    pub name: String,
    /// An owner-level connection string (`HostName=…;SharedAccessKeyName=iothubowner;…`).
    pub connection_string: String,
    /// Relative weight for evenly weighted distribution; 1 when absent (seed 004 L5618).
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_have_seven_fractional_digits() {
        let t = DateTime::parse_from_rfc3339("2021-10-06T03:51:16.684974912Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(time::format(&t), "2021-10-06T03:51:16.6849749Z");
        let whole = DateTime::parse_from_rfc3339("2020-09-23T10:58:31Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(time::format(&whole), "2020-09-23T10:58:31.0000000Z");
    }

    #[test]
    fn group_json_from_the_seed_round_trips() {
        // The enrollment group DPS sends to a custom allocation webhook (seed 004 L4510-L4518,
        // L4578).
        let seed = json!({
            "enrollmentGroupId": "contoso-custom-allocated-devices",
            "attestation": { "type": "symmetricKey" },
            "capabilities": { "iotEdge": false },
            "etag": "\"e8002126-0000-0100-0000-5f6b2a570000\"",
            "provisioningStatus": "enabled",
            "reprovisionPolicy": { "updateHubAssignment": true, "migrateDeviceData": true },
            "createdDateTimeUtc": "2020-09-23T10:58:31.62286Z",
            "lastUpdatedDateTimeUtc": "2020-09-23T10:58:31.62286Z",
            "allocationPolicy": "custom",
            "iotHubs": ["contoso-toasters-hub-1098.azure-devices.net"],
            "customAllocationDefinition": {
                "webhookUrl": "https://contoso-function-app.azurewebsites.net/api/HttpTrigger1?*****",
                "apiVersion": "2019-03-31"
            }
        });
        let group: EnrollmentGroup = serde_json::from_value(seed.clone()).unwrap();
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
        assert_eq!(back["enrollmentGroupId"], seed["enrollmentGroupId"]);
        assert_eq!(back["attestation"], seed["attestation"]);
        assert_eq!(
            back["customAllocationDefinition"],
            seed["customAllocationDefinition"]
        );
        assert_eq!(back["createdDateTimeUtc"], "2020-09-23T10:58:31.6228600Z");
    }

    #[test]
    fn sdk_enrollment_json_parses() {
        // What the Node sample and the Python SDK send (seed 004 L8990-L9003, L9429-L9437;
        // clients.md §7: the SDKs send `symmetricKey: {}` to have keys generated).
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

    #[test]
    fn registration_results_have_the_shape_devices_parse() {
        // clients.md §4.1.
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
        // Tasmota looks for this exact compact substring (clients.md §5.2).
        assert!(text.contains("\"status\":\"assigned\""));
        assert!(text.contains("\"substatus\":\"initialAssignment\""));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["registrationState"]["assignedHub"], "localhost");
        assert_eq!(
            serde_json::to_value(Substatus::ReprovisionedToInitialAssignment).unwrap(),
            "reprovisionedToInitialAssignment"
        );
    }

    #[test]
    fn secrets_are_removed_for_reads() {
        let mut m = AttestationMechanism::symmetric_key(Some("a2V5"), Some("a2V5"));
        assert!(!format!("{m:?}").contains("a2V5"));
        let bare = m.without_secrets();
        assert_eq!(bare.symmetric_key, Some(SymmetricKeyAttestation::default()));
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            json!({ "type": "symmetricKey", "symmetricKey": {} })
        );
        m.kind = AttestationType::X509;
        m.symmetric_key = None;
        m.x509 = Some(X509Attestation {
            client_certificates: Some(X509Certificates {
                primary: Some(X509CertificateWithInfo {
                    certificate: Some("PEM".into()),
                    info: Some(X509CertificateInfo::default()),
                }),
                secondary: None,
            }),
            ..X509Attestation::default()
        });
        let shown = m.without_certificates();
        let slot = shown
            .x509
            .unwrap()
            .client_certificates
            .unwrap()
            .primary
            .unwrap();
        assert!(slot.certificate.is_none());
        assert!(slot.info.is_some());
    }

    #[test]
    fn bulk_shapes() {
        let op: BulkEnrollmentOperation = serde_json::from_value(json!({
            "mode": "updateIfMatchETag",
            "enrollments": [{ "registrationId": "a", "attestation": { "type": "symmetricKey" } }]
        }))
        .unwrap();
        assert_eq!(op.mode, BulkMode::UpdateIfMatchEtag);
        let result = BulkEnrollmentOperationResult {
            is_successful: false,
            errors: vec![BulkEnrollmentOperationError {
                registration_id: Some("a".into()),
                enrollment_group_id: None,
                error_code: 409_001,
                error_status: "exists".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(result).unwrap(),
            json!({ "isSuccessful": false, "errors": [
                { "registrationId": "a", "errorCode": 409001, "errorStatus": "exists" }
            ]})
        );
    }
}

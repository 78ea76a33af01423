//! Service operations of IoT Hub and DPS, each with what it takes: the shared access policy
//! rights that allow it (any one of them) and the data action a role must grant
//! ([`crate::roles`]). This is the one table from operation to permission; the hub and DPS
//! domains check a caller against it, whatever the transport.
//!
//! Data actions are Azure's (Azure docs, "Control access to IoT Hub by using Microsoft Entra
//! ID" and "Control access to DPS with Azure AD"). Operations Azure keeps on its control plane
//! (CA certificates, routing, linked hubs, the Event Hubs-compatible stream) get a data
//! action of ironhub's own in the same namespace, so the built-in readers and contributors
//! cover them the way their wildcards read.

use std::sync::Arc;

use crate::Rights;
use crate::oidc::{Identity, Oidc, OidcError};

/// A service operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    // IoT Hub
    DeviceRead,
    DeviceWrite,
    DeviceDelete,
    TwinRead,
    TwinWrite,
    Query,
    RegistryStatistics,
    ServiceStatistics,
    MethodInvoke,
    C2dSend,
    C2dFeedback,
    C2dPurge,
    FileNotifications,
    DigitalTwinRead,
    DigitalTwinWrite,
    DigitalTwinInvoke,
    EventsRead,
    EventsWrite,
    RoutingRead,
    RoutingWrite,
    HubCertificatesRead,
    HubCertificatesWrite,
    NetworkRulesRead,
    NetworkRulesWrite,
    // DPS
    EnrollmentRead,
    EnrollmentWrite,
    EnrollmentDelete,
    GroupRead,
    GroupWrite,
    GroupDelete,
    AttestationMechanism,
    RegistrationRead,
    RegistrationDelete,
    LinkedHubsRead,
    LinkedHubsWrite,
    DpsCertificatesRead,
    DpsCertificatesWrite,
    DpsNetworkRulesRead,
    DpsNetworkRulesWrite,
}

const HUB: &str = "Microsoft.Devices/IotHubs/";
const DPS: &str = "Microsoft.Devices/provisioningServices/";

impl Operation {
    /// The policy rights that allow it: any one of them.
    pub fn rights(self) -> &'static [Rights] {
        use Operation::*;
        match self {
            DeviceRead | Query | RegistryStatistics | RoutingRead | HubCertificatesRead
            | NetworkRulesRead => &[Rights::REGISTRY_READ],
            DeviceWrite | DeviceDelete | RoutingWrite | HubCertificatesWrite
            | NetworkRulesWrite => &[Rights::REGISTRY_WRITE],
            // IoT Hub lets ServiceConnect (the `service` policy) read twins too.
            TwinRead | DigitalTwinRead => &[Rights::SERVICE_CONNECT, Rights::REGISTRY_READ],
            TwinWrite | ServiceStatistics | MethodInvoke | C2dSend | C2dFeedback | C2dPurge
            | FileNotifications | DigitalTwinWrite | DigitalTwinInvoke | EventsRead
            | EventsWrite => &[Rights::SERVICE_CONNECT],
            EnrollmentRead | GroupRead | DpsNetworkRulesRead => &[Rights::ENROLLMENT_READ],
            EnrollmentWrite | EnrollmentDelete | GroupWrite | GroupDelete
            | AttestationMechanism | DpsNetworkRulesWrite => &[Rights::ENROLLMENT_WRITE],
            RegistrationRead => &[Rights::REGISTRATION_STATUS_READ],
            RegistrationDelete => &[Rights::REGISTRATION_STATUS_WRITE],
            LinkedHubsRead | LinkedHubsWrite | DpsCertificatesRead | DpsCertificatesWrite => {
                &[Rights::SERVICE_CONFIG]
            }
        }
    }

    /// The data action a role must grant, relative to its service's namespace.
    fn action(self) -> (&'static str, &'static str) {
        use Operation::*;
        match self {
            DeviceRead => (HUB, "devices/read"),
            DeviceWrite => (HUB, "devices/write"),
            DeviceDelete => (HUB, "devices/delete"),
            TwinRead | Query => (HUB, "twins/read"),
            TwinWrite => (HUB, "twins/write"),
            RegistryStatistics | ServiceStatistics => (HUB, "statistics/read"),
            MethodInvoke => (HUB, "directMethods/invoke/action"),
            C2dSend => (HUB, "cloudToDeviceMessages/send/action"),
            C2dFeedback => (HUB, "cloudToDeviceMessages/feedback/action"),
            C2dPurge => (HUB, "cloudToDeviceMessages/queue/purge/action"),
            FileNotifications => (HUB, "fileUpload/notifications/action"),
            DigitalTwinRead => (HUB, "digitalTwins/read"),
            DigitalTwinWrite => (HUB, "digitalTwins/write"),
            DigitalTwinInvoke => (HUB, "digitalTwins/invoke/action"),
            EventsRead => (HUB, "events/read"),
            EventsWrite => (HUB, "events/write"),
            RoutingRead => (HUB, "routing/read"),
            RoutingWrite => (HUB, "routing/write"),
            HubCertificatesRead => (HUB, "certificates/read"),
            HubCertificatesWrite => (HUB, "certificates/write"),
            NetworkRulesRead => (HUB, "networkRules/read"),
            NetworkRulesWrite => (HUB, "networkRules/write"),
            EnrollmentRead => (DPS, "enrollments/read"),
            EnrollmentWrite => (DPS, "enrollments/write"),
            EnrollmentDelete => (DPS, "enrollments/delete"),
            GroupRead => (DPS, "enrollmentGroups/read"),
            GroupWrite => (DPS, "enrollmentGroups/write"),
            GroupDelete => (DPS, "enrollmentGroups/delete"),
            AttestationMechanism => (DPS, "attestationmechanism/details/action"),
            RegistrationRead => (DPS, "registrationStates/read"),
            RegistrationDelete => (DPS, "registrationStates/delete"),
            LinkedHubsRead => (DPS, "linkedHubs/read"),
            LinkedHubsWrite => (DPS, "linkedHubs/write"),
            DpsCertificatesRead => (DPS, "certificates/read"),
            DpsCertificatesWrite => (DPS, "certificates/write"),
            DpsNetworkRulesRead => (DPS, "networkRules/read"),
            DpsNetworkRulesWrite => (DPS, "networkRules/write"),
        }
    }

    /// The data action a role must grant, e.g. `Microsoft.Devices/IotHubs/twins/read`.
    pub fn data_action(self) -> String {
        let (namespace, action) = self.action();
        format!("{namespace}{action}")
    }

    /// Whether any of `roles` grants it.
    pub fn allowed_by<'a>(self, roles: impl IntoIterator<Item = &'a str>) -> bool {
        let action = self.data_action();
        roles
            .into_iter()
            .any(|role| crate::roles::role_allows(role, &action))
    }
}

/// How a service accepts callers: shared access policies (local authentication, unless
/// `disableLocalAuth`) and bearer tokens of an OpenID Connect issuer for `audience`.
#[derive(Debug, Clone)]
pub struct ServiceAccess {
    pub oidc: Option<Arc<Oidc>>,
    /// The audience its bearer tokens must name.
    pub audience: String,
    /// Whether shared access policies are accepted on its service APIs.
    pub local_auth: bool,
}

impl ServiceAccess {
    /// Local authentication only, as a service starts.
    pub fn local(audience: &str) -> ServiceAccess {
        ServiceAccess {
            oidc: None,
            audience: audience.to_owned(),
            local_auth: true,
        }
    }

    /// Reads an `Authorization` header: a bearer token is verified here; anything else is a
    /// SAS token for the service to check against `operation.rights()`, unless local
    /// authentication is off.
    pub async fn caller<'a>(&self, header: &'a str) -> Result<Caller<'a>, AccessError> {
        match crate::oidc::bearer_token(header) {
            Some(token) => {
                let oidc = self.oidc.as_ref().ok_or(AccessError::NoIssuer)?;
                Ok(Caller::Bearer(
                    oidc.verify(token, &self.audience)
                        .await
                        .map_err(AccessError::Token)?,
                ))
            }
            None if self.local_auth => Ok(Caller::Sas(header)),
            None => Err(AccessError::LocalAuthDisabled),
        }
    }
}

impl ServiceAccess {
    /// Decides a service call of `operation` (`request`, e.g. `GET on /twins/d1`, names it in a
    /// refusal): a bearer token whose roles grant the operation's data action, or a SAS token
    /// that `check_sas` accepts for one of its rights. Refusals are made with `unauthorized`
    /// (the service's 401).
    pub async fn authorize<E>(
        &self,
        header: Option<&str>,
        operation: Operation,
        request: &str,
        unauthorized: impl Fn(String) -> E,
        check_sas: impl FnOnce(&str, &'static [Rights]) -> Result<(), E>,
    ) -> Result<(), E> {
        let header = header.ok_or_else(|| {
            unauthorized("Unauthorized: the request has no Authorization header.".into())
        })?;
        match self.caller(header).await {
            Err(e) => Err(unauthorized(format!("Unauthorized: {e}."))),
            Ok(Caller::Sas(token)) => check_sas(token, operation.rights()),
            Ok(Caller::Bearer(identity))
                if operation.allowed_by(identity.roles.iter().map(String::as_str)) =>
            {
                Ok(())
            }
            Ok(Caller::Bearer(identity)) => {
                Err(unauthorized(not_permitted(&identity, operation, request)))
            }
        }
    }
}

/// Who an `Authorization` header presents.
#[derive(Debug)]
pub enum Caller<'a> {
    /// A SAS token, not yet checked.
    Sas(&'a str),
    /// A verified bearer token's identity.
    Bearer(Identity),
}

/// Why a header was refused before any policy was looked at.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    #[error("local authentication (shared access policies) is disabled; present a bearer token")]
    LocalAuthDisabled,
    #[error("bearer tokens are not accepted: no OpenID Connect issuer is configured")]
    NoIssuer,
    #[error("{0}")]
    Token(OidcError),
}

/// The refusal of a valid token whose roles lack `operation`'s data action, in IoT Hub's
/// words (`… is not authorized for GET on /twins/x due to no assigned permissions`).
pub fn not_permitted(identity: &Identity, operation: Operation, request: &str) -> String {
    format!(
        "Principal {} is not authorized for {request} due to no assigned permissions ({} needed).",
        identity.name,
        operation.data_action()
    )
}

#[cfg(test)]
mod tests {
    use super::Operation::*;

    #[test]
    fn reader_roles_allow_reads_only() {
        let reader = ["IoT Hub Data Reader"];
        for op in [DeviceRead, TwinRead, Query, RegistryStatistics, EventsRead] {
            assert!(op.allowed_by(reader), "{op:?}");
        }
        for op in [
            DeviceWrite,
            DeviceDelete,
            TwinWrite,
            MethodInvoke,
            C2dSend,
            C2dPurge,
        ] {
            assert!(!op.allowed_by(reader), "{op:?}");
        }
        let dps_reader = ["Device Provisioning Service Data Reader"];
        assert!(EnrollmentRead.allowed_by(dps_reader));
        assert!(RegistrationRead.allowed_by(dps_reader));
        assert!(!EnrollmentWrite.allowed_by(dps_reader));
        assert!(!AttestationMechanism.allowed_by(dps_reader));
        assert!(!DeviceRead.allowed_by(dps_reader));
    }

    #[test]
    fn contributors_and_narrow_roles() {
        let all = ["IoT Hub Data Contributor"];
        assert!(C2dPurge.allowed_by(all));
        assert!(!EnrollmentRead.allowed_by(all));
        let registry = ["IoT Hub Registry Contributor"];
        assert!(DeviceDelete.allowed_by(registry));
        assert!(!TwinWrite.allowed_by(registry));
        let twins = ["IoT Hub Twin Contributor"];
        assert!(TwinWrite.allowed_by(twins) && Query.allowed_by(twins));
        assert!(!DeviceRead.allowed_by(twins));
        assert!(GroupDelete.allowed_by(["Device Provisioning Service Data Contributor"]));
        assert!(!DeviceRead.allowed_by([]));
    }

    #[test]
    fn data_actions_read_as_azure_writes_them() {
        assert_eq!(
            MethodInvoke.data_action(),
            "Microsoft.Devices/IotHubs/directMethods/invoke/action"
        );
        assert_eq!(
            AttestationMechanism.data_action(),
            "Microsoft.Devices/provisioningServices/attestationmechanism/details/action"
        );
    }
}

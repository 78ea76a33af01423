//! The Device Provisioning Service domain, free of any transport: the DPS instance (ID scope,
//! policies, service authorization), enrollments and enrollment groups with their rules,
//! device attestation, allocation to linked hubs, reprovisioning decisions and registration
//! records.
//!
//! Adapters (HTTP, MQTT) parse the wire, call [`Dps`], and render the answer in the wire's own
//! words; [`DpsError`] carries the HTTP status and DPS error code for that.
//!
//! One server serves both IoT Hub and DPS: the DPS service host name is the hub's (its first
//! `--hostname`), and the device endpoint is the same host, routed by ID scope.

pub mod allocation;
pub mod attestation;
mod certificates;
pub mod device_api;
pub mod enrollments;
mod error;
mod group_cache;
pub mod hubs;
pub mod issuance;
pub mod linked;
pub mod model;
mod monitoring;
mod network;
mod own_hub;
pub mod query;
pub mod register;
pub mod registrations;
pub mod rules;
pub mod tpm;
mod tpm_attestation;
pub mod webhook;

use std::sync::Arc;

use chrono::Utc;
use ironhub_auth::access::{AccessError, Operation, ServiceAccess};
use ironhub_auth::{Rights, SasError, SasToken, SharedAccessPolicy, random_bytes, unix_now};
use ironhub_store::{DpsCollection, DpsRecord, DpsSettings, LOCAL_NODE, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::DpsError;
pub use linked::{HubCallError, HubConnector, HubRegistry, LocalHub, StaticConnector};
pub use model::LinkedHub;
pub use register::Limits;
pub use webhook::{AllocationWebhook, NoWebhook};

/// The name of the policy every DPS instance starts with (Azure docs, Control access to DPS
/// with SAS, 'Access control and permissions').
pub const OWNER_POLICY: &str = "provisioningserviceowner";

/// A new ID scope: `0ne` and 8 upper-case hex digits, e.g. `0ne000956C5` (Azure docs,
/// Quickstart: Set up the IoT Hub Device Provisioning Service with Azure CLI, 'Verify the
/// provisioning service'; IoT Hub Device Provisioning Service (DPS) terminology, 'ID scope').
pub fn new_id_scope() -> String {
    let hex: String = random_bytes(4).iter().map(|b| format!("{b:02X}")).collect();
    format!("0ne{hex}")
}

/// The policies a new DPS instance has: `provisioningserviceowner` with every DPS right
/// (Azure docs, Control access to DPS with SAS, 'Access control and permissions' and
/// 'Device Provisioning Service permissions').
pub fn default_dps_policies() -> Vec<SharedAccessPolicy> {
    use Rights as R;
    vec![SharedAccessPolicy::generate(
        OWNER_POLICY,
        R::SERVICE_CONFIG
            | R::ENROLLMENT_READ
            | R::ENROLLMENT_WRITE
            | R::REGISTRATION_STATUS_READ
            | R::REGISTRATION_STATUS_WRITE,
    )]
}

/// Who a service request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePrincipal {
    pub policy: String,
    pub rights: Rights,
}

/// What a DPS instance calls out to: the registries of its linked hubs, and the webhooks of
/// custom allocation.
#[derive(Debug, Clone)]
pub struct Services {
    pub connector: Arc<dyn HubConnector>,
    pub webhook: Arc<dyn AllocationWebhook>,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            connector: Arc::new(StaticConnector::new()),
            webhook: Arc::new(NoWebhook),
        }
    }
}

/// One DPS instance: its settings, the names it answers to, the store holding its state, and
/// what it calls out to.
#[derive(Debug, Clone)]
pub struct Dps {
    store: Arc<dyn Store>,
    settings: Arc<DpsSettings>,
    host_names: Arc<Vec<String>>,
    services: Services,
    limits: Arc<Limits>,
    runtime: Arc<register::Runtime>,
    /// The CAs that sign devices' CSRs, when the server issues certificates.
    issuing_cas: Option<Arc<ironhub_hub::issuing_cas::IssuingCas>>,
    /// The node's limiter, when throttling is configured (shared with its hub).
    throttle: Option<Arc<ironhub_hub::throttle::Throttle>>,
    /// Who may call the service API: policies and/or bearer tokens.
    access: Arc<ServiceAccess>,
    /// The enrollment groups as parsed, by the etag they were parsed at.
    groups: Arc<group_cache::GroupCache>,
}

fn unauthorized(e: SasError) -> DpsError {
    DpsError::Unauthorized(format!("Unauthorized: {e}."))
}

impl Dps {
    /// Opens the DPS instance kept in `store`, creating its settings (ID scope, policies) on
    /// first start. On that first start `own_hub`, if given, becomes the first linked hub
    /// (the server's own IoT hub); later starts leave the linked hubs as they are.
    pub async fn open(
        store: Arc<dyn Store>,
        host_names: Vec<String>,
        own_hub: Option<LinkedHub>,
    ) -> Result<Self, DpsError> {
        let init = DpsSettings {
            id_scope: new_id_scope(),
            policies: default_dps_policies(),
            created_time: Utc::now(),
        };
        let settings = store.dps_settings_or_init(init.clone()).await?;
        let first_start = settings == init;
        let dps = Dps {
            store,
            settings: Arc::new(settings),
            host_names: Arc::new(host_names),
            services: Services::default(),
            limits: Arc::new(Limits::default()),
            runtime: Arc::new(register::Runtime::new(LOCAL_NODE.to_owned())),
            issuing_cas: None,
            throttle: None,
            access: Arc::new(ServiceAccess::local(ironhub_auth::oidc::DPS_AUDIENCE)),
            groups: Arc::default(),
        };
        if first_start
            && let Some(hub) = own_hub
            && dps.get_linked_hub(&hub.name).await.is_err()
        {
            // Its own hub, reached in process once the services are set: nothing to check.
            dps.write_linked_hub(hub, None, false).await?;
        }
        Ok(dps)
    }

    /// The same instance, calling out through `services`.
    pub fn with_services(mut self, services: Services) -> Self {
        self.services = services;
        self
    }

    /// The same instance running as node `node_id` of a deployment that shares one store (the
    /// owner recorded on its registration operations). Call it before serving.
    pub fn with_node(mut self, node_id: impl Into<String>) -> Self {
        self.runtime = Arc::new(register::Runtime::new(node_id.into()));
        self
    }

    /// The same instance, throttling registrations with `throttle` (the node's, shared with
    /// its hub).
    pub fn with_throttle(mut self, throttle: Arc<ironhub_hub::throttle::Throttle>) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// The same instance, accepting service callers as `access` says (bearer tokens of an
    /// OpenID Connect issuer, local authentication on or off).
    pub fn with_service_access(mut self, access: ServiceAccess) -> Self {
        self.access = Arc::new(access);
        self
    }

    /// How the instance accepts service callers: its issuer of bearer tokens and their
    /// audience, and whether local authentication (shared access policies) is on.
    pub fn service_access(&self) -> &ServiceAccess {
        &self.access
    }

    /// Authorizes a service `operation` (`request`, e.g. `GET on /enrollments/x`, names it in
    /// a refusal): a bearer token whose roles grant its data action, or a policy token with
    /// one of its rights while local authentication is on.
    pub async fn authorize_operation(
        &self,
        header: Option<&str>,
        operation: Operation,
        request: &str,
    ) -> Result<(), DpsError> {
        self.access
            .authorize(
                header,
                operation,
                request,
                DpsError::Unauthorized,
                |token, rights| {
                    let mut refusal = DpsError::Unauthorized("Unauthorized.".into());
                    for needed in rights {
                        match self.authorize_service(Some(token), *needed) {
                            Ok(_) => return Ok(()),
                            Err(e) => refusal = e,
                        }
                    }
                    Err(refusal)
                },
            )
            .await
    }

    /// The same instance, with these limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Arc::new(limits);
        self
    }

    /// The ID scope devices name in their registrations.
    pub fn id_scope(&self) -> &str {
        &self.settings.id_scope
    }

    /// The service host name: the first configured name.
    pub fn host_name(&self) -> &str {
        self.host_names.first().map_or("localhost", String::as_str)
    }

    /// The instance's settings.
    pub fn settings(&self) -> &DpsSettings {
        &self.settings
    }

    /// The store behind the instance.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Fails unless `id_scope` is this instance's (compared case-insensitively).
    pub fn check_id_scope(&self, id_scope: &str) -> Result<(), DpsError> {
        if id_scope.eq_ignore_ascii_case(self.id_scope()) {
            Ok(())
        } else {
            Err(DpsError::InstanceNotFound(id_scope.to_owned()))
        }
    }

    /// Authorizes a service call (Azure docs, Control access to DPS with SAS, 'Service API
    /// authentication' and 'Security tokens'): the `Authorization` header holds a
    /// token signed with a policy's key (`skn`), not expired, whose `sr` covers one of the
    /// instance's host names by per-segment prefix (scheme, port and case ignored), from a
    /// policy with all of `needed`.
    pub fn authorize_service(
        &self,
        header: Option<&str>,
        needed: Rights,
    ) -> Result<ServicePrincipal, DpsError> {
        let header = header.ok_or_else(|| {
            DpsError::Unauthorized("Unauthorized: the request has no Authorization header.".into())
        })?;
        if !self.access.local_auth {
            return Err(DpsError::Unauthorized(format!(
                "Unauthorized: {}.",
                AccessError::LocalAuthDisabled
            )));
        }
        let token = SasToken::parse(header).map_err(unauthorized)?;
        let name = token.key_name().ok_or_else(|| {
            DpsError::Unauthorized(
                "Unauthorized: service operations need a token signed with a shared access \
                 policy (skn)."
                    .into(),
            )
        })?;
        let policy = self.settings.policy(name).ok_or_else(|| {
            DpsError::Unauthorized(format!(
                "Unauthorized: there is no shared access policy '{name}'."
            ))
        })?;
        token.verify_keys(policy.keys()).map_err(unauthorized)?;
        token.check_expiry(unix_now()).map_err(unauthorized)?;
        let resource = token.resource();
        let covered = self
            .host_names
            .iter()
            .map(String::as_str)
            .chain(["localhost", "127.0.0.1"])
            .any(|host| ironhub_auth::resource_covers(&resource, host));
        if !covered {
            return Err(unauthorized(SasError::ResourceMismatch(resource)));
        }
        if !policy.rights.contains(needed) {
            return Err(DpsError::Unauthorized(format!(
                "Unauthorized: the policy '{}' does not have the rights {needed}.",
                policy.key_name
            )));
        }
        Ok(ServicePrincipal {
            policy: policy.key_name.clone(),
            rights: policy.rights,
        })
    }
}

/// A typed value as a store record.
pub(crate) fn to_record<T: Serialize>(
    id: &str,
    group_id: Option<&str>,
    value: &T,
) -> Result<DpsRecord, DpsError> {
    Ok(DpsRecord {
        id: id.to_owned(),
        group_id: group_id.map(str::to_owned),
        etag: String::new(),
        doc: serde_json::to_value(value)?,
    })
}

/// A store record as a typed value.
pub(crate) fn from_record<T: DeserializeOwned>(record: &DpsRecord) -> Result<T, DpsError> {
    Ok(serde_json::from_value(record.doc.clone())?)
}

/// Reads a whole collection (or a group's part of it) page by page.
pub(crate) async fn read_all(
    store: &dyn Store,
    collection: DpsCollection,
    group: Option<&str>,
) -> Result<Vec<DpsRecord>, DpsError> {
    const PAGE: usize = 500;
    let mut all: Vec<DpsRecord> = Vec::new();
    loop {
        let after = all.last().map(|r| r.id.clone());
        let page = store
            .dps_list(collection, after.as_deref(), PAGE, group)
            .await?;
        let done = page.len() < PAGE;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_scopes_look_like_dps_ones() {
        let scope = new_id_scope();
        assert_eq!(scope.len(), 11);
        assert!(scope.starts_with("0ne"));
        assert!(
            scope[3..]
                .chars()
                .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
        );
        assert_ne!(scope, new_id_scope());
    }

    #[test]
    fn the_owner_policy_has_the_five_dps_rights() {
        let p = default_dps_policies();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key_name, "provisioningserviceowner");
        assert_eq!(
            p[0].rights.to_string(),
            "ServiceConfig, EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, \
             RegistrationStatusWrite"
        );
        assert_eq!(p[0].primary_key.len(), 88);
    }
}

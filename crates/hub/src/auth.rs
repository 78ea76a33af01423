//! Who may call: shared access policies for the service API, device keys for devices.

use std::sync::Arc;

use ironhub_auth::access::{AccessError, Caller, Operation, ServiceAccess};
use ironhub_auth::{Rights, SasError, SasToken, unix_now};
use ironhub_store::AuthType;

use crate::{AuthMethod, DeviceAuth, Hub, HubError};

/// Who a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A shared access policy, with its rights.
    Policy { name: String, rights: Rights },
    /// A bearer token's principal, with its roles.
    Bearer { name: String, roles: Vec<String> },
}

/// A policy-signed token a connection presented (AMQP's claims-based security): who signed
/// it, the resource it names, and until when it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceGrant {
    pub principal: Principal,
    /// The token's `sr`, decoded (`myhub.example`, `sb://myhub.example/entity`, …).
    pub resource: String,
    /// Unix seconds.
    pub expires: u64,
}

/// How a policy token's signature may be made.
#[derive(Debug, Clone, Copy)]
enum Signature {
    /// With the key decoded from base64 (IoT Hub).
    IotHub,
    /// That, or with the key's text (Service Bus and Event Hubs).
    Either,
}

fn unauthorized(e: SasError) -> HubError {
    HubError::Unauthorized(format!("Unauthorized: {e}."))
}

fn refused(e: AccessError) -> HubError {
    HubError::Unauthorized(format!("Unauthorized: {e}."))
}

impl Hub {
    /// The same hub, accepting service callers as `access` says (bearer tokens of an
    /// OpenID Connect issuer, local authentication on or off).
    pub fn with_service_access(mut self, access: ServiceAccess) -> Self {
        self.access = Arc::new(access);
        self
    }

    /// How the hub accepts service callers: its issuer of bearer tokens and their audience,
    /// and whether local authentication (shared access policies) is on.
    pub fn service_access(&self) -> &ServiceAccess {
        &self.access
    }

    /// Authorizes a service `operation` (`request`, e.g. `GET on /twins/d1`, names it in a
    /// refusal): a bearer token whose roles grant its data action, or a policy token with one
    /// of its rights while local authentication is on. A missing permission is refused with
    /// 401 as IoT Hub refuses it.
    pub async fn authorize_operation(
        &self,
        header: Option<&str>,
        operation: Operation,
        request: &str,
    ) -> Result<(), HubError> {
        self.access
            .authorize(
                header,
                operation,
                request,
                HubError::Unauthorized,
                |token, rights| self.authorize_service_any(Some(token), rights).map(drop),
            )
            .await
    }

    /// The names a token's `sr` may use for this hub: every configured host name, plus the
    /// loopback names the server certificate always carries.
    fn host_names(&self) -> impl Iterator<Item = &str> {
        self.host_names
            .iter()
            .map(String::as_str)
            .chain(["localhost", "127.0.0.1"])
    }

    /// Checks the token's `sr` against `{host}{path}` for any of this hub's host names: as a
    /// per-segment prefix (`resource_covers`), or, with `exact`, as exactly that resource.
    fn covers_hub(&self, token: &SasToken<'_>, path: &str, exact: bool) -> Result<(), HubError> {
        let resource = token.resource();
        let matches = if exact {
            ironhub_auth::resource_is
        } else {
            ironhub_auth::resource_covers
        };
        if self
            .host_names()
            .any(|host| matches(&resource, &format!("{host}{path}")))
        {
            Ok(())
        } else {
            Err(unauthorized(SasError::ResourceMismatch(resource)))
        }
    }

    /// Authorizes a service call: the `Authorization` header must hold a token signed with a
    /// policy's key, for this hub, not expired, from a policy with all of `needed`.
    pub fn authorize_service(
        &self,
        header: Option<&str>,
        needed: Rights,
    ) -> Result<Principal, HubError> {
        self.authorize_service_any(header, &[needed])
    }

    /// [`Hub::authorize_service`] for an operation that any one of `alternatives` allows, e.g.
    /// reading a twin, which IoT Hub grants to ServiceConnect as well as to RegistryRead.
    pub fn authorize_service_any(
        &self,
        header: Option<&str>,
        alternatives: &[Rights],
    ) -> Result<Principal, HubError> {
        let header = header.ok_or_else(|| {
            HubError::Unauthorized("Unauthorized: the request has no Authorization header.".into())
        })?;
        let token = SasToken::parse(header).map_err(unauthorized)?;
        self.check_policy_token(&token, alternatives, Signature::IotHub, |t| {
            self.covers_hub(t, "", false)
        })
    }

    /// Accepts a policy-signed token whose `sr` is this hub or anything under it (an AMQP
    /// client presents one per audience: the hub, `{host}/messages/devicebound`, or the
    /// Event Hubs-compatible entity `sb://{host}/{entity}`). What the token then grants is
    /// decided per address by [`Hub::grant_covers`].
    pub fn authorize_service_token(
        &self,
        token_text: &str,
        alternatives: &[Rights],
    ) -> Result<ServiceGrant, HubError> {
        let token = SasToken::parse(token_text).map_err(unauthorized)?;
        let resource = token.resource();
        // Event Hubs clients sign the Service Bus way; IoT Hub's service SDKs the IoT Hub way.
        let principal = self.check_policy_token(&token, alternatives, Signature::Either, |_| {
            if self
                .host_names()
                .any(|host| ironhub_auth::resource_covers(host, &resource))
            {
                Ok(())
            } else {
                Err(unauthorized(SasError::ResourceMismatch(resource.clone())))
            }
        })?;
        Ok(ServiceGrant {
            principal,
            resource,
            expires: token.expiry(),
        })
    }

    /// Accepts a bearer token a connection presented on `$cbs` (IoT Hub's `jwt` token type):
    /// verified as on REST; what it grants is decided per address by its roles
    /// ([`Hub::grant_covers`]).
    pub async fn authorize_service_bearer(&self, header: &str) -> Result<ServiceGrant, HubError> {
        match self.access.caller(header).await.map_err(refused)? {
            Caller::Bearer(identity) => Ok(ServiceGrant {
                principal: Principal::Bearer {
                    name: identity.name,
                    roles: identity.roles,
                },
                resource: self.host_name().to_owned(),
                expires: identity.expires,
            }),
            Caller::Sas(_) => Err(HubError::Unauthorized(
                "Unauthorized: a jwt token must be a bearer token.".into(),
            )),
        }
    }

    /// Whether `grant` covers `path` of this hub (`/messages/devicebound`,
    /// `/{entity}/ConsumerGroups/$Default/Partitions/0`) and is still valid at `now`; a bearer
    /// grant's roles must also allow what the address does.
    pub fn grant_covers(&self, grant: &ServiceGrant, path: &str, now: u64) -> bool {
        if let Principal::Bearer { roles, .. } = &grant.principal {
            let lower = path.to_ascii_lowercase();
            let operation = match lower.trim_end_matches('/') {
                "/messages/devicebound" => Operation::C2dSend,
                "/messages/servicebound/feedback" => Operation::C2dFeedback,
                "/messages/servicebound/filenotifications" => Operation::FileNotifications,
                _ => Operation::EventsRead,
            };
            if !operation.allowed_by(roles.iter().map(String::as_str)) {
                return false;
            }
        }
        grant.expires > now
            && self.host_names().any(|host| {
                // Service Bus compares entity paths ignoring case, and the Event Hubs SDKs
                // lower-case them in their audiences (`…/consumergroups/$default`).
                ironhub_auth::resource_covers_ignoring_case(
                    &grant.resource,
                    &format!("{host}{path}"),
                )
            })
    }

    /// The checks every policy-signed token passes: a known policy, its signature, expiry,
    /// `resource_ok`, and one of `alternatives` among the policy's rights.
    fn check_policy_token(
        &self,
        token: &SasToken<'_>,
        alternatives: &[Rights],
        signature: Signature,
        resource_ok: impl FnOnce(&SasToken<'_>) -> Result<(), HubError>,
    ) -> Result<Principal, HubError> {
        if !self.access.local_auth {
            return Err(refused(AccessError::LocalAuthDisabled));
        }
        let name = token.key_name().ok_or_else(|| {
            HubError::Unauthorized(
                "Unauthorized: service operations need a token signed with a shared access policy (skn)."
                    .into(),
            )
        })?;
        let policy = self.settings.policy(name).ok_or_else(|| {
            HubError::Unauthorized(format!(
                "Unauthorized: there is no shared access policy '{name}'."
            ))
        })?;
        match signature {
            Signature::IotHub => token.verify_keys(policy.keys()),
            Signature::Either => token.verify_keys_either_way(policy.keys()),
        }
        .map_err(unauthorized)?;
        token.check_expiry(unix_now()).map_err(unauthorized)?;
        resource_ok(token)?;
        if !alternatives.iter().any(|&r| policy.rights.contains(r)) {
            let needed = alternatives
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" or ");
            return Err(HubError::Unauthorized(format!(
                "Unauthorized: the policy '{}' does not have the rights {needed}.",
                policy.key_name
            )));
        }
        Ok(Principal::Policy {
            name: policy.key_name.clone(),
            rights: policy.rights,
        })
    }

    /// How a device's or module's (`who`) token is signed: by a policy with DeviceConnect, or
    /// by one of the identity's own keys.
    fn token_method(
        &self,
        token: &SasToken<'_>,
        authentication: &ironhub_store::Authentication,
        who: &str,
    ) -> Result<AuthMethod, HubError> {
        Ok(match token.key_name() {
            Some(name) => {
                let policy = self
                    .settings
                    .policy(name)
                    .filter(|p| p.rights.contains(Rights::DEVICE_CONNECT))
                    .ok_or_else(|| {
                        HubError::Unauthorized(format!(
                            "Unauthorized: '{name}' is not a policy with DeviceConnect."
                        ))
                    })?;
                token.verify_keys(policy.keys()).map_err(unauthorized)?;
                AuthMethod::Policy
            }
            None => {
                let keys = &authentication.symmetric_key;
                if authentication.kind != AuthType::Sas {
                    return Err(HubError::Unauthorized(format!(
                        "Unauthorized: '{who}' does not use symmetric keys."
                    )));
                }
                let keys = [&keys.primary_key, &keys.secondary_key];
                token
                    .verify_keys(keys.into_iter().flatten().map(String::as_str))
                    .map_err(unauthorized)?;
                AuthMethod::Sas
            }
        })
    }

    /// Authenticates a module identity by a SAS token: one signed with the module's own key
    /// for exactly `{hub}/devices/{id}/modules/{mid}`, or with a DeviceConnect policy's key for
    /// a resource that covers it. The module's device must be enabled.
    pub async fn authenticate_module(
        &self,
        device_id: &str,
        module_id: &str,
        token_text: &str,
    ) -> Result<DeviceAuth, HubError> {
        let token = SasToken::parse(token_text).map_err(unauthorized)?;
        token.check_expiry(unix_now()).map_err(unauthorized)?;
        let path = format!("/devices/{device_id}/modules/{module_id}");
        self.covers_hub(&token, &path, token.key_name().is_none())?;
        let who = format!("{device_id}/{module_id}");
        let module = self
            .store
            .get_module(device_id, module_id)
            .await?
            .ok_or_else(|| {
                HubError::Unauthorized(format!("Unauthorized: there is no module '{who}'."))
            })?;
        let method = self.token_method(&token, &module.authentication, &who)?;
        let enabled = self
            .store
            .get_device(device_id)
            .await?
            .is_some_and(|d| d.status == ironhub_store::DeviceStatus::Enabled);
        if !enabled {
            return Err(HubError::Unauthorized(format!(
                "Unauthorized: the device '{device_id}' is disabled or gone."
            )));
        }
        Ok(DeviceAuth {
            method,
            expires: Some(token.expiry()),
            generation_id: module.generation_id,
        })
    }

    /// Authenticates a device by a SAS token: signed with one of the device's own keys
    /// (no `skn`; `sr` exactly `{host}/devices/{id}`, never a prefix of it such as the bare
    /// host name), or with a policy that has DeviceConnect (`sr` any per-segment prefix of
    /// `{host}/devices/{id}`). The host name is compared case-insensitively, the device id
    /// exactly (Azure docs, "Control access to IoT Hub with SAS", "Security tokens").
    /// The device must exist, be enabled and use symmetric keys for a device-signed token.
    /// Returns how the device authenticated, when its token expires, and its generation.
    pub async fn authenticate_device(
        &self,
        device_id: &str,
        token_text: &str,
    ) -> Result<DeviceAuth, HubError> {
        let token = SasToken::parse(token_text).map_err(unauthorized)?;
        token.check_expiry(unix_now()).map_err(unauthorized)?;
        let path = format!("/devices/{device_id}");
        self.covers_hub(&token, &path, token.key_name().is_none())?;
        let device = self.store.get_device(device_id).await?.ok_or_else(|| {
            HubError::Unauthorized(format!("Unauthorized: there is no device '{device_id}'."))
        })?;
        let method = self.token_method(&token, &device.authentication, device_id)?;
        if device.status != ironhub_store::DeviceStatus::Enabled {
            return Err(HubError::Unauthorized(format!(
                "Unauthorized: the device '{device_id}' is disabled."
            )));
        }
        Ok(DeviceAuth {
            method,
            expires: Some(token.expiry()),
            generation_id: device.generation_id,
        })
    }
}

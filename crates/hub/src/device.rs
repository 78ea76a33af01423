//! What devices do, whatever their transport: authenticate by certificate, connect and
//! disconnect.

use chrono::Utc;
use ironhub_auth::thumbprints;
use ironhub_store::{AuthType, ConnectionState, DeviceStatus, RuntimeUpdate};

use crate::{Hub, HubError};

/// How a device proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A SAS token signed with the device's key.
    Sas,
    /// A SAS token signed with a policy that has DeviceConnect.
    Policy,
    /// A client certificate whose thumbprint is registered.
    SelfSigned,
    /// A client certificate chaining to a verified CA.
    CertificateAuthority,
}

impl AuthMethod {
    /// The `type` in IoT Hub's `iothub-connection-auth-method` property.
    pub(crate) fn wire_name(self) -> &'static str {
        match self {
            AuthMethod::Sas | AuthMethod::Policy => "sas",
            AuthMethod::SelfSigned => "x509Thumbprint",
            AuthMethod::CertificateAuthority => "x509Certificate",
        }
    }
}

/// The outcome of authenticating a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuth {
    pub method: AuthMethod,
    /// When the SAS token expires (Unix seconds); `None` for certificates.
    pub expires: Option<u64>,
    pub generation_id: String,
}

/// An authenticated device (or module) on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub device_id: String,
    pub module_id: Option<String>,
    pub generation_id: String,
    pub auth: AuthMethod,
    /// The Plug and Play model the device announced (`model-id` in its MQTT username).
    pub model_id: Option<String>,
}

impl DeviceIdentity {
    /// How it authenticated, as IoT Hub's `iothub-connection-auth-method` property and its
    /// logs' `authType` show it.
    pub(crate) fn auth_method(&self) -> String {
        format!(
            r#"{{"scope":"{}","type":"{}","issuer":"iothub","acceptingIpFilterRule":null}}"#,
            if self.module_id.is_some() {
                "module"
            } else {
                "device"
            },
            self.auth.wire_name()
        )
    }

    /// `deviceId` or `deviceId/moduleId`: how the bus and MQTT client ids name it.
    pub fn key(&self) -> String {
        match &self.module_id {
            Some(m) => format!("{}/{m}", self.device_id),
            None => self.device_id.clone(),
        }
    }
}

impl Hub {
    /// Authenticates a device by its TLS client certificate (leaf first): see
    /// [`Hub::authenticate_x509`].
    pub async fn authenticate_device_x509(
        &self,
        device_id: &str,
        chain: &[impl AsRef<[u8]>],
    ) -> Result<DeviceAuth, HubError> {
        self.authenticate_x509(device_id, None, chain).await
    }

    /// Authenticates a device, or one of its modules (`module_id`), by its TLS client
    /// certificate (leaf first), by the identity's own registration: the leaf's SHA-1 or
    /// SHA-256 thumbprint must be one it registered (`selfSigned`; the subject does not
    /// matter), or the chain must verify to a verified CA certificate with the leaf's CN equal
    /// to the device id, or `{deviceId}/{moduleId}` for a module (`certificateAuthority`, as
    /// IoT Hub requires of a module's CA-signed certificate). The device must be enabled.
    pub async fn authenticate_x509(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        chain: &[impl AsRef<[u8]>],
    ) -> Result<DeviceAuth, HubError> {
        let leaf = chain.first().ok_or_else(|| {
            HubError::Unauthorized("Unauthorized: no password and no client certificate.".into())
        })?;
        let device = self.store.get_device(device_id).await?;
        let (who, authentication, generation_id) = match module_id {
            None => {
                let device = device.as_ref().ok_or_else(|| {
                    HubError::Unauthorized(format!(
                        "Unauthorized: there is no device '{device_id}'."
                    ))
                })?;
                (
                    device_id.to_owned(),
                    device.authentication.clone(),
                    device.generation_id.clone(),
                )
            }
            Some(module_id) => {
                let who = format!("{device_id}/{module_id}");
                let module = self
                    .store
                    .get_module(device_id, module_id)
                    .await?
                    .filter(|_| device.is_some())
                    .ok_or_else(|| {
                        HubError::Unauthorized(format!("Unauthorized: there is no module '{who}'."))
                    })?;
                (who, module.authentication, module.generation_id)
            }
        };
        let method = match authentication.kind {
            AuthType::SelfSigned => {
                let (sha1, sha256) = thumbprints(leaf.as_ref());
                let registered = &authentication.x509_thumbprint;
                let matches = [
                    &registered.primary_thumbprint,
                    &registered.secondary_thumbprint,
                ]
                .into_iter()
                .flatten()
                .any(|t| t.eq_ignore_ascii_case(&sha1) || t.eq_ignore_ascii_case(&sha256));
                if !matches {
                    return Err(HubError::Unauthorized(format!(
                        "Unauthorized: the certificate's thumbprint is not registered for '{who}'."
                    )));
                }
                AuthMethod::SelfSigned
            }
            AuthType::CertificateAuthority => {
                self.verify_ca_chain(&who, chain).await?;
                AuthMethod::CertificateAuthority
            }
            AuthType::Sas | AuthType::None => {
                return Err(HubError::Unauthorized(format!(
                    "Unauthorized: '{who}' does not authenticate by certificate."
                )));
            }
        };
        if device.is_none_or(|d| d.status != DeviceStatus::Enabled) {
            return Err(HubError::Unauthorized(format!(
                "Unauthorized: the device '{device_id}' is disabled."
            )));
        }
        Ok(DeviceAuth {
            method,
            expires: None,
            generation_id,
        })
    }

    /// Records that a device connected or disconnected (`connectionState`,
    /// `connectionStateUpdatedTime`, `lastActivityTime`), without changing its etag.
    pub async fn set_connected(&self, device_id: &str, connected: bool) -> Result<(), HubError> {
        self.store
            .update_device_runtime(device_id, self.connection_update(connected))
            .await?;
        Ok(())
    }

    /// [`Hub::set_connected`] for a device or a module: a module's connection sets the
    /// module's own fields, never its device's.
    pub async fn set_identity_connected(
        &self,
        who: &DeviceIdentity,
        connected: bool,
    ) -> Result<(), HubError> {
        self.update_runtime(who, self.connection_update(connected))
            .await
    }

    /// A connection or disconnection through this node, now.
    fn connection_update(&self, connected: bool) -> RuntimeUpdate {
        RuntimeUpdate {
            connection_state: Some(if connected {
                ConnectionState::Connected
            } else {
                ConnectionState::Disconnected
            }),
            node: Some(self.bus.node_id().to_owned()),
            at: Some(Utc::now()),
        }
    }

    /// Applies a runtime update to the device's or the module's record.
    async fn update_runtime(
        &self,
        who: &DeviceIdentity,
        update: RuntimeUpdate,
    ) -> Result<(), HubError> {
        match &who.module_id {
            None => {
                self.store
                    .update_device_runtime(&who.device_id, update)
                    .await?
            }
            Some(module_id) => {
                self.store
                    .update_module_runtime(&who.device_id, module_id, update)
                    .await?
            }
        };
        Ok(())
    }

    /// The features a persistent MQTT session subscribed to.
    pub async fn mqtt_session(&self, client_id: &str) -> Result<Option<Vec<String>>, HubError> {
        Ok(self.store.mqtt_session(client_id).await?)
    }

    /// Keeps (`Some`) or forgets (`None`) a persistent MQTT session.
    pub async fn set_mqtt_session(
        &self,
        client_id: &str,
        subscriptions: Option<Vec<String>>,
    ) -> Result<(), HubError> {
        Ok(self
            .store
            .set_mqtt_session(client_id, subscriptions)
            .await?)
    }

    /// Moves the device's (or the module's) `lastActivityTime` to now, writing at most once
    /// per [`ACTIVITY_RESOLUTION`] for an identity (a write per message would cost more than
    /// the timestamp is worth; IoT Hub's own is not exact either).
    pub async fn touch(&self, who: &DeviceIdentity) {
        let now = std::time::Instant::now();
        let key = who.key();
        {
            let Ok(mut seen) = self.activity.lock() else {
                return;
            };
            if seen
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < ACTIVITY_RESOLUTION)
            {
                return;
            }
            seen.insert(key.clone(), now);
        }
        let update = RuntimeUpdate {
            at: Some(Utc::now()),
            ..RuntimeUpdate::default()
        };
        if let Err(e) = self.update_runtime(who, update).await {
            tracing::warn!(device = %key, error = %e, "could not record the activity");
        }
    }
}

/// How often, at most, a device's `lastActivityTime` is written.
pub const ACTIVITY_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(30);

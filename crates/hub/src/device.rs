//! What devices do, whatever their transport: authenticate by certificate, connect and
//! disconnect, send telemetry.

use std::collections::BTreeMap;

use chrono::Utc;
use ironhub_auth::thumbprints;
use ironhub_store::{AuthType, ConnectionState, DeviceStatus, Event, NewEvent, RuntimeUpdate};

use crate::{Hub, HubError};

/// IoT Hub's limit on one device-to-cloud message (body and properties).
pub const MAX_TELEMETRY_BYTES: usize = 256 * 1024;

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
    fn wire_name(self) -> &'static str {
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
    /// `deviceId` or `deviceId/moduleId`: how the bus and MQTT client ids name it.
    pub fn key(&self) -> String {
        match &self.module_id {
            Some(m) => format!("{}/{m}", self.device_id),
            None => self.device_id.clone(),
        }
    }
}

/// A device-to-cloud message as a transport received it.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    /// The decoded property bag, in order; `None` is a key without `=`.
    pub properties: Vec<(String, Option<String>)>,
    pub body: Vec<u8>,
    /// MQTT retain flag: not stored, but recorded as the `mqtt-retain` property.
    pub retain: bool,
    /// Sent by the hub on the device's behalf, as its MQTT Will.
    pub is_will: bool,
}

/// The system property a `$.xx` key of a property bag stands for.
fn system_property(key: &str) -> Option<&'static str> {
    Some(match key {
        "$.mid" => "message-id",
        "$.cid" => "correlation-id",
        "$.uid" => "user-id",
        "$.ct" => "content-type",
        "$.ce" => "content-encoding",
        "$.exp" => "absolute-expiry-time",
        "$.to" => "to",
        "$.on" => "iothub-outputname",
        "$.ifid" => "iothub-interface-id",
        "$.sub" => "dt-subject",
        "$.schema" => "dt-dataschema",
        _ => return None,
    })
}

impl Hub {
    /// Authenticates a device by its TLS client certificate (leaf first): the leaf's SHA-1 or
    /// SHA-256 thumbprint must be one the device registered (`selfSigned`), or the chain must
    /// verify to a verified CA certificate with the leaf's CN equal to the device id
    /// (`certificateAuthority`).
    pub async fn authenticate_device_x509(
        &self,
        device_id: &str,
        chain: &[impl AsRef<[u8]>],
    ) -> Result<DeviceAuth, HubError> {
        let leaf = chain.first().ok_or_else(|| {
            HubError::Unauthorized("Unauthorized: no password and no client certificate.".into())
        })?;
        let device = self.store.get_device(device_id).await?.ok_or_else(|| {
            HubError::Unauthorized(format!("Unauthorized: there is no device '{device_id}'."))
        })?;
        let method = match device.authentication.kind {
            AuthType::SelfSigned => {
                let (sha1, sha256) = thumbprints(leaf.as_ref());
                let registered = &device.authentication.x509_thumbprint;
                let matches = [
                    &registered.primary_thumbprint,
                    &registered.secondary_thumbprint,
                ]
                .into_iter()
                .flatten()
                .any(|t| t.eq_ignore_ascii_case(&sha1) || t.eq_ignore_ascii_case(&sha256));
                if !matches {
                    return Err(HubError::Unauthorized(format!(
                        "Unauthorized: the certificate's thumbprint is not registered for '{device_id}'."
                    )));
                }
                AuthMethod::SelfSigned
            }
            AuthType::CertificateAuthority => {
                self.verify_ca_chain(device_id, chain).await?;
                AuthMethod::CertificateAuthority
            }
            AuthType::Sas | AuthType::None => {
                return Err(HubError::Unauthorized(format!(
                    "Unauthorized: '{device_id}' does not authenticate by certificate."
                )));
            }
        };
        if device.status != DeviceStatus::Enabled {
            return Err(HubError::Unauthorized(format!(
                "Unauthorized: the device '{device_id}' is disabled."
            )));
        }
        Ok(DeviceAuth {
            method,
            expires: None,
            generation_id: device.generation_id,
        })
    }

    /// Records that a device connected or disconnected (`connectionState`,
    /// `connectionStateUpdatedTime`, `lastActivityTime`), without changing its etag.
    pub async fn set_connected(&self, device_id: &str, connected: bool) -> Result<(), HubError> {
        let update = RuntimeUpdate {
            connection_state: Some(if connected {
                ConnectionState::Connected
            } else {
                ConnectionState::Disconnected
            }),
            node: Some(self.bus.node_id().to_owned()),
            at: Some(Utc::now()),
        };
        self.store.update_device_runtime(device_id, update).await?;
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

    /// Appends a device-to-cloud message to the event log; returns once it is durable.
    pub async fn send_telemetry(
        &self,
        who: &DeviceIdentity,
        message: Telemetry,
    ) -> Result<Event, HubError> {
        let props_size: usize = message
            .properties
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
            .sum();
        if message.body.len() + props_size > MAX_TELEMETRY_BYTES {
            return Err(HubError::MessageTooLarge(MAX_TELEMETRY_BYTES));
        }
        let mut system = BTreeMap::new();
        let mut application = BTreeMap::new();
        for (key, value) in message.properties {
            match system_property(&key) {
                Some(name) => {
                    system.insert(name.to_owned(), value.unwrap_or_default());
                }
                None => {
                    application.insert(key, value);
                }
            }
        }
        if message.retain {
            application.insert("mqtt-retain".to_owned(), Some("true".to_owned()));
        }
        if message.is_will {
            application.insert("iothub-MessageType".to_owned(), Some("Will".to_owned()));
        }
        system.insert("iothub-connection-device-id".into(), who.device_id.clone());
        if let Some(m) = &who.module_id {
            system.insert("iothub-connection-module-id".into(), m.clone());
        }
        system.insert(
            "iothub-connection-auth-method".into(),
            format!(
                r#"{{"scope":"{}","type":"{}","issuer":"iothub","acceptingIpFilterRule":null}}"#,
                if who.module_id.is_some() {
                    "module"
                } else {
                    "device"
                },
                who.auth.wire_name()
            ),
        );
        system.insert(
            "iothub-connection-auth-generation-id".into(),
            who.generation_id.clone(),
        );
        system.insert("iothub-message-source".into(), "Telemetry".into());
        if let Some(model) = &who.model_id {
            system.insert("dt-dataschema".into(), model.clone());
        }
        let event = self
            .events
            .append(NewEvent {
                device_id: who.device_id.clone(),
                module_id: who.module_id.clone(),
                system_properties: system,
                application_properties: application,
                body: message.body,
            })
            .await?;
        self.touch(&who.device_id).await;
        Ok(event)
    }

    /// Moves the device's `lastActivityTime` to now, writing at most once per
    /// [`ACTIVITY_RESOLUTION`] for a device (a write per message would cost more than the
    /// timestamp is worth; IoT Hub's own is not exact either).
    pub async fn touch(&self, device_id: &str) {
        let now = std::time::Instant::now();
        {
            let Ok(mut seen) = self.activity.lock() else {
                return;
            };
            if seen
                .get(device_id)
                .is_some_and(|at| now.duration_since(*at) < ACTIVITY_RESOLUTION)
            {
                return;
            }
            seen.insert(device_id.to_owned(), now);
        }
        let update = RuntimeUpdate {
            at: Some(Utc::now()),
            ..RuntimeUpdate::default()
        };
        if let Err(e) = self.store.update_device_runtime(device_id, update).await {
            tracing::warn!(device_id, error = %e, "could not record the device's activity");
        }
    }
}

/// How often, at most, a device's `lastActivityTime` is written.
pub const ACTIVITY_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(30);

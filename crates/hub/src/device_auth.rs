//! A device's login, whatever its transport: which credential it is checked by, and the
//! [`DeviceIdentity`] it becomes. The MQTT CONNECT and the HTTPS device routes both come here.
//!
//! The choice (Azure docs, "Control access to IoT Hub", sections on SAS tokens and X.509
//! certificates): a SAS token when the device sent one (signed with its own key, or with a
//! policy that has DeviceConnect), else the TLS client certificate chain; a blank token is
//! no token (an empty MQTT password next to a certificate is how the SDKs connect with X.509).
//! A module (`deviceId/moduleId`) is checked the same way against its own registration; a
//! CA-signed module certificate names `{deviceId}/{moduleId}` as its CN, as IoT Hub requires
//! (MicrosoftDocs/azure-docs issues 63273 and 111494, on module X.509 certificates).

use ironhub_auth::Credentials;

use crate::{DeviceIdentity, Hub, HubError};

/// Who a device says it is, and what it presents to prove it.
#[derive(Debug, Clone, Default)]
pub struct DeviceLogin<'a> {
    pub device_id: &'a str,
    /// The module, for a module identity (`deviceId/moduleId`).
    pub module_id: Option<&'a str>,
    /// The Plug and Play model the device announces (`model-id` of an MQTT username).
    pub model_id: Option<&'a str>,
    pub credentials: Credentials<'a>,
}

/// A device that proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedDevice {
    pub identity: DeviceIdentity,
    /// When its SAS token expires (Unix seconds); `None` for certificates.
    pub expires: Option<u64>,
}

impl Hub {
    /// Authenticates a device's or a module's (`deviceId/moduleId`) login: by its SAS token
    /// if it has one, else by its client certificate chain.
    pub(crate) async fn authenticate_unobserved(
        &self,
        login: &DeviceLogin<'_>,
    ) -> Result<AuthenticatedDevice, HubError> {
        let device_id = login.device_id;
        let credentials = &login.credentials;
        // IoT Edge's hub logging in a device behind it with its own `$edgeHub` token.
        let edge = credentials.token.and_then(|t| {
            crate::on_behalf_of::edge_hub_acting_for(t, device_id, login.module_id)
                .map(|edge| (edge, t))
        });
        let auth = match (edge, login.module_id, credentials.token) {
            (Some((edge, token)), module, _) => {
                self.authenticate_on_behalf_of(&edge, device_id, module, token)
                    .await?
            }
            (None, Some(module), Some(token)) => {
                self.authenticate_module(device_id, module, token).await?
            }
            (None, None, Some(token)) => self.authenticate_device(device_id, token).await?,
            (None, module, None) if !credentials.chain.is_empty() => {
                self.authenticate_x509(device_id, module, &credentials.chain)
                    .await?
            }
            (None, _, None) => {
                return Err(HubError::Unauthorized(
                    "Unauthorized: the device sent neither a SAS token nor a client certificate."
                        .into(),
                ));
            }
        };
        Ok(AuthenticatedDevice {
            identity: DeviceIdentity {
                device_id: device_id.to_owned(),
                module_id: login.module_id.map(str::to_owned),
                generation_id: auth.generation_id,
                auth: auth.method,
                model_id: login.model_id.map(str::to_owned),
            },
            expires: auth.expires,
        })
    }
}

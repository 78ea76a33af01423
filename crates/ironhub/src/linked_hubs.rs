//! What the server's DPS calls out to: the registries of its linked hubs (its own hub in
//! process, any other through its registry REST API and owner connection string, as DPS
//! reaches a linked Azure IoT Hub), and custom allocation webhooks over HTTP(S).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ironhub_auth::ConnectionString;
use ironhub_client::{ClientError, HubClient, WebClient};
use ironhub_dps::webhook::WebhookResult;
use ironhub_dps::{
    AllocationWebhook, HubCallError, HubConnector, HubRegistry, LinkedHub, LocalHub,
};
use ironhub_wire::hub::{Device, DeviceSpec, Twin, TwinPatch};

/// The server's connector: its own hub in process, other hubs over HTTPS.
#[derive(Debug)]
pub struct ServerConnector {
    own_name: String,
    own: Arc<LocalHub>,
    trust: Vec<PathBuf>,
    /// Clients of remote hubs, by connection string (a changed link gets a new client).
    remote: Mutex<HashMap<String, Arc<RemoteHub>>>,
}

impl ServerConnector {
    pub fn new(own: ironhub_hub::Hub, trust: Vec<PathBuf>) -> Self {
        ServerConnector {
            own_name: own.host_name().to_owned(),
            own: Arc::new(LocalHub(own)),
            trust,
            remote: Mutex::default(),
        }
    }
}

impl HubConnector for ServerConnector {
    fn connect(&self, hub: &LinkedHub) -> Result<Arc<dyn HubRegistry>, HubCallError> {
        if hub.name.eq_ignore_ascii_case(&self.own_name) {
            return Ok(self.own.clone());
        }
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = remote.get(&hub.connection_string) {
            return Ok(client.clone());
        }
        let cs = ConnectionString::parse(&hub.connection_string)
            .map_err(|e| HubCallError::Unreachable(format!("bad connection string: {e}")))?;
        let client = HubClient::new(cs, &self.trust)
            .map_err(|e| HubCallError::Unreachable(e.to_string()))?;
        let client = Arc::new(RemoteHub(client));
        remote.insert(hub.connection_string.clone(), client.clone());
        Ok(client)
    }
}

/// A hub reached through its registry REST API.
#[derive(Debug)]
pub struct RemoteHub(HubClient);

fn call_error(e: ClientError) -> HubCallError {
    match e {
        ClientError::Service { status, .. } => HubCallError::Status {
            status,
            message: e.to_string(),
        },
        // The client's own advice (--cafile, SSL_CERT_FILE) is the CLI's; the server's flag
        // is --trust-ca.
        ClientError::CertificateNotTrusted { host, detail } => HubCallError::Untrusted(format!(
            "{host} presented a certificate no CA the server trusts signed ({detail}); restart \
             the server with --trust-ca <the CA certificate that signed it> (another ironhub's \
             is its DATA_DIR/tls/ca.pem)"
        )),
        ClientError::CertificateWrongName { host, detail } => HubCallError::Untrusted(format!(
            "{host} presented a certificate for another name ({detail}); link the hub by a host \
             name its certificate names (its `ironhub serve --hostname`)"
        )),
        other => HubCallError::Unreachable(other.to_string()),
    }
}

#[async_trait]
impl HubRegistry for RemoteHub {
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, HubCallError> {
        match self.0.get_device(device_id).await {
            Ok(d) => Ok(Some(d)),
            Err(ClientError::Service { status: 404, .. }) => Ok(None),
            Err(e) => Err(call_error(e)),
        }
    }

    async fn put_device(
        &self,
        device_id: &str,
        device: &DeviceSpec,
        if_match: Option<&str>,
    ) -> Result<Device, HubCallError> {
        match if_match {
            None => self.0.create_device(device_id, device).await,
            Some(tag) => self.0.update_device(device_id, device, Some(tag)).await,
        }
        .map_err(call_error)
    }

    async fn delete_device(&self, device_id: &str) -> Result<(), HubCallError> {
        match self.0.delete_device(device_id, None).await {
            Ok(()) | Err(ClientError::Service { status: 404, .. }) => Ok(()),
            Err(e) => Err(call_error(e)),
        }
    }

    async fn get_twin(&self, device_id: &str) -> Result<Twin, HubCallError> {
        self.0.get_twin(device_id).await.map_err(call_error)
    }

    async fn update_twin(
        &self,
        device_id: &str,
        twin: &TwinPatch,
        replace: bool,
    ) -> Result<Twin, HubCallError> {
        self.0
            .update_twin(device_id, twin, None, replace)
            .await
            .map_err(call_error)
    }

    async fn ping(&self) -> Result<Duration, HubCallError> {
        let start = Instant::now();
        self.0.registry_statistics().await.map_err(call_error)?;
        Ok(start.elapsed())
    }
}

/// Custom allocation webhooks, called over HTTP(S).
#[derive(Debug)]
pub struct HttpWebhook(WebClient);

impl HttpWebhook {
    pub fn new(trust: &[PathBuf]) -> Result<Self, ClientError> {
        Ok(HttpWebhook(WebClient::new(trust)?))
    }
}

#[async_trait]
impl AllocationWebhook for HttpWebhook {
    async fn post(&self, url: &str, body: Vec<u8>, timeout: Duration) -> WebhookResult {
        self.0
            .post_json(url, body, timeout)
            .await
            .map_err(|e| e.to_string())
    }
}

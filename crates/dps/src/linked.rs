//! How DPS reaches a linked hub's registry (DESIGN.md: "DPS talks to hubs the way it would talk to
//! a remote hub"). [`HubRegistry`] is the part of IoT Hub's registry REST API that provisioning
//! uses, in its JSON shapes (typed in `ironhub-wire`); [`HubConnector`] gives the registry of a
//! linked hub. [`LocalHub`] is the server's own hub, called in process; the server's wiring adds a
//! remote implementation over HTTPS for hubs linked by connection string (another ironhub, or
//! Azure).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ironhub_hub::model::device_view;
use ironhub_hub::{Hub, HubError};
use ironhub_wire::hub::{Device, DeviceSpec, Twin, TwinPatch};

use crate::model::LinkedHub;

/// A failed call to a hub's registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubCallError {
    /// The hub answered with an error status.
    #[error("the hub answered {status}: {message}")]
    Status { status: u16, message: String },
    /// The hub could not be reached (connection, timeout, TLS failures other than trust).
    #[error("the hub cannot be reached: {0}")]
    Unreachable(String),
    /// The hub answered with a certificate the DPS does not trust; the text says how to fix it.
    #[error("the hub's certificate is not trusted: {0}")]
    Untrusted(String),
}

impl HubCallError {
    /// Whether the hub said the device (or twin) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, HubCallError::Status { status: 404, .. })
    }
}

impl From<HubError> for HubCallError {
    fn from(e: HubError) -> Self {
        HubCallError::Status {
            status: e.status(),
            message: e.to_string(),
        }
    }
}

/// The registry calls provisioning makes on a hub, with IoT Hub's REST shapes (`Device` and
/// `Twin` documents).
#[async_trait]
pub trait HubRegistry: Send + Sync + fmt::Debug {
    /// `GET /devices/{id}`; `None` when the hub has no such device.
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, HubCallError>;
    /// `PUT /devices/{id}`: creates the device (`if_match` `None`) or replaces the one with
    /// that etag (`*` for any).
    async fn put_device(
        &self,
        device_id: &str,
        device: &DeviceSpec,
        if_match: Option<&str>,
    ) -> Result<Device, HubCallError>;
    /// `DELETE /devices/{id}` of any etag; a device that is not there is no error.
    async fn delete_device(&self, device_id: &str) -> Result<(), HubCallError>;
    /// `GET /twins/{id}`.
    async fn get_twin(&self, device_id: &str) -> Result<Twin, HubCallError>;
    /// `PATCH /twins/{id}` (`replace == false`) or `PUT /twins/{id}` (`replace == true`) with
    /// tags and desired properties, of any etag.
    async fn update_twin(
        &self,
        device_id: &str,
        twin: &TwinPatch,
        replace: bool,
    ) -> Result<Twin, HubCallError>;
    /// One cheap call, timed: the round trip from DPS to the hub (for lowest-latency
    /// allocation).
    async fn ping(&self) -> Result<Duration, HubCallError>;
    /// The hub itself when it runs in this process (the server's own hub), so that DPS may
    /// write a device there together with its registration record; `None` for a remote hub.
    fn in_process(&self) -> Option<&Hub> {
        None
    }
}

/// Gives the registry of a linked hub.
pub trait HubConnector: Send + Sync + fmt::Debug {
    fn connect(&self, hub: &LinkedHub) -> Result<Arc<dyn HubRegistry>, HubCallError>;
}

/// The server's own hub, called in process.
#[derive(Debug, Clone)]
pub struct LocalHub(pub Hub);

#[async_trait]
impl HubRegistry for LocalHub {
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, HubCallError> {
        match self.0.get_device(device_id).await {
            Ok(d) => Ok(Some(device_view(&d))),
            Err(HubError::DeviceNotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_device(
        &self,
        device_id: &str,
        device: &DeviceSpec,
        if_match: Option<&str>,
    ) -> Result<Device, HubCallError> {
        let written = self.0.put_device(device_id, device, if_match).await?;
        Ok(device_view(&written))
    }

    async fn delete_device(&self, device_id: &str) -> Result<(), HubCallError> {
        match self.0.delete_device(device_id, Some("*")).await {
            Ok(()) | Err(HubError::DeviceNotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_twin(&self, device_id: &str) -> Result<Twin, HubCallError> {
        Ok(self.0.get_twin(device_id).await?)
    }

    async fn update_twin(
        &self,
        device_id: &str,
        twin: &TwinPatch,
        replace: bool,
    ) -> Result<Twin, HubCallError> {
        // The domain reads a twin update as the JSON the REST API received.
        let doc = serde_json::to_value(twin).map_err(|e| HubCallError::Status {
            status: 400,
            message: e.to_string(),
        })?;
        Ok(self
            .0
            .update_twin(device_id, &doc, Some("*"), replace)
            .await?)
    }

    async fn ping(&self) -> Result<Duration, HubCallError> {
        let start = Instant::now();
        self.0.registry_statistics().await?;
        Ok(start.elapsed())
    }

    fn in_process(&self) -> Option<&Hub> {
        Some(&self.0)
    }
}

/// A connector for tests and single-hub set-ups: a fixed set of registries by hub name.
#[derive(Debug, Clone, Default)]
pub struct StaticConnector {
    hubs: Vec<(String, Arc<dyn HubRegistry>)>,
}

impl StaticConnector {
    pub fn new() -> Self {
        StaticConnector::default()
    }

    /// Adds the registry for the hub `name`.
    pub fn with(mut self, name: &str, registry: Arc<dyn HubRegistry>) -> Self {
        self.hubs.push((name.to_owned(), registry));
        self
    }
}

impl HubConnector for StaticConnector {
    fn connect(&self, hub: &LinkedHub) -> Result<Arc<dyn HubRegistry>, HubCallError> {
        self.hubs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&hub.name))
            .map(|(_, r)| r.clone())
            .ok_or_else(|| HubCallError::Unreachable(format!("no route to the hub '{}'", hub.name)))
    }
}

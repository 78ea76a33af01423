//! A device's session with the hub, whatever its transport: opened from an authenticated
//! device, it holds the device's place on the device bus and its connection state, and gives
//! them up when it ends.
//!
//! A connection-oriented transport (MQTT, AMQP) opens one with [`Hub::connect_device`]: it
//! attaches to the bus (an earlier connection of the device is taken over), the device is
//! shown `Connected`, and the model it announced becomes its twin's `modelId`. It ends with
//! [`DeviceSession::close`], which detaches and shows the device `Disconnected` unless a newer
//! connection holds it. A session that is dropped without `close` (its task was aborted, the
//! connection's code panicked) does the same from a task of its own, so a device is never
//! left shown connected by a connection that is gone; only a process that dies outright leaves
//! that to the next start's recovery (`Hub::recover_node`).
//!
//! A request-response transport (the HTTPS device API) opens one per request with
//! [`Hub::device_request`]: no bus, no connection state (IoT Hub shows only MQTT and AMQP
//! devices as connected), but what the device sends counts as its activity all the same.

use ironhub_store::{BusMessage, Event};
use tokio::sync::mpsc;

use crate::{AuthenticatedDevice, DeviceIdentity, Hub, Telemetry};

/// A device's place on the bus: the connection's id and what the bus brings it.
#[derive(Debug)]
struct Presence {
    connection_id: u64,
    messages: mpsc::Receiver<BusMessage>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct DeviceSession {
    hub: Hub,
    device: AuthenticatedDevice,
    /// `None` for a request's session, and once closed.
    presence: Option<Presence>,
}

impl Hub {
    /// Opens a connected device's session: see the module documentation. Failing to record
    /// the connection state or the model is logged, not fatal: the device is connected.
    pub(crate) async fn connect_device_unobserved(
        &self,
        device: AuthenticatedDevice,
    ) -> DeviceSession {
        let key = device.identity.key();
        let attachment = self.bus.attach(&key).await;
        let session = DeviceSession {
            hub: self.clone(),
            presence: Some(Presence {
                connection_id: attachment.connection_id,
                messages: attachment.messages,
            }),
            device,
        };
        let who = session.identity();
        // A module's connection is its own: it sets the module's state, not its device's.
        if let Err(e) = self.set_identity_connected(who, true).await {
            tracing::warn!(device = %key, error = %e, "could not record the connection");
        }
        self.emit_connection_state(&who.device_id, who.module_id.as_deref(), true)
            .await;
        if let Some(model) = who.model_id.as_deref().filter(|_| who.module_id.is_none())
            && let Err(e) = self.announce_model(&who.device_id, model).await
        {
            tracing::info!(device = %key, error = %e, "model id not kept");
        }
        session
    }

    /// A session for one request of a device: see the module documentation.
    pub fn device_request(&self, device: AuthenticatedDevice) -> DeviceSession {
        DeviceSession {
            hub: self.clone(),
            device,
            presence: None,
        }
    }
}

impl DeviceSession {
    /// Who the device is.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.device.identity
    }

    /// When the device's SAS token expires (Unix seconds); `None` for certificates.
    pub fn expires(&self) -> Option<u64> {
        self.device.expires
    }

    /// The hub the session is with.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The next message the bus brings the device; `None` when the bus let go of the
    /// connection, and at once for a request's session.
    pub async fn next_message(&mut self) -> Option<BusMessage> {
        match &mut self.presence {
            Some(p) => p.messages.recv().await,
            None => None,
        }
    }

    /// Sends a device-to-cloud message as this device; returns once it is durable (the events
    /// as appended, one per endpoint routing chose).
    pub async fn send_telemetry(&self, message: Telemetry) -> Result<Vec<Event>, crate::HubError> {
        self.hub
            .send_telemetry(&self.device.identity, message)
            .await
    }

    /// Sends messages this device sent one after another (see [`Hub::send_telemetry_run`]):
    /// a prefix of them is durable when it returns.
    pub async fn send_telemetry_run(&self, messages: Vec<Telemetry>) -> crate::TelemetryRun {
        self.hub
            .send_telemetry_run(&self.device.identity, messages)
            .await
    }

    /// Sends a batch of device-to-cloud messages as this device (see
    /// [`Hub::send_telemetry_batch`]); returns once all are durable.
    pub async fn send_telemetry_batch(
        &self,
        messages: Vec<Telemetry>,
    ) -> Result<Vec<Event>, crate::HubError> {
        self.hub
            .send_telemetry_batch(&self.device.identity, messages)
            .await
    }

    /// Ends the session: detaches from the bus and shows the device disconnected unless a
    /// newer connection holds it.
    pub async fn close(mut self) {
        if let Some(presence) = self.presence.take() {
            leave(&self.hub, &self.device.identity, presence.connection_id).await;
        }
    }
}

impl Drop for DeviceSession {
    fn drop(&mut self) {
        let Some(presence) = self.presence.take() else {
            return;
        };
        let key = self.device.identity.key();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracing::debug!(device = %key, "session dropped without close; leaving in a task");
                let hub = self.hub.clone();
                let who = self.device.identity.clone();
                runtime.spawn(async move { leave(&hub, &who, presence.connection_id).await });
            }
            Err(_) => {
                tracing::warn!(device = %key, "session dropped outside a runtime; left to recovery");
            }
        }
    }
}

/// Detaches a connection and, unless a newer one holds the device, records it disconnected.
async fn leave(hub: &Hub, who: &DeviceIdentity, connection_id: u64) {
    let key = who.key();
    crate::monitoring::disconnected(who);
    hub.bus.detach(&key, connection_id).await;
    if !hub.bus.is_connected(&key).await {
        if let Err(e) = hub.set_identity_connected(who, false).await {
            tracing::warn!(device = %key, error = %e, "could not record the disconnection");
        }
        hub.emit_connection_state(&who.device_id, who.module_id.as_deref(), false)
            .await;
    }
}

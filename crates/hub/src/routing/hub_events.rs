//! The messages the hub itself emits, as IoT Hub shapes them (Azure docs, "Create and read
//! IoT Hub messages", section "Non-telemetry events", and "React to IoT Hub events"): twin
//! change notifications, device lifecycle (created, deleted) and connection state
//! (connected, disconnected: one event each time, not a snapshot). Each carries the
//! application properties `hubName`, `deviceId` (`moduleId` for a module), `operationTimestamp`,
//! `opType` and `iothub-message-schema`, and the system properties `iothub-message-source`,
//! `iothub-connection-device-id`, `content-type: application/json` and
//! `content-encoding: utf-8`. They go only where an enabled route of their source sends them;
//! with none, nothing is built.
//!
//! They are emitted after the change they report is durable; failing to append one is
//! logged and does not undo the change.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::SecondsFormat;
use ironhub_store::NewEvent;
use serde_json::{Value, json};

use super::RoutingSource;
use crate::Hub;

/// Counts connection events of this process, so that two in one tick still order.
static CONNECTION_EVENTS: AtomicU64 = AtomicU64::new(0);

/// What happened to a device's twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinOp {
    /// A patch (`updateTwin`).
    Update,
    /// A replacement (`replaceTwin`).
    Replace,
}

impl Hub {
    /// Whether an enabled route takes messages of `source` (a failure to read the routing
    /// document counts as no).
    pub(crate) async fn routes_take(&self, source: RoutingSource) -> bool {
        match self.compiled_routing().await {
            Ok(c) => c.has_routes(source),
            Err(e) => {
                tracing::warn!(error = %e, "routing document unreadable; hub event not sent");
                false
            }
        }
    }

    /// A device's twin as JSON, as a lifecycle event's body (`None` when it cannot be read).
    pub(crate) async fn twin_json(&self, device_id: &str) -> Option<Value> {
        let twin = self.get_twin_unobserved(device_id).await.ok()?;
        serde_json::to_value(twin).ok()
    }

    /// A twin change notification: `body` is `{"version", "tags"?, "properties": {…}}`.
    pub(crate) async fn emit_twin_change(&self, device_id: &str, op: TwinOp, body: Value) {
        if !self.routes_take(RoutingSource::TwinChangeEvents).await {
            return;
        }
        let op = match op {
            TwinOp::Update => "updateTwin",
            TwinOp::Replace => "replaceTwin",
        };
        self.emit(
            RoutingSource::TwinChangeEvents,
            device_id,
            None,
            op,
            "twinChangeNotification",
            &body,
        )
        .await;
    }

    /// A device was created (`createDeviceIdentity`) or deleted (`deleteDeviceIdentity`);
    /// the body is its twin (for a deletion, as it was). `twin` is only called when a route
    /// takes lifecycle events.
    pub(crate) async fn emit_lifecycle<F>(&self, device_id: &str, created: bool, twin: F)
    where
        F: Future<Output = Option<Value>>,
    {
        if !self.routes_take(RoutingSource::DeviceLifecycleEvents).await {
            return;
        }
        let Some(body) = twin.await else {
            return;
        };
        let op = if created {
            "createDeviceIdentity"
        } else {
            "deleteDeviceIdentity"
        };
        self.emit(
            RoutingSource::DeviceLifecycleEvents,
            device_id,
            None,
            op,
            "deviceLifecycleNotification",
            &body,
        )
        .await;
    }

    /// A device (or module) connected or disconnected.
    pub(crate) async fn emit_connection_state(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        connected: bool,
    ) {
        if !self
            .routes_take(RoutingSource::DeviceConnectionStateEvents)
            .await
        {
            return;
        }
        let body = json!({ "sequenceNumber": self.connection_sequence_number() });
        let op = if connected {
            "deviceConnected"
        } else {
            "deviceDisconnected"
        };
        self.emit(
            RoutingSource::DeviceConnectionStateEvents,
            device_id,
            module_id,
            op,
            "deviceConnectionStateNotification",
            &body,
        )
        .await;
    }

    /// IoT Hub's connection event sequence number: 64 hex digits that grow with every event,
    /// so a reader orders a device's connects and disconnects by comparing them as strings.
    /// Here: the time in 100 ns ticks since 1601 (as Windows counts), then a counter.
    fn connection_sequence_number(&self) -> String {
        let ticks = self
            .now()
            .timestamp_nanos_opt()
            .map_or(0, |n| n / 100 + 116_444_736_000_000_000);
        let n = CONNECTION_EVENTS.fetch_add(1, Ordering::Relaxed);
        format!("{:032X}{:032X}", ticks, n)
    }

    async fn emit(
        &self,
        source: RoutingSource,
        device_id: &str,
        module_id: Option<&str>,
        op: &str,
        schema: &str,
        body: &Value,
    ) {
        let hub_name = crate::events::event_hub_name(self.host_name()).to_owned();
        let mut application: BTreeMap<String, Option<String>> = [
            ("hubName", hub_name.clone()),
            ("deviceId", device_id.to_owned()),
            (
                "operationTimestamp",
                self.now().to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ),
            ("opType", op.to_owned()),
            ("iothub-message-schema", schema.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Some(v)))
        .collect();
        let mut system: BTreeMap<String, String> = [
            ("content-type", "application/json".to_owned()),
            ("content-encoding", "utf-8".to_owned()),
            ("iothub-connection-device-id", device_id.to_owned()),
            ("iothub-message-source", source.message_source().to_owned()),
            ("user-id", hub_name),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(m) = module_id {
            application.insert("moduleId".into(), Some(m.to_owned()));
            system.insert("iothub-connection-module-id".into(), m.to_owned());
        }
        let event = NewEvent {
            device_id: device_id.to_owned(),
            module_id: module_id.map(str::to_owned),
            system_properties: system,
            application_properties: application,
            body: serde_json::to_vec(body).unwrap_or_default(),
        };
        if let Err(e) = self.route_message(source, event).await {
            tracing::warn!(device = %device_id, op, error = %e, "hub event not routed");
        }
    }
}

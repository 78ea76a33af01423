//! What the hub counts and logs for its operator: each operation Azure measures, wrapped once
//! here around the domain's own (`*_unobserved`), so every transport is counted the same way
//! and the rules stay where they are. Counters are `ironhub_observe`'s atomics; a diagnostic
//! record is built only when its category is on. Records carry ids, sizes, names and
//! outcomes, never a key, token, signature or connection string.

use std::time::Instant;

use ironhub_observe::diag::{self, AzureError, Category, Record};
use ironhub_observe::metrics;
use ironhub_store::{C2dMessage, C2dSettle, DeviceRecord, Event};
use serde_json::Value;

use crate::c2d::OutgoingMessage;
use crate::model::{DeviceSpec, MethodRequest, MethodResult, Twin};
use crate::query::QueryPage;
use crate::routing::RoutingSource;
use crate::routing::config::{ExternalKind, Target};
use crate::{
    AuthenticatedDevice, DeviceIdentity, DeviceLogin, DeviceSession, Hub, HubError, Telemetry,
    TelemetryRun,
};

impl AzureError for HubError {
    fn status(&self) -> u16 {
        HubError::status(self)
    }

    fn code(&self) -> u32 {
        HubError::code(self)
    }
}

/// A record about a device (or module) identity.
fn about(category: Category, operation: &'static str, who: &DeviceIdentity) -> Record {
    let record = Record::new(category, operation).property("deviceId", who.device_id.as_str());
    match &who.module_id {
        Some(m) => record.property("moduleId", m.as_str()),
        None => record,
    }
}

impl Hub {
    /// Authenticates a device's login (see `authenticate_unobserved`); a refusal is a
    /// `Connections` record.
    pub async fn authenticate(
        &self,
        login: &DeviceLogin<'_>,
    ) -> Result<AuthenticatedDevice, HubError> {
        let started = Instant::now();
        let result = self.authenticate_unobserved(login).await;
        if let Err(e) = &result
            && diag::enabled(Category::Connections)
        {
            let mut record = Record::new(Category::Connections, "deviceConnect")
                .property("deviceId", login.device_id)
                .since(started)
                .failed(e.status(), e.code(), e);
            if let Some(m) = login.module_id {
                record = record.property("moduleId", m);
            }
            diag::emit(record);
        }
        result
    }

    /// Opens a connected device's session (see `connect_device_unobserved`); a
    /// `Connections` record.
    pub async fn connect_device(&self, device: AuthenticatedDevice) -> DeviceSession {
        let started = Instant::now();
        let session = self.connect_device_unobserved(device).await;
        if diag::enabled(Category::Connections) {
            let who = session.identity();
            diag::emit(
                about(Category::Connections, "deviceConnect", who)
                    .property("authType", who.auth_method())
                    .since(started),
            );
        }
        session
    }

    /// Sends a device-to-cloud message (see `send_telemetry_unobserved`), counted in
    /// `d2c.telemetry.ingress.*` and recorded as `DeviceTelemetry` `ingress`.
    pub async fn send_telemetry(
        &self,
        who: &DeviceIdentity,
        message: Telemetry,
    ) -> Result<Vec<Event>, HubError> {
        let hub = &metrics().hub;
        hub.telemetry_ingress_all.inc();
        let started = diag::enabled(Category::DeviceTelemetry).then(Instant::now);
        let size = message.body.len();
        let result = self.send_telemetry_unobserved(who, message).await;
        match &result {
            Ok(_) => {
                hub.telemetry_ingress_success.inc();
            }
            Err(HubError::Throttled { .. }) => {
                hub.telemetry_ingress_send_throttle.inc();
            }
            Err(_) => {}
        }
        if let Some(started) = started {
            let record = about(Category::DeviceTelemetry, "ingress", who)
                .property("authType", who.auth_method())
                .property("messageSizeInBytes", size)
                .since(started);
            diag::emit(record.outcome(&result));
        }
        result
    }

    /// Sends messages a device sent one after another (see `send_telemetry_run_unobserved`),
    /// each counted in `d2c.telemetry.ingress.*` and recorded as `DeviceTelemetry` `ingress`
    /// as [`Hub::send_telemetry`] does for one: the durable ones and the one refused.
    pub async fn send_telemetry_run(
        &self,
        who: &DeviceIdentity,
        messages: Vec<Telemetry>,
    ) -> TelemetryRun {
        let hub = &metrics().hub;
        let started = diag::enabled(Category::DeviceTelemetry).then(Instant::now);
        let sizes: Vec<usize> = match started {
            Some(_) => messages.iter().map(|m| m.body.len()).collect(),
            None => Vec::new(),
        };
        let run = self.send_telemetry_run_unobserved(who, messages).await;
        let durable = u64::try_from(run.durable).unwrap_or(u64::MAX);
        hub.telemetry_ingress_all
            .inc_by(durable + u64::from(run.refused.is_some()));
        hub.telemetry_ingress_success.inc_by(durable);
        if let Some(HubError::Throttled { .. }) = &run.refused {
            hub.telemetry_ingress_send_throttle.inc();
        }
        if let Some(started) = started {
            let judged = run.durable + usize::from(run.refused.is_some());
            for (i, size) in sizes.into_iter().take(judged).enumerate() {
                let record = about(Category::DeviceTelemetry, "ingress", who)
                    .property("authType", who.auth_method())
                    .property("messageSizeInBytes", size)
                    .since(started);
                let record = match &run.refused {
                    Some(e) if i == run.durable => record.failed(e.status(), e.code(), e),
                    _ => record,
                };
                diag::emit(record);
            }
        }
        run
    }

    /// Sends a batch of device-to-cloud messages (see `send_telemetry_batch_unobserved`),
    /// each counted in `d2c.telemetry.ingress.*`; one `DeviceTelemetry` `ingress` record
    /// for the batch.
    pub async fn send_telemetry_batch(
        &self,
        who: &DeviceIdentity,
        messages: Vec<Telemetry>,
    ) -> Result<Vec<Event>, HubError> {
        let hub = &metrics().hub;
        let count = u64::try_from(messages.len()).unwrap_or(u64::MAX);
        hub.telemetry_ingress_all.inc_by(count);
        let started = diag::enabled(Category::DeviceTelemetry).then(Instant::now);
        let size: usize = messages.iter().map(|m| m.body.len()).sum();
        let result = self.send_telemetry_batch_unobserved(who, messages).await;
        match &result {
            Ok(_) => {
                hub.telemetry_ingress_success.inc_by(count);
            }
            Err(HubError::Throttled { .. }) => {
                hub.telemetry_ingress_send_throttle.inc_by(count);
            }
            Err(_) => {}
        }
        if let Some(started) = started {
            let record = about(Category::DeviceTelemetry, "ingress", who)
                .property("authType", who.auth_method())
                .property("messageSizeInBytes", size)
                .property("batchSize", count)
                .since(started);
            diag::emit(record.outcome(&result));
        }
        result
    }

    /// Queues a cloud-to-device message (see `send_c2d_unobserved`); a `C2DCommands` `send`.
    pub async fn send_c2d(
        &self,
        device_id: &str,
        message: OutgoingMessage,
    ) -> Result<C2dMessage, HubError> {
        let started = Instant::now();
        let size = message.body.len();
        let result = self.send_c2d_unobserved(device_id, message).await;
        if result.is_ok() {
            metrics().process.c2d_sent.inc();
        }
        c2d_record("send", device_id, Some(size), started, &result);
        result
    }

    /// Completes, rejects or abandons a locked message (see `settle_c2d_unobserved`),
    /// counted in `c2d.commands.egress.*.success`; a `C2DCommands` record.
    pub async fn settle_c2d(
        &self,
        device_id: &str,
        lock_token: &str,
        settle: C2dSettle,
    ) -> Result<C2dMessage, HubError> {
        let started = Instant::now();
        let result = self
            .settle_c2d_unobserved(device_id, lock_token, settle)
            .await;
        let hub = &metrics().hub;
        let (counter, operation) = match settle {
            C2dSettle::Complete => (&hub.c2d_complete, "complete"),
            C2dSettle::Reject => (&hub.c2d_reject, "reject"),
            C2dSettle::Abandon => (&hub.c2d_abandon, "abandon"),
        };
        if result.is_ok() {
            counter.inc();
        }
        c2d_record(operation, device_id, None, started, &result);
        result
    }

    /// Dead-letters expired messages (see `expire_c2d_unobserved`), counted in
    /// `C2DMessagesExpired`.
    pub async fn expire_c2d(&self) -> Result<u64, HubError> {
        let result = self.expire_c2d_unobserved().await;
        if let Ok(n) = result
            && n > 0
        {
            metrics().hub.c2d_expired.inc_by(n);
            diag::emit(Record::new(Category::C2DCommands, "expire").property("count", n));
        }
        result
    }

    /// `GET /twins/{id}` (see `get_twin_unobserved`), counted in `c2d.twin.read.*`.
    pub async fn get_twin(&self, device_id: &str) -> Result<Twin, HubError> {
        let result = self.get_twin_unobserved(device_id).await;
        metrics().hub.service_twin_read.record(&result);
        result
    }

    /// `PATCH`/`PUT /twins/{id}` (see `update_twin_unobserved`), counted in
    /// `c2d.twin.update.*`.
    pub async fn update_twin(
        &self,
        device_id: &str,
        doc: &Value,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<Twin, HubError> {
        let result = self
            .update_twin_unobserved(device_id, doc, if_match, replace)
            .await;
        metrics().hub.service_twin_update.record(&result);
        result
    }

    /// A device's read of its twin (see `device_twin_unobserved`), counted in
    /// `d2c.twin.read.*`.
    pub async fn device_twin(&self, device_id: &str) -> Result<Value, HubError> {
        let result = self.device_twin_unobserved(device_id).await;
        metrics().hub.device_twin_read.record(&result);
        result
    }

    /// A device's reported-properties patch (see `patch_reported_unobserved`), counted in
    /// `d2c.twin.update.*`.
    pub async fn patch_reported(&self, device_id: &str, body: &[u8]) -> Result<u64, HubError> {
        let result = self.patch_reported_unobserved(device_id, body).await;
        metrics().hub.device_twin_update.record(&result);
        result
    }

    /// A direct method call (see `call_unobserved`), counted in `c2d.methods.*`; a
    /// `DirectMethods` `send`.
    pub(crate) async fn call(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        request: MethodRequest,
    ) -> Result<MethodResult, HubError> {
        let started = Instant::now();
        let name = request.method_name.clone().unwrap_or_default();
        let request_size = request.payload.to_string().len();
        let result = self.call_unobserved(device_id, module_id, request).await;
        metrics().hub.methods.record(&result);
        if diag::enabled(Category::DirectMethods) {
            let mut record = Record::new(Category::DirectMethods, "send")
                .property("deviceId", device_id)
                .property("methodName", name)
                .property("requestSize", request_size)
                .since(started);
            if let Some(m) = module_id {
                record = record.property("moduleId", m);
            }
            if let Ok(answer) = &result {
                record = record
                    .property("responseSize", answer.payload.to_string().len())
                    .property("status", answer.status);
            }
            diag::emit(record.outcome(&result));
        }
        result
    }

    /// A query page (see `query_twins_unobserved`), counted in `twinQueries.*`; a
    /// `TwinQueries` `query`.
    pub async fn query_twins(
        &self,
        text: &str,
        continuation: Option<&str>,
        page_size: Option<usize>,
    ) -> Result<QueryPage, HubError> {
        let started = Instant::now();
        let result = self
            .query_twins_unobserved(text, continuation, page_size)
            .await;
        let hub = &metrics().hub;
        hub.queries.record(&result);
        if let Ok(page) = &result {
            hub.query_result_size.0.observe(page.items.len() as f64);
        }
        if diag::enabled(Category::TwinQueries) {
            let mut record = Record::new(Category::TwinQueries, "query")
                .property("query", text)
                .property("continuation", continuation.is_some())
                .since(started);
            if let Some(size) = page_size {
                record = record.property("pageSize", size);
            }
            if let Ok(page) = &result {
                record = record.property("resultSize", page.items.len());
            }
            diag::emit(record.outcome(&result));
        }
        result
    }

    /// `PUT /devices/{id}` (see `put_device_unobserved`); a `DeviceIdentityOperations`
    /// `create` or `update`.
    pub async fn put_device(
        &self,
        id: &str,
        spec: &DeviceSpec,
        if_match: Option<&str>,
    ) -> Result<DeviceRecord, HubError> {
        let started = Instant::now();
        let result = self.put_device_unobserved(id, spec, if_match).await;
        let operation = if if_match.is_some() {
            "update"
        } else {
            "create"
        };
        identity_record(operation, id, started, &result);
        result
    }

    /// Finishes a `PUT /devices/{id}` whose write the caller applied (see
    /// [`Hub::prepare_put_device`]); a `DeviceIdentityOperations` `create` or `update`.
    pub async fn finish_put_device(
        &self,
        prepared: crate::registry::PreparedDevice,
        written: Result<Option<DeviceRecord>, ironhub_store::WriteConflict>,
    ) -> Result<DeviceRecord, HubError> {
        let started = prepared.started;
        let id = prepared.write().device_id().to_owned();
        let operation = if prepared.creates() {
            "create"
        } else {
            "update"
        };
        let result = self.finish_put_device_unobserved(prepared, written).await;
        identity_record(operation, &id, started, &result);
        result
    }

    /// `DELETE /devices/{id}` (see `delete_device_unobserved`); a
    /// `DeviceIdentityOperations` `delete`.
    pub async fn delete_device(&self, id: &str, if_match: Option<&str>) -> Result<(), HubError> {
        let started = Instant::now();
        let result = self.delete_device_unobserved(id, if_match).await;
        identity_record("delete", id, started, &result);
        result
    }

    /// Reads the figures the store holds into the gauges a scrape shows: `connectedDeviceCount`,
    /// `devices.totalDevices`, and each consumer group's lag on the built-in event log.
    pub async fn refresh_metrics(&self) -> Result<(), HubError> {
        let counts = self.store.device_counts().await?;
        let hub = &metrics().hub;
        hub.connected_devices
            .set(i64::try_from(counts.connected).unwrap_or(i64::MAX));
        hub.total_devices
            .set(i64::try_from(counts.total).unwrap_or(i64::MAX));
        let mut groups = self.events.consumer_groups().await?;
        if !groups.iter().any(|g| g == "$Default") {
            groups.push("$Default".to_owned());
        }
        for group in groups {
            let mut lag = 0;
            for partition in 0..self.events.partition_count() {
                let bounds = self.events.bounds(partition).await?;
                let next = self
                    .events
                    .checkpoint(&group, partition)
                    .await?
                    .unwrap_or(bounds.first)
                    .max(bounds.first);
                lag += bounds.next.saturating_sub(next);
            }
            metrics().process.set_event_log_lag(&group, lag);
        }
        Ok(())
    }
}

/// A `C2DCommands` record about one message, correlated by its id, when the category is on.
fn c2d_record(
    operation: &'static str,
    device_id: &str,
    size: Option<usize>,
    started: Instant,
    result: &Result<C2dMessage, HubError>,
) {
    if !diag::enabled(Category::C2DCommands) {
        return;
    }
    let mut record = Record::new(Category::C2DCommands, operation)
        .property("deviceId", device_id)
        .since(started);
    if let Some(size) = size {
        record = record.property("messageSizeInBytes", size);
    }
    if let Ok(m) = result {
        record = record
            .property("messageId", m.message_id.as_str())
            .correlation(m.message_id.as_str());
    }
    diag::emit(record.outcome(result));
}

/// A `DeviceIdentityOperations` record, when the category is on.
fn identity_record<T>(
    operation: &'static str,
    id: &str,
    started: Instant,
    result: &Result<T, HubError>,
) {
    if diag::enabled(Category::DeviceIdentityOperations) {
        let record = Record::new(Category::DeviceIdentityOperations, operation)
            .property("deviceId", id)
            .since(started);
        diag::emit(record.outcome(result));
    }
}

/// The `Connections` record of a connection that ended.
pub(crate) fn disconnected(who: &DeviceIdentity) {
    if diag::enabled(Category::Connections) {
        diag::emit(
            about(Category::Connections, "deviceDisconnect", who)
                .property("authType", who.auth_method()),
        );
    }
}

/// `RoutingDeliveries`'s `RoutingSource`, as Azure names it.
fn routing_source(source: RoutingSource) -> &'static str {
    match source {
        RoutingSource::DeviceMessages => "Telemetry",
        RoutingSource::TwinChangeEvents => "TwinChangeEvents",
        RoutingSource::DeviceLifecycleEvents => "DeviceLifecycleEvents",
        RoutingSource::DeviceConnectionStateEvents => "DeviceConnectionStateEvents",
    }
}

/// Counts one message routed to an endpoint in `RoutingDeliveries`; a failed append is a
/// `Routes` record.
pub(crate) fn delivered(endpoint: &str, target: &Target, source: RoutingSource, ok: bool) {
    let kind = match target {
        Target::BuiltIn => "builtin",
        Target::Stream { .. } => "eventHubs",
        Target::External { kind, .. } => match kind {
            ExternalKind::StorageContainer => "storageContainers",
            ExternalKind::Webhook => "webhooks",
            ExternalKind::NatsSubject => "natsSubjects",
        },
    };
    let result = if ok { "success" } else { "failure" };
    metrics()
        .hub
        .routing_delivery(endpoint, kind, routing_source(source), result);
    if !ok && diag::enabled(Category::Routes) {
        diag::emit(
            Record::new(Category::Routes, "undeliverableMessage")
                .property("endpointName", endpoint)
                .property("endpointType", kind)
                .property("origin", routing_source(source))
                .failed(500, 500001, "the endpoint's log refused the message"),
        );
    }
}

/// A device message no route took (and no fallback): `RoutingDeliveries` with `orphaned`.
pub(crate) fn orphaned(source: RoutingSource) {
    if source != RoutingSource::DeviceMessages {
        return;
    }
    metrics()
        .hub
        .routing_delivery("", "", routing_source(source), "orphaned");
    if diag::enabled(Category::Routes) {
        diag::emit(
            Record::new(Category::Routes, "messageOrphaned")
                .property("origin", routing_source(source)),
        );
    }
}

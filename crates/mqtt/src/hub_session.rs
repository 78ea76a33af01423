//! An admitted device's IoT Hub session, without a socket: it takes what comes in (packets
//! from the device, messages from the device bus, the cloud-to-device timer) and returns the
//! packets to send, in order. `hub_connection` moves the bytes; the decisions are here and in
//! the hub.
//!
//! Every answer is computed after the hub has done the work: a QoS 1 telemetry PUBACK comes
//! back only once the event log has the message.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use ironhub_hub::{Annotations, DeviceIdentity, DeviceSession, Hub, Telemetry};
use ironhub_store::{
    BusError, BusMessage, C2dMessage, C2dSettle, InputMessage, MethodCall, MethodResponse,
};

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Connect, Packet, PubAck, Publish, SubAck, Subscribe, SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use tokio::time::Instant;

use crate::context::idle_timeout;
use crate::topics::{self, Feature, Inbound};

/// Cloud-to-device messages sent at QoS 1 and not yet acknowledged, at most.
const C2D_WINDOW: usize = 5;
/// How often a session subscribed to cloud-to-device messages looks at its queue even without
/// a notification (a missed one, a lock run out elsewhere), and drops deliveries whose lock ran
/// out so that they are sent again.
const C2D_POLL: Duration = Duration::from_secs(15);
/// Module input messages sent at QoS 1 and not yet acknowledged, at most.
const INPUT_WINDOW: usize = 16;

/// Why a session ended; decides whether the Will is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The device sent DISCONNECT.
    Graceful,
    /// Another connection of the device took over.
    TakenOver,
    /// The server is draining: the connection is closed after what it received was
    /// acknowledged, without the Will (the device reconnects to another node).
    Drained,
    /// Anything else: a dropped socket, a protocol violation, an expired token, a timeout.
    Unclean,
}

/// What the session answers to an input: packets to send, or the end of the session.
pub(crate) type Answer = Result<Vec<Packet>, End>;

/// A telemetry PUBLISH as the session takes it ([`HubSession::telemetry_of`]).
pub(crate) struct TelemetryPublish {
    /// The packet id its PUBACK names; `None` at QoS 0.
    pub(crate) ack: Option<u16>,
    pub(crate) message: Telemetry,
}

/// See the module documentation.
pub(crate) struct HubSession {
    device: DeviceSession,
    /// How long the device may stay silent.
    idle: Duration,
    /// Persist subscriptions across connections (clean session 0).
    persistent: bool,
    features: BTreeSet<Feature>,
    will: Option<Publish>,
    /// Method calls sent to the device and not yet answered, by rid.
    pending_methods: HashSet<String>,
    /// The QoS of the cloud-to-device subscription (a restored session's is 1).
    c2d_qos: QoS,
    /// Cloud-to-device messages published at QoS 1 and not yet acknowledged: packet id →
    /// (lock token, when the lock runs out).
    c2d_inflight: HashMap<u16, (String, Instant)>,
    /// Cloud-to-device messages published at QoS 0, completed once they are written
    /// ([`HubSession::sent`]): lock tokens.
    c2d_unsettled: Vec<String>,
    /// The last packet id used for a publish to the device.
    last_pkid: u16,
    /// When the queue is next looked at without a notification.
    next_c2d_poll: Instant,
    /// The QoS of the module input subscription.
    input_qos: QoS,
    /// The highest sequence number of the module's input queue sent on this connection: the
    /// queue is read after it (what was not acknowledged goes out again on the next one).
    input_cursor: u64,
    /// Module input messages published at QoS 1 and not yet acknowledged: packet id →
    /// sequence number.
    input_inflight: HashMap<u16, u64>,
    /// Module input messages published at QoS 0, removed once written: sequence numbers.
    input_unsettled: Vec<u64>,
}

impl HubSession {
    /// The session of `device` after its CONNECT: a persistent session's subscriptions are
    /// restored, a clean one's forgotten; the Will is kept if it is the device's telemetry.
    pub(crate) async fn new(device: DeviceSession, connect: &Connect) -> HubSession {
        let hub = device.hub();
        let who = device.identity();
        let client_id = who.key();
        let persistent = !connect.clean_session;
        let mut features = BTreeSet::new();
        if persistent {
            match hub.mqtt_session(&client_id).await {
                Ok(Some(names)) => {
                    features.extend(names.iter().filter_map(|n| Feature::from_name(n)));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not load the MQTT session"),
            }
        } else if let Err(e) = hub.set_mqtt_session(&client_id, None).await {
            tracing::warn!(error = %e, "could not discard the MQTT session");
        }
        // The Will counts only when it is the device's own telemetry topic.
        let will = connect.last_will.as_ref().and_then(|w| {
            let topic = w.topic.clone();
            if !topics::is_valid_topic_name(&topic) {
                return None;
            }
            match topics::inbound(&topic, &who.device_id, who.module_id.as_deref()) {
                Inbound::Telemetry { .. } => {
                    let mut p = Publish::from_bytes(topic, w.qos, w.message.clone());
                    p.retain = w.retain;
                    Some(p)
                }
                _ => None,
            }
        });
        HubSession {
            idle: idle_timeout(connect.keep_alive),
            persistent,
            features,
            will,
            pending_methods: HashSet::new(),
            c2d_qos: QoS::AtLeastOnce,
            c2d_inflight: HashMap::new(),
            c2d_unsettled: Vec::new(),
            last_pkid: 0,
            next_c2d_poll: Instant::now() + C2D_POLL,
            input_qos: QoS::AtLeastOnce,
            input_cursor: 0,
            input_inflight: HashMap::new(),
            input_unsettled: Vec::new(),
            device,
        }
    }

    fn hub(&self) -> &Hub {
        self.device.hub()
    }

    fn who(&self) -> &DeviceIdentity {
        self.device.identity()
    }

    /// How long the device may stay silent before the session ends.
    pub(crate) fn idle(&self) -> Duration {
        self.idle
    }

    /// When the device's SAS token runs out; `None` for certificates.
    pub(crate) fn expiry(&self) -> Option<Instant> {
        self.device
            .expires()
            .map(|se| Instant::now() + ironhub_auth::time_left(se, ironhub_auth::unix_now()))
    }

    /// When [`HubSession::on_c2d_poll`] is due; `None` without a cloud-to-device or module
    /// input subscription.
    pub(crate) fn c2d_poll_at(&self) -> Option<Instant> {
        (self.features.contains(&Feature::CloudToDevice)
            || self.features.contains(&Feature::ModuleInputs))
        .then_some(self.next_c2d_poll)
    }

    /// The next message the device bus brings; `None` when the bus let go.
    pub(crate) async fn next_bus_message(&mut self) -> Option<BusMessage> {
        self.device.next_message().await
    }

    /// What is sent right after CONNACK: a restored persistent session gets what was queued
    /// while the device (or module) was away (PYDEV never subscribes again after
    /// reconnecting).
    pub(crate) async fn start(&mut self) -> Vec<Packet> {
        let mut out = Vec::new();
        self.pump_c2d(&mut out).await;
        self.pump_inputs(&mut out).await;
        out
    }

    /// The periodic look at the cloud-to-device queue: deliveries whose lock ran out are
    /// forgotten (the queue sends them again), and waiting messages are sent.
    pub(crate) async fn on_c2d_poll(&mut self) -> Vec<Packet> {
        let now = Instant::now();
        self.next_c2d_poll = now + C2D_POLL;
        self.c2d_inflight.retain(|_, (_, until)| *until > now);
        self.start().await
    }

    /// A packet from the device.
    pub(crate) async fn on_packet(&mut self, packet: Packet) -> Answer {
        let mut out = Vec::new();
        match packet {
            Packet::Publish(p) => self.on_publish(p, &mut out).await?,
            Packet::Subscribe(s) => {
                let ack = self.on_subscribe(&s).await;
                out.push(Packet::SubAck(ack));
                self.pump_c2d(&mut out).await;
                self.pump_inputs(&mut out).await;
            }
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(&u).await;
                out.push(Packet::UnsubAck(UnsubAck::new(u.pkid)));
            }
            Packet::PingReq => out.push(Packet::PingResp),
            Packet::Disconnect => return Err(End::Graceful),
            Packet::PubAck(ack) => {
                if let Some((token, _)) = self.c2d_inflight.remove(&ack.pkid) {
                    self.settle_c2d(&token, C2dSettle::Complete).await;
                    self.pump_c2d(&mut out).await;
                } else if let Some(seq) = self.input_inflight.remove(&ack.pkid) {
                    self.complete_input(seq).await;
                    self.pump_inputs(&mut out).await;
                }
            }
            other => {
                tracing::info!(device = %self.who().key(), packet = ?other, "unexpected packet");
                return Err(End::Unclean);
            }
        }
        Ok(out)
    }

    /// The message a PUBLISH carries when it is the device's own telemetry at QoS 0 or 1 on
    /// a valid topic, with the packet id its PUBACK names (`None` at QoS 0); `None` for any
    /// other packet, left to [`HubSession::on_packet`].
    pub(crate) fn telemetry_of(&self, packet: &Packet) -> Option<TelemetryPublish> {
        let Packet::Publish(publish) = packet else {
            return None;
        };
        if publish.qos == QoS::ExactlyOnce || !topics::is_valid_topic_name(&publish.topic) {
            return None;
        }
        let who = self.who();
        let Inbound::Telemetry { properties } =
            topics::inbound(&publish.topic, &who.device_id, who.module_id.as_deref())
        else {
            return None;
        };
        let annotations = Annotations {
            retain: publish.retain,
            will: false,
        };
        let message = topics::telemetry(properties, publish.payload.to_vec(), annotations);
        let ack = (publish.qos == QoS::AtLeastOnce).then_some(publish.pkid);
        Some(TelemetryPublish { ack, message })
    }

    /// Telemetry PUBLISHes the device sent one after another, sent to the hub as one run: the
    /// PUBACKs of those that are durable, in the order they came; and the end of the session
    /// when one was refused (too large, throttled, not durable), as IoT Hub closes the
    /// connection then: neither it nor any later one is acknowledged.
    pub(crate) async fn on_telemetry(
        &mut self,
        run: Vec<TelemetryPublish>,
    ) -> (Vec<Packet>, Option<End>) {
        let (acks, messages): (Vec<_>, Vec<_>) =
            run.into_iter().map(|t| (t.ack, t.message)).unzip();
        let sent = self.device.send_telemetry_run(messages).await;
        let out = acks
            .into_iter()
            .take(sent.durable)
            .flatten()
            .map(|pkid| Packet::PubAck(PubAck::new(pkid)))
            .collect();
        let end = sent.refused.map(|e| {
            tracing::info!(device = %self.who().key(), error = %e, "telemetry refused; closing");
            End::Unclean
        });
        (out, end)
    }

    async fn on_publish(&mut self, publish: Publish, out: &mut Vec<Packet>) -> Result<(), End> {
        let key = self.who().key();
        if publish.qos == QoS::ExactlyOnce {
            tracing::info!(device = %key, "QoS 2 is not supported; closing");
            return Err(End::Unclean);
        }
        if !topics::is_valid_topic_name(&publish.topic) {
            tracing::info!(device = %key, topic = %publish.topic, "malformed PUBLISH topic (wildcard or NUL); closing");
            return Err(End::Unclean);
        }
        let who = self.who();
        let kind = topics::inbound(&publish.topic, &who.device_id, who.module_id.as_deref());
        match kind {
            Inbound::Telemetry { .. } => {
                let telemetry = self.telemetry_of(&Packet::Publish(publish));
                let (acks, end) = self.on_telemetry(telemetry.into_iter().collect()).await;
                out.extend(acks);
                return end.map_or(Ok(()), Err);
            }
            Inbound::MethodResponse { status, rid } => {
                if self.pending_methods.remove(&rid)
                    && let Ok(call_id) = rid.parse::<u64>()
                {
                    let response = MethodResponse {
                        status,
                        payload: publish.payload.to_vec(),
                    };
                    self.hub().bus().complete_method(call_id, Ok(response));
                }
            }
            // Twin answers go to the requesting connection even if it never subscribed to
            // `$iothub/twin/res/#` (PYDEV's reconnect GET does that): nobody else can take them.
            Inbound::TwinGet { rid } => {
                let (topic, body) = match self.hub().identity_twin(self.who()).await {
                    Ok(twin) => (
                        topics::twin_response(200, &rid, None),
                        twin.to_string().into_bytes(),
                    ),
                    Err(e) => (
                        topics::twin_response(e.status(), &rid, None),
                        e.device_body(),
                    ),
                };
                out.push(publish_qos0(topic, body));
            }
            Inbound::TwinPatchReported { rid } => {
                let patched = self
                    .hub()
                    .identity_patch_reported(self.who(), &publish.payload)
                    .await;
                let (topic, body) = match patched {
                    Ok(version) => (topics::twin_response(204, &rid, Some(version)), Vec::new()),
                    Err(e) => (
                        topics::twin_response(e.status(), &rid, None),
                        e.device_body(),
                    ),
                };
                out.push(publish_qos0(topic, body));
            }
            // Answered only to a device that subscribed to them, as IoT Hub does.
            Inbound::IssueCertificate { rid } => {
                let answers = crate::credentials::issue_certificate(
                    self.hub(),
                    &self.who().device_id,
                    &rid,
                    &publish.payload,
                )
                .await;
                if self.features.contains(&Feature::CredentialResponses) {
                    out.extend(
                        answers
                            .into_iter()
                            .map(|(topic, body)| publish_qos0(topic, body)),
                    );
                }
            }
            Inbound::Unsupported => {
                tracing::info!(device = %key, topic = %publish.topic, "publish to an unsupported topic; closing");
                return Err(End::Unclean);
            }
        }
        if publish.qos == QoS::AtLeastOnce {
            out.push(Packet::PubAck(PubAck::new(publish.pkid)));
        }
        Ok(())
    }

    async fn on_subscribe(&mut self, subscribe: &Subscribe) -> SubAck {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        for filter in &subscribe.filters {
            let who = self.who();
            match topics::subscription(&filter.path, &who.device_id, who.module_id.as_deref()) {
                Some(feature) => {
                    self.features.insert(feature);
                    let granted = match filter.qos {
                        QoS::AtMostOnce => QoS::AtMostOnce,
                        _ => QoS::AtLeastOnce,
                    };
                    if feature == Feature::CloudToDevice {
                        self.c2d_qos = granted;
                    }
                    if feature == Feature::ModuleInputs {
                        self.input_qos = granted;
                    }
                    codes.push(SubscribeReasonCode::Success(granted));
                }
                None => {
                    tracing::info!(device = %who.key(), filter = %filter.path, "subscription refused");
                    codes.push(SubscribeReasonCode::Failure);
                }
            }
        }
        self.save_features().await;
        SubAck::new(subscribe.pkid, codes)
    }

    async fn on_unsubscribe(&mut self, unsubscribe: &Unsubscribe) {
        for filter in &unsubscribe.topics {
            let who = self.who();
            if let Some(f) = topics::subscription(filter, &who.device_id, who.module_id.as_deref())
            {
                self.features.remove(&f);
            }
        }
        self.save_features().await;
    }

    async fn save_features(&self) {
        if !self.persistent {
            return;
        }
        let names = self.features.iter().map(|f| f.name().to_owned()).collect();
        if let Err(e) = self
            .hub()
            .set_mqtt_session(&self.who().key(), Some(names))
            .await
        {
            tracing::warn!(error = %e, "could not save the MQTT session");
        }
    }

    /// A message from the device bus.
    pub(crate) async fn on_bus(&mut self, message: BusMessage) -> Answer {
        let mut out = Vec::new();
        match message {
            BusMessage::TakenOver => return Err(End::TakenOver),
            BusMessage::Revoked => return Err(End::Unclean),
            BusMessage::C2dAvailable => self.pump_c2d(&mut out).await,
            BusMessage::DesiredPatch { version, body } => {
                if self.features.contains(&Feature::DesiredPatches) {
                    out.push(publish_qos0(topics::desired_patch(version), body));
                }
            }
            BusMessage::Method(call) => {
                let MethodCall {
                    call_id,
                    name,
                    payload,
                } = *call;
                if self.features.contains(&Feature::Methods) {
                    let rid = call_id.to_string();
                    out.push(publish_qos0(topics::method_request(&name, &rid), payload));
                    self.pending_methods.insert(rid);
                } else {
                    self.hub()
                        .bus()
                        .complete_method(call_id, Err(BusError::NotSubscribed));
                }
            }
            BusMessage::InputsAvailable => self.pump_inputs(&mut out).await,
        }
        Ok(out)
    }

    /// Takes waiting cloud-to-device messages while the in-flight window has room: each is
    /// locked in the queue and published at the subscription's QoS. At QoS 1 the PUBACK
    /// completes it; at QoS 0 writing it does ([`HubSession::sent`]).
    async fn pump_c2d(&mut self, out: &mut Vec<Packet>) {
        if !self.features.contains(&Feature::CloudToDevice) {
            return;
        }
        while self.c2d_inflight.len() < C2D_WINDOW {
            let device_id = &self.who().device_id;
            let message = match self.hub().receive_c2d(device_id).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(device = %self.who().key(), error = %e, "could not read the cloud-to-device queue");
                    break;
                }
            };
            let Some(token) = message.lock_token.clone() else {
                continue;
            };
            let topic = c2d_topic(&self.who().device_id, &message);
            let mut publish = Publish::new(topic, self.c2d_qos, message.body);
            tracing::debug!(device = %self.who().key(), message_id = %message.message_id, "cloud-to-device message delivered");
            if self.c2d_qos == QoS::AtLeastOnce {
                let pkid = self.next_pkid();
                publish.pkid = pkid;
                let until = Instant::now() + ironhub_hub::c2d::LOCK_TIMEOUT;
                self.c2d_inflight.insert(pkid, (token, until));
                out.push(Packet::Publish(publish));
            } else {
                out.push(Packet::Publish(publish));
                self.c2d_unsettled.push(token);
            }
        }
    }

    /// Sends a module the messages waiting at its inputs, in queue order, while the in-flight
    /// window has room: at QoS 1 the PUBACK removes each from the queue; at QoS 0 writing it
    /// does ([`HubSession::sent`]).
    async fn pump_inputs(&mut self, out: &mut Vec<Packet>) {
        if !self.features.contains(&Feature::ModuleInputs) {
            return;
        }
        let Some(module_id) = self.who().module_id.clone() else {
            return;
        };
        loop {
            let room = INPUT_WINDOW.saturating_sub(self.input_inflight.len());
            if room == 0 {
                return;
            }
            let pending = match self
                .hub()
                .pending_inputs(self.who(), self.input_cursor, room)
                .await
            {
                Ok(pending) => pending,
                Err(e) => {
                    tracing::warn!(device = %self.who().key(), error = %e, "could not read the module's input queue");
                    return;
                }
            };
            if pending.is_empty() {
                return;
            }
            for queued in pending {
                self.input_cursor = self.input_cursor.max(queued.sequence_number);
                let topic = input_topic(&self.who().device_id, &module_id, &queued.message);
                let mut publish = Publish::new(topic, self.input_qos, queued.message.body);
                if self.input_qos == QoS::AtLeastOnce {
                    publish.pkid = self.next_pkid();
                    self.input_inflight
                        .insert(publish.pkid, queued.sequence_number);
                } else {
                    self.input_unsettled.push(queued.sequence_number);
                }
                out.push(Packet::Publish(publish));
            }
        }
    }

    async fn complete_input(&self, seq: u64) {
        if let Err(e) = self.hub().complete_input(self.who(), seq).await {
            tracing::warn!(device = %self.who().key(), error = %e, "could not remove a delivered input message");
        }
    }

    /// Tells the session that the packets it returned were written: the cloud-to-device
    /// and module input messages among them sent at QoS 0 are complete.
    pub(crate) async fn sent(&mut self) {
        for token in std::mem::take(&mut self.c2d_unsettled) {
            self.settle_c2d(&token, C2dSettle::Complete).await;
        }
        for seq in std::mem::take(&mut self.input_unsettled) {
            self.complete_input(seq).await;
        }
    }

    /// A packet id for a QoS 1 publish: not 0, not one still waiting for its PUBACK.
    fn next_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.wrapping_add(1);
            if self.last_pkid != 0
                && !self.c2d_inflight.contains_key(&self.last_pkid)
                && !self.input_inflight.contains_key(&self.last_pkid)
            {
                return self.last_pkid;
            }
        }
    }

    async fn settle_c2d(&self, token: &str, settle: C2dSettle) {
        if let Err(e) = self
            .hub()
            .settle_c2d(&self.who().device_id, token, settle)
            .await
        {
            // The lock ran out (and the message went out again) or the message expired.
            tracing::debug!(device = %self.who().key(), error = %e, "cloud-to-device message not settled");
        }
    }

    /// Ends the session: unacknowledged cloud-to-device messages go back to the queue (and
    /// a connection that took over hears of them), the Will is sent after an unclean end, and
    /// the device session is closed.
    pub(crate) async fn end(mut self, end: End) {
        self.release_c2d().await;
        if end == End::Unclean {
            self.send_will().await;
        }
        self.device.close().await;
    }

    async fn release_c2d(&mut self) {
        let inflight: Vec<_> = self.c2d_inflight.drain().map(|(_, (t, _))| t).collect();
        if inflight.is_empty() {
            return;
        }
        for token in &inflight {
            self.settle_c2d(token, C2dSettle::Abandon).await;
        }
        let key = self.who().key();
        let bus = self.hub().bus();
        if bus.is_connected(&key).await {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                bus.send(&key, BusMessage::C2dAvailable),
            )
            .await;
        }
    }

    /// Sends the Will as telemetry, marked `iothub-MessageType: Will` by the hub.
    async fn send_will(&mut self) {
        let Some(will) = self.will.take() else {
            return;
        };
        let who = self.who();
        if let Inbound::Telemetry { properties } =
            topics::inbound(&will.topic, &who.device_id, who.module_id.as_deref())
        {
            let annotations = Annotations {
                retain: will.retain,
                will: true,
            };
            let message = topics::telemetry(properties, will.payload.to_vec(), annotations);
            if let Err(e) = self.device.send_telemetry(message).await {
                tracing::warn!(device = %self.who().key(), error = %e, "could not send the Will");
            }
        }
    }
}

fn publish_qos0(topic: String, payload: Vec<u8>) -> Packet {
    Packet::Publish(Publish::new(topic, QoS::AtMostOnce, payload))
}

/// `devices/{id}/modules/{mid}/inputs/{input}/{property bag}`: the system properties IoT
/// Edge's hub sends (message and correlation id, content type and encoding, the sending
/// device, module and output), then the sender's properties.
fn input_topic(device_id: &str, module_id: &str, m: &InputMessage) -> String {
    let system = [
        ("$.mid", "message-id"),
        ("$.cid", "correlation-id"),
        ("$.ct", "content-type"),
        ("$.ce", "content-encoding"),
        ("$.cdid", "iothub-connection-device-id"),
        ("$.cmid", "iothub-connection-module-id"),
        ("$.on", "iothub-outputname"),
    ];
    let pairs = system
        .into_iter()
        .filter_map(|(short, name)| Some((short, Some(m.system.get(name)?.as_str()))))
        .chain(
            m.application
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref())),
        );
    format!(
        "devices/{device_id}/modules/{module_id}/inputs/{}/{}",
        m.input,
        topics::encode_property_bag(pairs)
    )
}

/// `devices/{id}/messages/devicebound/{property bag}`: system properties first, then
/// `iothub-ack`, then the application properties in the sender's order, so that a Tasmota
/// `topic` property can be the last pair.
fn c2d_topic(device_id: &str, m: &C2dMessage) -> String {
    let expiry = ironhub_hub::model::azure_time(Some(m.expiry_time));
    let mut pairs: Vec<(&str, Option<&str>)> = vec![("$.mid", Some(&m.message_id))];
    let optional = [
        ("$.cid", m.correlation_id.as_deref()),
        ("$.uid", m.user_id.as_deref()),
        ("$.to", Some(m.to.as_str())),
        ("$.ct", m.content_type.as_deref()),
        ("$.ce", m.content_encoding.as_deref()),
        ("$.exp", Some(expiry.as_str())),
    ];
    pairs.extend(optional.into_iter().filter(|(_, v)| v.is_some()));
    if m.ack != ironhub_store::AckMode::None {
        pairs.push(("iothub-ack", Some(m.ack.as_str())));
    }
    pairs.extend(
        m.properties
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str()))),
    );
    format!(
        "devices/{device_id}/messages/devicebound/{}",
        topics::encode_property_bag(pairs)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
    use ironhub_hub::c2d::OutgoingMessage;
    use ironhub_hub::model::DeviceSpec;
    use ironhub_hub::{AuthMethod, AuthenticatedDevice, Backends};
    use rumqttc::mqttbytes::v4::SubscribeFilter;

    use super::*;

    pub(crate) async fn hub() -> (Hub, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let backends = Backends {
            store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
            events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
            bus: Arc::new(LocalBus::new()),
        };
        let hub = Hub::open(backends, vec!["myhub.example".into()])
            .await
            .unwrap();
        hub.put_device("d1", &DeviceSpec::default(), None)
            .await
            .unwrap();
        (hub, dir)
    }

    pub(crate) async fn session(hub: &Hub) -> HubSession {
        let device = AuthenticatedDevice {
            identity: DeviceIdentity {
                device_id: "d1".into(),
                module_id: None,
                generation_id: "gen-1".into(),
                auth: AuthMethod::Sas,
                model_id: None,
            },
            expires: None,
        };
        let device = hub.connect_device(device).await;
        HubSession::new(device, &Connect::new("d1")).await
    }

    pub(crate) fn publish(topic: &str, qos: QoS, pkid: u16, payload: &[u8]) -> Packet {
        let mut p = Publish::new(topic, qos, payload.to_vec());
        p.pkid = pkid;
        Packet::Publish(p)
    }

    fn subscribe(pkid: u16, filters: &[(&str, QoS)]) -> Packet {
        let mut s = Subscribe::new_many(
            filters
                .iter()
                .map(|(path, qos)| SubscribeFilter::new((*path).to_owned(), *qos)),
        );
        s.pkid = pkid;
        Packet::Subscribe(s)
    }

    /// The one publish among `packets`.
    fn published(packets: &[Packet]) -> &Publish {
        match packets {
            [Packet::Publish(p)] => p,
            other => panic!("expected one PUBLISH, got {other:?}"),
        }
    }

    pub(crate) async fn events(hub: &Hub) -> Vec<ironhub_store::Event> {
        let mut all = Vec::new();
        for partition in 0..4 {
            all.extend(hub.events().read(partition, 0, 100).await.unwrap());
        }
        all
    }

    #[tokio::test]
    async fn subscriptions_are_granted_at_most_qos_1_and_unknown_filters_refused() {
        let (hub, _dir) = hub().await;
        let mut s = session(&hub).await;
        let answer = s
            .on_packet(subscribe(
                7,
                &[
                    ("devices/d1/messages/devicebound/#", QoS::ExactlyOnce),
                    ("$iothub/methods/POST/#", QoS::AtMostOnce),
                    ("#", QoS::AtLeastOnce),
                ],
            ))
            .await
            .unwrap();
        let expected = SubAck::new(
            7,
            vec![
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Success(QoS::AtMostOnce),
                SubscribeReasonCode::Failure,
            ],
        );
        assert_eq!(answer, [Packet::SubAck(expected)]);
        assert!(s.c2d_poll_at().is_some());
        let answer = s.on_packet(Packet::PingReq).await.unwrap();
        assert_eq!(answer, [Packet::PingResp]);
    }

    #[tokio::test]
    async fn telemetry_at_qos_1_is_acknowledged_once_durable_and_at_qos_0_not_at_all() {
        let (hub, _dir) = hub().await;
        let mut s = session(&hub).await;
        let topic = "devices/d1/messages/events/%24.mid=m1&k=v";
        let answer = s
            .on_packet(publish(topic, QoS::AtMostOnce, 0, b"zero"))
            .await;
        assert_eq!(answer.unwrap(), []);
        let answer = s
            .on_packet(publish(topic, QoS::AtLeastOnce, 42, b"one"))
            .await;
        assert_eq!(answer.unwrap(), [Packet::PubAck(PubAck::new(42))]);
        // The PUBACK came after the append: both messages are in the log.
        let stored = events(&hub).await;
        let bodies: Vec<_> = stored.iter().map(|e| e.event.body.clone()).collect();
        assert_eq!(bodies, [b"zero".to_vec(), b"one".to_vec()]);
        let first = &stored[0].event;
        assert_eq!(first.system_properties["message-id"], "m1");
        assert_eq!(first.application_properties["k"].as_deref(), Some("v"));

        // Another device's topic, and QoS 2, end the session uncleanly.
        let other = publish("devices/d2/messages/events/", QoS::AtLeastOnce, 1, b"");
        assert_eq!(s.on_packet(other).await, Err(End::Unclean));
        let qos2 = publish("devices/d1/messages/events/", QoS::ExactlyOnce, 2, b"");
        assert_eq!(s.on_packet(qos2).await, Err(End::Unclean));
        assert_eq!(s.on_packet(Packet::Disconnect).await, Err(End::Graceful));
    }

    #[tokio::test]
    async fn cloud_to_device_is_delivered_on_the_bus_hint_and_completed_by_the_puback() {
        let (hub, _dir) = hub().await;
        let mut s = session(&hub).await;
        let sub = subscribe(
            1,
            &[("devices/d1/messages/devicebound/#", QoS::AtLeastOnce)],
        );
        s.on_packet(sub).await.unwrap();
        let message = OutgoingMessage {
            message_id: Some("c1".into()),
            properties: vec![("topic".into(), "x".into())],
            body: b"hello".to_vec(),
            ..OutgoingMessage::default()
        };
        hub.send_c2d("d1", message).await.unwrap();
        let hint = s.next_bus_message().await.unwrap();
        assert_eq!(hint, BusMessage::C2dAvailable);
        let answer = s.on_bus(hint).await.unwrap();
        let delivered = published(&answer);
        assert_eq!(delivered.qos, QoS::AtLeastOnce);
        assert_ne!(delivered.pkid, 0);
        assert!(
            delivered
                .topic
                .starts_with("devices/d1/messages/devicebound/%24.mid=c1&"),
            "{}",
            delivered.topic
        );
        assert!(delivered.topic.ends_with("&topic=x"), "{}", delivered.topic);
        assert_eq!(&delivered.payload[..], b"hello");
        s.sent().await;
        // Locked while unacknowledged; gone once the PUBACK completes it.
        assert_eq!(hub.receive_c2d("d1").await.unwrap(), None);
        let ack = Packet::PubAck(PubAck::new(delivered.pkid));
        assert_eq!(s.on_packet(ack).await.unwrap(), []);
        s.end(End::Graceful).await;
        let purged = hub.purge_c2d("d1").await.unwrap();
        assert_eq!(purged.total_messages_purged, 0);
    }

    #[tokio::test]
    async fn an_unacknowledged_delivery_goes_back_to_the_queue_when_the_session_ends() {
        let (hub, _dir) = hub().await;
        let mut s = session(&hub).await;
        let sub = subscribe(
            1,
            &[("devices/d1/messages/devicebound/#", QoS::AtLeastOnce)],
        );
        s.on_packet(sub).await.unwrap();
        hub.send_c2d("d1", OutgoingMessage::default())
            .await
            .unwrap();
        let hint = s.next_bus_message().await.unwrap();
        assert_eq!(
            published(&s.on_bus(hint).await.unwrap()).qos,
            QoS::AtLeastOnce
        );
        s.end(End::Unclean).await;
        assert!(hub.receive_c2d("d1").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn twin_get_and_reported_patch_are_answered_on_the_response_topic() {
        let (hub, _dir) = hub().await;
        let mut s = session(&hub).await;
        let answer = s
            .on_packet(publish("$iothub/twin/GET/?$rid=1", QoS::AtMostOnce, 0, b""))
            .await
            .unwrap();
        let got = published(&answer);
        assert_eq!(got.topic, "$iothub/twin/res/200/?$rid=1");
        let twin: serde_json::Value = serde_json::from_slice(&got.payload).unwrap();
        assert!(twin["desired"]["$version"].is_number(), "{twin}");

        let patch = publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=2",
            QoS::AtLeastOnce,
            9,
            br#"{"temperature":21}"#,
        );
        let answer = s.on_packet(patch).await.unwrap();
        match answer.as_slice() {
            [Packet::Publish(p), Packet::PubAck(ack)] => {
                assert!(
                    p.topic
                        .starts_with("$iothub/twin/res/204/?$rid=2&$version="),
                    "{}",
                    p.topic
                );
                assert_eq!(ack.pkid, 9);
            }
            other => panic!("{other:?}"),
        }
        let bad = publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=3",
            QoS::AtMostOnce,
            0,
            b"[",
        );
        let answer = s.on_packet(bad).await.unwrap();
        assert_eq!(published(&answer).topic, "$iothub/twin/res/400/?$rid=3");
    }

    /// Calls the method `reboot` of `d1` in a task of its own.
    fn call_reboot(hub: &Hub) -> tokio::task::JoinHandle<Result<MethodResponse, BusError>> {
        let hub = hub.clone();
        tokio::spawn(async move {
            hub.bus()
                .call_method("d1", "reboot", b"{}".to_vec(), Duration::from_secs(10))
                .await
        })
    }

    #[tokio::test]
    async fn a_method_call_is_published_and_the_device_s_answer_completes_it() {
        let (hub, _dir) = hub().await;
        let mut s = session(&hub).await;
        let call = call_reboot(&hub);
        // Not subscribed yet: the call fails at once.
        let first = s.next_bus_message().await.unwrap();
        assert_eq!(s.on_bus(first).await.unwrap(), []);
        assert_eq!(call.await.unwrap(), Err(BusError::NotSubscribed));

        s.on_packet(subscribe(1, &[("$iothub/methods/POST/#", QoS::AtMostOnce)]))
            .await
            .unwrap();
        let call = call_reboot(&hub);
        let request = s.next_bus_message().await.unwrap();
        let answer = s.on_bus(request).await.unwrap();
        let topic = &published(&answer).topic;
        let rid = topic
            .strip_prefix("$iothub/methods/POST/reboot/?$rid=")
            .unwrap()
            .to_owned();
        let response = publish(
            &format!("$iothub/methods/res/200/?$rid={rid}"),
            QoS::AtMostOnce,
            0,
            br#"{"ok":true}"#,
        );
        assert_eq!(s.on_packet(response).await.unwrap(), []);
        let response = call.await.unwrap().unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.payload, br#"{"ok":true}"#);
    }

    #[tokio::test]
    async fn a_second_connection_takes_over_and_the_device_stays_connected() {
        let (hub, _dir) = hub().await;
        let mut old = session(&hub).await;
        let new = session(&hub).await;
        let taken = old.next_bus_message().await.unwrap();
        assert_eq!(old.on_bus(taken).await, Err(End::TakenOver));
        old.end(End::TakenOver).await;
        assert!(hub.bus().is_connected("d1").await);
        new.end(End::Graceful).await;
        assert!(!hub.bus().is_connected("d1").await);
    }
}

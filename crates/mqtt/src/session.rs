//! One device connection: CONNECT and authentication, then packets from the device and
//! messages from the device bus, until either side ends it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ironhub_auth::Credentials;
use ironhub_dps::Dps;
use ironhub_hub::{
    Annotations, AuthenticatedDevice, DeviceIdentity, DeviceLogin, DeviceSession, Hub, HubError,
};
use ironhub_store::{BusError, BusMessage, C2dMessage, C2dSettle, MethodResponse};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck, Subscribe,
    SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use rumqttc::mqttbytes::{Error as CodecError, Protocol, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::topics::{self, Feature, Inbound};
use crate::username::Username;

/// Largest packet read: a 256 KiB message plus its topic and properties.
const MAX_PACKET: usize = 256 * 1024 + 64 * 1024;
/// How long a client has to send CONNECT after the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// IoT Hub's largest keep-alive; the server waits 1.5 times the keep-alive.
pub(crate) const MAX_KEEP_ALIVE_SECS: u64 = 1177;
/// Cloud-to-device messages sent at QoS 1 and not yet acknowledged, at most.
const C2D_WINDOW: usize = 5;
/// How often a session subscribed to cloud-to-device messages looks at its queue even without
/// a notification (a missed one, a lock run out elsewhere), and drops deliveries whose lock ran
/// out so that they are sent again.
const C2D_POLL: Duration = Duration::from_secs(15);

/// What the transport knows about a connection.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    pub hub: Hub,
    /// The Device Provisioning Service on the same endpoint, if the server has one.
    pub dps: Option<Dps>,
    pub peer: SocketAddr,
    /// The TLS client certificate chain (DER, leaf first); empty when none was sent.
    pub client_certificates: Arc<Vec<Vec<u8>>>,
}

/// Why a session ended; decides whether the Will is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The device sent DISCONNECT.
    Graceful,
    /// Another connection of the device took over.
    TakenOver,
    /// Anything else: a dropped socket, a protocol violation, an expired token, a timeout.
    Unclean,
}

/// Serves one MQTT connection to its end.
pub async fn serve<S>(stream: S, ctx: ConnectionContext)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (reader, writer) = tokio::io::split(stream);
    let mut conn = Conn {
        reader,
        writer,
        buf: BytesMut::with_capacity(4096),
        peer: ctx.peer,
    };
    let connect = match tokio::time::timeout(CONNECT_TIMEOUT, conn.next_packet()).await {
        Ok(Ok(Some(Packet::Connect(c)))) => c,
        Ok(Ok(Some(other))) => {
            tracing::debug!(peer = %ctx.peer, packet = ?other, "first packet is not CONNECT");
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(peer = %ctx.peer, error = %e, "unreadable CONNECT");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %ctx.peer, "no CONNECT in time");
            return;
        }
    };
    // The same endpoint serves DPS: its username is `{idScope}/registrations/{id}/…`.
    if let Some(dps) = &ctx.dps
        && let Some(user) = crate::provisioning::DpsUsername::of(dps, &connect)
    {
        crate::provisioning::serve(conn, dps.clone(), ctx.clone(), connect, user).await;
        return;
    }
    let admitted = match admit(&ctx, &connect).await {
        Ok(a) => a,
        Err(code) => {
            let _ = conn.send(Packet::ConnAck(ConnAck::new(code, false))).await;
            return;
        }
    };
    let key = admitted.identity.key();
    // Attached, and recorded connected, before CONNACK: a device that is told it is connected
    // is seen as connected.
    let mut device = ctx.hub.connect_device(admitted.clone()).await;
    let mut session = Session::new(ctx.hub.clone(), admitted, &connect).await;
    if conn
        .send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
        .await
        .is_ok()
    {
        tracing::info!(target: "Connections", device = %key, peer = %ctx.peer, "device connected");
        let end = session.run(&mut conn, &mut device).await;
        tracing::info!(target: "Connections", device = %key, end = ?end, "device disconnected");
        session.release_c2d().await;
        if end == End::Unclean {
            session.send_will().await;
        }
    }
    device.close().await;
}

/// CONNECT's checks: the protocol, the client id and username; then the hub authenticates.
async fn admit(
    ctx: &ConnectionContext,
    connect: &Connect,
) -> Result<AuthenticatedDevice, ConnectReturnCode> {
    if connect.protocol != Protocol::V4 {
        return Err(ConnectReturnCode::RefusedProtocolVersion);
    }
    let (device_id, module_id) = match connect.client_id.split_once('/') {
        Some((d, m)) => (d.to_owned(), Some(m.to_owned())),
        None => (connect.client_id.clone(), None),
    };
    if device_id.is_empty() || ironhub_hub::registry::validate_device_id(&device_id).is_err() {
        return Err(ConnectReturnCode::BadClientId);
    }
    let (username, password) = match &connect.login {
        Some(login) => (Some(login.username.as_str()), Some(login.password.as_str())),
        None => (None, None),
    };
    let user = username.and_then(Username::parse);
    if let Some(user) = &user
        && (user.device_id != device_id || user.module_id != module_id)
    {
        tracing::info!(peer = %ctx.peer, client_id = %connect.client_id, "username names another device");
        return Err(ConnectReturnCode::BadUserNamePassword);
    }
    let login = DeviceLogin {
        device_id: &device_id,
        module_id: module_id.as_deref(),
        model_id: user.as_ref().and_then(|u| u.param("model-id")),
        credentials: Credentials::new(password, &ctx.client_certificates),
    };
    let admitted = ctx.hub.authenticate(&login).await.map_err(|e| {
        tracing::info!(target: "Connections", peer = %ctx.peer, device = %connect.client_id, error = %e, "connection refused");
        match e {
            HubError::ServerError(_) => ConnectReturnCode::ServiceUnavailable,
            _ => ConnectReturnCode::NotAuthorized,
        }
    })?;
    Ok(admitted)
}

/// The socket, with a buffer of bytes read but not yet parsed.
pub(crate) struct Conn<S> {
    pub(crate) reader: ReadHalf<S>,
    pub(crate) writer: WriteHalf<S>,
    pub(crate) buf: BytesMut,
    pub(crate) peer: SocketAddr,
}

#[derive(Debug)]
pub(crate) enum ConnError {
    Io(std::io::Error),
    Codec(CodecError),
    /// Fixed-header flags a packet of its type may not carry.
    ReservedFlags(u8),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "{e}"),
            ConnError::Codec(e) => write!(f, "{e:?}"),
            ConnError::ReservedFlags(byte1) => {
                write!(f, "reserved fixed-header flags in 0x{byte1:02X}")
            }
        }
    }
}

/// MQTT 3.1.1 §2.2.2: every packet but PUBLISH has fixed flags (0b0010 for PUBREL, SUBSCRIBE
/// and UNSUBSCRIBE, 0 otherwise), and a receiver closes the connection on any other
/// [MQTT-2.2.2-2]. The codec does not check them. (PUBLISH's QoS 3 is refused by the codec.)
fn flags_are_valid(byte1: u8) -> bool {
    let flags = byte1 & 0x0F;
    match byte1 >> 4 {
        3 => true,
        6 | 8 | 10 => flags == 0b0010,
        _ => flags == 0,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// A complete packet from the buffer, if one is there.
    pub(crate) fn parse(&mut self) -> Result<Option<Packet>, ConnError> {
        if let Some(&byte1) = self.buf.first()
            && !flags_are_valid(byte1)
        {
            return Err(ConnError::ReservedFlags(byte1));
        }
        match Packet::read(&mut self.buf, MAX_PACKET) {
            Ok(p) => Ok(Some(p)),
            Err(CodecError::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(ConnError::Codec(e)),
        }
    }

    /// Reads until a packet is complete; `None` at end of stream.
    pub(crate) async fn next_packet(&mut self) -> Result<Option<Packet>, ConnError> {
        loop {
            if let Some(p) = self.parse()? {
                return Ok(Some(p));
            }
            if self
                .reader
                .read_buf(&mut self.buf)
                .await
                .map_err(ConnError::Io)?
                == 0
            {
                return Ok(None);
            }
        }
    }

    pub(crate) async fn send(&mut self, packet: Packet) -> Result<(), ConnError> {
        let mut out = BytesMut::with_capacity(packet.size() + 8);
        packet
            .write(&mut out, usize::MAX)
            .map_err(ConnError::Codec)?;
        self.writer.write_all(&out).await.map_err(ConnError::Io)?;
        self.writer.flush().await.map_err(ConnError::Io)
    }
}

/// The state of an admitted device's session.
struct Session {
    hub: Hub,
    who: DeviceIdentity,
    expires: Option<u64>,
    keep_alive: Option<Duration>,
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
    c2d_inflight: HashMap<u16, (String, tokio::time::Instant)>,
    /// The last packet id used for a publish to the device.
    last_pkid: u16,
    /// When the queue is next looked at without a notification.
    next_c2d_poll: tokio::time::Instant,
}

impl Session {
    async fn new(hub: Hub, admitted: AuthenticatedDevice, connect: &Connect) -> Session {
        let client_id = admitted.identity.key();
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
        let keep_alive = match u64::from(connect.keep_alive) {
            0 => MAX_KEEP_ALIVE_SECS,
            k => k.min(MAX_KEEP_ALIVE_SECS),
        };
        // The Will counts only when it is the device's own telemetry topic.
        let will = connect.last_will.as_ref().and_then(|w| {
            let topic = w.topic.clone();
            if !topics::is_valid_topic_name(&topic) {
                return None;
            }
            match topics::inbound(
                &topic,
                &admitted.identity.device_id,
                admitted.identity.module_id.as_deref(),
            ) {
                Inbound::Telemetry { .. } => {
                    Some(Publish::from_bytes(topic, w.qos, w.message.clone()))
                }
                _ => None,
            }
            .map(|mut p| {
                p.retain = w.retain;
                p
            })
        });
        Session {
            hub,
            who: admitted.identity,
            expires: admitted.expires,
            keep_alive: Some(Duration::from_millis(keep_alive * 1500)),
            persistent,
            features,
            will,
            pending_methods: HashSet::new(),
            c2d_qos: QoS::AtLeastOnce,
            c2d_inflight: HashMap::new(),
            last_pkid: 0,
            next_c2d_poll: tokio::time::Instant::now() + C2D_POLL,
        }
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        device: &mut DeviceSession,
    ) -> End {
        let expiry = self.expires.map(|se| {
            let now = ironhub_auth::unix_now();
            tokio::time::Instant::now() + Duration::from_secs(se.saturating_sub(now))
        });
        // A restored persistent session gets what was queued while the device was away
        // (PYDEV never subscribes again after reconnecting).
        if let Err(end) = self.pump_c2d(conn).await {
            return end;
        }
        loop {
            // Packets already buffered are handled before waiting for more.
            match conn.parse() {
                Ok(Some(packet)) => {
                    if let Err(end) = self.on_packet(conn, packet).await {
                        return end;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::info!(peer = %conn.peer, error = %e, "malformed packet");
                    return End::Unclean;
                }
            }
            let idle = async {
                match self.keep_alive {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            let expired = async {
                match expiry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let poll_c2d = async {
                if self.features.contains(&Feature::CloudToDevice) {
                    tokio::time::sleep_until(self.next_c2d_poll).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = poll_c2d => {
                    self.next_c2d_poll = tokio::time::Instant::now() + C2D_POLL;
                    let now = tokio::time::Instant::now();
                    self.c2d_inflight.retain(|_, (_, until)| *until > now);
                    if let Err(end) = self.pump_c2d(conn).await {
                        return end;
                    }
                }
                read = conn.reader.read_buf(&mut conn.buf) => match read {
                    Ok(0) | Err(_) => return End::Unclean,
                    Ok(_) => {}
                },
                message = device.next_message() => match message {
                    Some(m) => {
                        if let Err(end) = self.on_bus(conn, m).await {
                            return end;
                        }
                    }
                    None => return End::Unclean,
                },
                () = idle => {
                    tracing::info!(device = %self.who.key(), "keep-alive expired");
                    return End::Unclean;
                }
                () = expired => {
                    tracing::info!(device = %self.who.key(), "SAS token expired");
                    return End::Unclean;
                }
            }
        }
    }

    async fn on_packet<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        packet: Packet,
    ) -> Result<(), End> {
        let io = |_| End::Unclean;
        match packet {
            Packet::Publish(p) => self.on_publish(conn, p).await,
            Packet::Subscribe(s) => {
                let ack = self.on_subscribe(&s).await;
                conn.send(Packet::SubAck(ack)).await.map_err(io)?;
                self.pump_c2d(conn).await
            }
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(&u).await;
                conn.send(Packet::UnsubAck(UnsubAck::new(u.pkid)))
                    .await
                    .map_err(io)
            }
            Packet::PingReq => conn.send(Packet::PingResp).await.map_err(io),
            Packet::Disconnect => Err(End::Graceful),
            Packet::PubAck(ack) => {
                if let Some((token, _)) = self.c2d_inflight.remove(&ack.pkid) {
                    self.settle_c2d(&token, C2dSettle::Complete).await;
                }
                self.pump_c2d(conn).await
            }
            other => {
                tracing::info!(device = %self.who.key(), packet = ?other, "unexpected packet");
                Err(End::Unclean)
            }
        }
    }

    async fn on_publish<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        publish: Publish,
    ) -> Result<(), End> {
        if publish.qos == QoS::ExactlyOnce {
            tracing::info!(device = %self.who.key(), "QoS 2 is not supported; closing");
            return Err(End::Unclean);
        }
        if !topics::is_valid_topic_name(&publish.topic) {
            tracing::info!(device = %self.who.key(), topic = %publish.topic, "malformed PUBLISH topic (wildcard or NUL); closing");
            return Err(End::Unclean);
        }
        let kind = topics::inbound(
            &publish.topic,
            &self.who.device_id,
            self.who.module_id.as_deref(),
        );
        match kind {
            Inbound::Telemetry { properties } => {
                let annotations = Annotations {
                    retain: publish.retain,
                    will: false,
                };
                let message = topics::telemetry(properties, publish.payload.to_vec(), annotations);
                if let Err(e) = self.hub.send_telemetry(&self.who, message).await {
                    // Too large, or not durable: no PUBACK; IoT Hub closes the connection.
                    tracing::info!(device = %self.who.key(), error = %e, "telemetry refused; closing");
                    return Err(End::Unclean);
                }
            }
            Inbound::MethodResponse { status, rid } => {
                if self.pending_methods.remove(&rid)
                    && let Ok(call_id) = rid.parse::<u64>()
                {
                    let response = MethodResponse {
                        status,
                        payload: publish.payload.to_vec(),
                    };
                    self.hub.bus().complete_method(call_id, Ok(response));
                }
            }
            // Twin answers go to the requesting connection even if it never subscribed to
            // `$iothub/twin/res/#` (PYDEV's reconnect GET does that): nobody else can take them.
            Inbound::TwinGet { rid } => {
                let (topic, body) = match self.hub.device_twin(&self.who.device_id).await {
                    Ok(twin) => (
                        topics::twin_response(200, &rid, None),
                        twin.to_string().into_bytes(),
                    ),
                    Err(e) => (
                        topics::twin_response(e.status(), &rid, None),
                        error_body(&e),
                    ),
                };
                self.publish_qos0(conn, topic, body).await?;
            }
            Inbound::TwinPatchReported { rid } => {
                let (topic, body) = match self
                    .hub
                    .patch_reported(&self.who.device_id, &publish.payload)
                    .await
                {
                    Ok(version) => (topics::twin_response(204, &rid, Some(version)), Vec::new()),
                    Err(e) => (
                        topics::twin_response(e.status(), &rid, None),
                        error_body(&e),
                    ),
                };
                self.publish_qos0(conn, topic, body).await?;
            }
            // Answered only to a device that subscribed to them, as IoT Hub does.
            Inbound::IssueCertificate { rid } => {
                let answers = crate::credentials::issue_certificate(
                    &self.hub,
                    &self.who.device_id,
                    &rid,
                    &publish.payload,
                )
                .await;
                if self.features.contains(&Feature::CredentialResponses) {
                    for (topic, body) in answers {
                        self.publish_qos0(conn, topic, body).await?;
                    }
                }
            }
            Inbound::Unsupported => {
                tracing::info!(device = %self.who.key(), topic = %publish.topic, "publish to an unsupported topic; closing");
                return Err(End::Unclean);
            }
        }
        if publish.qos == QoS::AtLeastOnce {
            conn.send(Packet::PubAck(PubAck::new(publish.pkid)))
                .await
                .map_err(|_| End::Unclean)?;
        }
        Ok(())
    }

    async fn on_subscribe(&mut self, subscribe: &Subscribe) -> SubAck {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        for filter in &subscribe.filters {
            match topics::subscription(
                &filter.path,
                &self.who.device_id,
                self.who.module_id.as_deref(),
            ) {
                Some(feature) => {
                    self.features.insert(feature);
                    let granted = match filter.qos {
                        QoS::AtMostOnce => QoS::AtMostOnce,
                        _ => QoS::AtLeastOnce,
                    };
                    if feature == Feature::CloudToDevice {
                        self.c2d_qos = granted;
                    }
                    codes.push(SubscribeReasonCode::Success(granted));
                }
                None => {
                    tracing::info!(device = %self.who.key(), filter = %filter.path, "subscription refused");
                    codes.push(SubscribeReasonCode::Failure);
                }
            }
        }
        self.save_features().await;
        SubAck::new(subscribe.pkid, codes)
    }

    async fn on_unsubscribe(&mut self, unsubscribe: &Unsubscribe) {
        for filter in &unsubscribe.topics {
            if let Some(f) =
                topics::subscription(filter, &self.who.device_id, self.who.module_id.as_deref())
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
            .hub
            .set_mqtt_session(&self.who.key(), Some(names))
            .await
        {
            tracing::warn!(error = %e, "could not save the MQTT session");
        }
    }

    async fn on_bus<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        message: BusMessage,
    ) -> Result<(), End> {
        match message {
            BusMessage::TakenOver => Err(End::TakenOver),
            BusMessage::Revoked => Err(End::Unclean),
            BusMessage::C2dAvailable => self.pump_c2d(conn).await,
            BusMessage::DesiredPatch { version, body } => {
                if self.features.contains(&Feature::DesiredPatches) {
                    self.publish_qos0(conn, topics::desired_patch(version), body)
                        .await?;
                }
                Ok(())
            }
            BusMessage::Method {
                call_id,
                name,
                payload,
            } => {
                if !self.features.contains(&Feature::Methods) {
                    self.hub
                        .bus()
                        .complete_method(call_id, Err(BusError::NotSubscribed));
                    return Ok(());
                }
                let rid = call_id.to_string();
                self.pending_methods.insert(rid.clone());
                self.publish_qos0(conn, topics::method_request(&name, &rid), payload)
                    .await
            }
        }
    }

    async fn publish_qos0<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Conn<S>,
        topic: String,
        payload: Vec<u8>,
    ) -> Result<(), End> {
        conn.send(Packet::Publish(Publish::new(
            topic,
            QoS::AtMostOnce,
            payload,
        )))
        .await
        .map_err(|_| End::Unclean)
    }

    /// Delivers waiting cloud-to-device messages while the in-flight window has room: each is
    /// locked in the queue, then published at the subscription's QoS. At QoS 1 the PUBACK
    /// completes it; at QoS 0 sending does.
    async fn pump_c2d<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
    ) -> Result<(), End> {
        if !self.features.contains(&Feature::CloudToDevice) {
            return Ok(());
        }
        while self.c2d_inflight.len() < C2D_WINDOW {
            let message = match self.hub.receive_c2d(&self.who.device_id).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(device = %self.who.key(), error = %e, "could not read the cloud-to-device queue");
                    break;
                }
            };
            let Some(token) = message.lock_token.clone() else {
                continue;
            };
            let topic = c2d_topic(&self.who.device_id, &message);
            let mut publish = Publish::new(topic, self.c2d_qos, message.body);
            if self.c2d_qos == QoS::AtLeastOnce {
                let pkid = self.next_pkid();
                publish.pkid = pkid;
                let until = tokio::time::Instant::now() + ironhub_hub::c2d::LOCK_TIMEOUT;
                self.c2d_inflight.insert(pkid, (token.clone(), until));
            }
            if conn.send(Packet::Publish(publish)).await.is_err() {
                return Err(End::Unclean);
            }
            tracing::debug!(device = %self.who.key(), message_id = %message.message_id, "cloud-to-device message delivered");
            if self.c2d_qos == QoS::AtMostOnce {
                self.settle_c2d(&token, C2dSettle::Complete).await;
            }
        }
        Ok(())
    }

    /// A packet id for a QoS 1 publish: not 0, not one still waiting for its PUBACK.
    fn next_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.wrapping_add(1);
            if self.last_pkid != 0 && !self.c2d_inflight.contains_key(&self.last_pkid) {
                return self.last_pkid;
            }
        }
    }

    async fn settle_c2d(&self, token: &str, settle: C2dSettle) {
        if let Err(e) = self
            .hub
            .settle_c2d(&self.who.device_id, token, settle)
            .await
        {
            // The lock ran out (and the message went out again) or the message expired.
            tracing::debug!(device = %self.who.key(), error = %e, "cloud-to-device message not settled");
        }
    }

    /// At the end of a connection, puts unacknowledged messages back in the queue so that the
    /// next connection gets them at once, and tells that connection if it is already there
    /// (a takeover).
    async fn release_c2d(&mut self) {
        let inflight: Vec<_> = self.c2d_inflight.drain().map(|(_, (t, _))| t).collect();
        if inflight.is_empty() {
            return;
        }
        for token in &inflight {
            self.settle_c2d(token, C2dSettle::Abandon).await;
        }
        let key = self.who.key();
        if self.hub.bus().is_connected(&key).await {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                self.hub.bus().send(&key, BusMessage::C2dAvailable),
            )
            .await;
        }
    }

    /// Sends the Will as telemetry, marked `iothub-MessageType: Will`.
    async fn send_will(&mut self) {
        let Some(will) = self.will.take() else {
            return;
        };
        if let Inbound::Telemetry { properties } = topics::inbound(
            &will.topic,
            &self.who.device_id,
            self.who.module_id.as_deref(),
        ) {
            let annotations = Annotations {
                retain: will.retain,
                will: true,
            };
            let message = topics::telemetry(properties, will.payload.to_vec(), annotations);
            if let Err(e) = self.hub.send_telemetry(&self.who, message).await {
                tracing::warn!(device = %self.who.key(), error = %e, "could not send the Will");
            }
        }
    }
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

/// The JSON body of an error answer on a response topic.
fn error_body(e: &HubError) -> Vec<u8> {
    let body = ironhub_wire::error::ErrorBody {
        error_code: Some(e.code()),
        message: Some(e.to_string()),
        ..ironhub_wire::error::ErrorBody::default()
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::flags_are_valid;

    #[test]
    fn fixed_header_flags_are_checked_for_every_packet_type() {
        // CONNECT, PUBACK, PINGREQ, DISCONNECT: flags 0.
        for ok in [0x10, 0x40, 0xC0, 0xE0, 0x62, 0x82, 0xA2, 0x30, 0x3B] {
            assert!(flags_are_valid(ok), "0x{ok:02X}");
        }
        // SUBSCRIBE without its 0b0010, PUBREL with 0, PINGREQ and CONNECT with a bit set.
        for bad in [0x80, 0x83, 0x60, 0xA0, 0xC1, 0x11, 0x48, 0xE2] {
            assert!(!flags_are_valid(bad), "0x{bad:02X}");
        }
    }
}

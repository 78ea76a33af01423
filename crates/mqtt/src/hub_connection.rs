//! An IoT Hub device connection after its CONNECT: the CONNECT's checks and the hub's
//! authentication, CONNACK, then the loop that feeds the session (`hub_session`) with packets,
//! bus messages and timers and writes what it answers, until either side ends it.

use ironhub_auth::Credentials;
use ironhub_hub::health::Drain;
use ironhub_hub::network::{self, NetworkEndpoint};
use ironhub_hub::{AuthenticatedDevice, DeviceLogin, HubError};
use rumqttc::mqttbytes::Protocol;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Packet};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::context::ConnectionContext;
use crate::framing::{Conn, ConnError};
use crate::hub_session::{Answer, End, HubSession, TelemetryPublish};
use crate::username::Username;

/// Serves an IoT Hub connection whose CONNECT was read, to its end.
///
/// What runs once (authentication, the session's start and end) is boxed where it is awaited,
/// so the connection's task does not hold its state while the device is idle
/// ([`crate::serve`]).
pub(crate) async fn serve<S>(mut conn: Conn<S>, ctx: &ConnectionContext, connect: Box<Connect>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let admitted = match Box::pin(admit(ctx, &connect)).await {
        Ok(a) => a,
        Err(code) => {
            let _ = conn.send(Packet::ConnAck(ConnAck::new(code, false))).await;
            return;
        }
    };
    let key = admitted.identity.key();
    // Counted open until the session ended, so a drain waits for its acknowledgements.
    let _open = ctx.hub.drain().track();
    // Attached, and recorded connected, before CONNACK: a device that is told it is connected
    // is seen as connected.
    let device = Box::pin(ctx.hub.connect_device(admitted)).await;
    let mut session = Box::pin(HubSession::new(device, &connect)).await;
    drop(connect);
    let connack = Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false));
    let end = if conn.send(connack).await.is_ok() {
        tracing::info!(target: "Connections", device = %key, peer = %ctx.peer, "device connected");
        let refused = Box::pin(network::refused(
            ctx.hub.clone(),
            ctx.network_peer(),
            &[NetworkEndpoint::HubDevice],
        ));
        let end = run(&mut conn, &mut session, ctx.hub.drain(), refused).await;
        if end == End::Drained {
            conn.close().await;
        }
        tracing::info!(target: "Connections", device = %key, end = ?end, "device disconnected");
        end
    } else {
        // The device never heard it was connected: no Will for it.
        End::Graceful
    };
    Box::pin(session.end(end)).await;
}

/// CONNECT's checks: the protocol, the node not draining, the client id and username; then
/// the hub authenticates.
async fn admit(
    ctx: &ConnectionContext,
    connect: &Connect,
) -> Result<AuthenticatedDevice, ConnectReturnCode> {
    if connect.protocol != Protocol::V4 {
        return Err(ConnectReturnCode::RefusedProtocolVersion);
    }
    // A connection accepted just before a drain began: the device goes elsewhere.
    if ctx.hub.drain().is_draining() {
        return Err(ConnectReturnCode::ServiceUnavailable);
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
    // The diagnostic log's `operationVersion`.
    if let Some(version) = user.as_ref().and_then(|u| u.param("api-version")) {
        ironhub_observe::caller::set_api_version(version);
    }
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
    ctx.hub.authenticate(&login).await.map_err(|e| {
        tracing::info!(target: "Connections", peer = %ctx.peer, device = %connect.client_id, error = %e, "connection refused");
        match e {
            HubError::ServerError(_) | HubError::ServiceUnavailable(_) => {
                ConnectReturnCode::ServiceUnavailable
            }
            _ => ConnectReturnCode::NotAuthorized,
        }
    })
}

/// Writes what the session answered and tells it so; the session's end, or a write error's.
async fn deliver<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &mut HubSession,
    answer: Answer,
) -> Result<(), End> {
    let packets = answer?;
    conn.send_all(&packets).await.map_err(|_| End::Unclean)?;
    Box::pin(session.sent()).await;
    Ok(())
}

/// Telemetry PUBLISHes taken into one run at most, and the payload bytes after which a run
/// takes no more: what a connection holds beyond its read buffer, whatever the client sends.
const RUN_MESSAGES: usize = 32;
const RUN_BYTES: usize = 64 * 1024;

/// A packet read, or why the bytes are not one.
type Parsed = Result<Option<Packet>, ConnError>;

/// The telemetry PUBLISHes that follow `first` in what the socket already has (read without
/// waiting), up to [`RUN_MESSAGES`] and [`RUN_BYTES`]; and the packet (or error) that ended
/// the run, to be handled after it.
fn read_run<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &HubSession,
    first: TelemetryPublish,
) -> (Vec<TelemetryPublish>, Option<Parsed>) {
    let mut bytes = first.message.body.len();
    let mut run = vec![first];
    while run.len() < RUN_MESSAGES && bytes < RUN_BYTES {
        let parsed = match conn.parse() {
            Ok(None) if conn.fill_now() => continue,
            parsed => parsed,
        };
        match parsed {
            Ok(Some(packet)) => match session.telemetry_of(&packet) {
                Some(next) => {
                    bytes += next.message.body.len();
                    run.push(next);
                }
                None => return (run, Some(Ok(Some(packet)))),
            },
            Ok(None) => break,
            Err(e) => return (run, Some(Err(e))),
        }
    }
    (run, None)
}

/// The connection's loop: buffered packets first, then whichever comes first of the socket,
/// the bus, the cloud-to-device timer, the keep-alive, the token's expiry and the node's
/// drain. Each packet is answered (its PUBACK after what it carries is durable) before the
/// next is waited for, so a drain ends the connection with every received message answered.
/// Telemetry PUBLISHes the socket already holds are taken together ([`read_run`]): one
/// durable write (one group commit) for the run, and its PUBACKs, in order, in one write.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &mut HubSession,
    drain: &Drain,
    mut refused: std::pin::Pin<Box<impl Future<Output = ()>>>,
) -> End {
    let expiry = session.expiry();
    let idle = session.idle();
    let started = Ok(Box::pin(session.start()).await);
    if let Err(end) = deliver(conn, session, started).await {
        return end;
    }
    // A packet read after a run of telemetry, answered after it.
    let mut held: Option<Parsed> = None;
    loop {
        match held.take().unwrap_or_else(|| conn.parse()) {
            Ok(Some(packet)) => {
                let answer = match session.telemetry_of(&packet) {
                    Some(first) => {
                        let (run, next) = read_run(conn, session, first);
                        held = next;
                        let (acks, end) = Box::pin(session.on_telemetry(run)).await;
                        if let Err(end) = deliver(conn, session, Ok(acks)).await {
                            return end;
                        }
                        match end {
                            Some(end) => Err(end),
                            None => continue,
                        }
                    }
                    None => Box::pin(session.on_packet(packet)).await,
                };
                if let Err(end) = deliver(conn, session, answer).await {
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
        let poll_at = session.c2d_poll_at();
        let answer = tokio::select! {
            () = sleep_until(poll_at) => Ok(Box::pin(session.on_c2d_poll()).await),
            read = conn.fill() => {
                if !read {
                    return End::Unclean;
                }
                continue;
            }
            message = session.next_bus_message() => match message {
                Some(m) => Box::pin(session.on_bus(m)).await,
                None => return End::Unclean,
            },
            () = tokio::time::sleep(idle) => {
                tracing::info!(peer = %conn.peer, "keep-alive expired");
                return End::Unclean;
            }
            () = sleep_until(expiry) => {
                tracing::info!(peer = %conn.peer, "SAS token expired");
                return End::Unclean;
            }
            () = drain.begun() => return End::Drained,
            // The network rules changed and refuse this peer now: the connection is dropped.
            () = &mut refused => return End::Unclean,
        };
        if let Err(end) = deliver(conn, session, answer).await {
            return end;
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::BytesMut;
    use rumqttc::mqttbytes::QoS;
    use rumqttc::mqttbytes::v4::PubAck;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::hub_session::tests::{events, hub, publish, session};

    const TOPIC: &str = "devices/d1/messages/events/";

    /// Runs the connection loop over a pipe whose client side has already written `packets`
    /// all at once (so the loop finds them buffered); the loop's end, the packets it wrote
    /// back, and the bodies in the event log.
    async fn run_with(packets: &[Packet]) -> (End, Vec<Packet>, Vec<Vec<u8>>) {
        let (hub, _dir) = hub().await;
        let mut session = session(&hub).await;
        let (server, mut client): (DuplexStream, DuplexStream) = tokio::io::duplex(4 << 20);
        let mut bytes = BytesMut::new();
        for p in packets {
            p.write(&mut bytes, usize::MAX).unwrap();
        }
        client.write_all(&bytes).await.unwrap();
        let mut conn = Conn::new(server, "127.0.0.1:1".parse().unwrap(), 1 << 20);
        let refused = Box::pin(std::future::pending::<()>());
        let end = run(&mut conn, &mut session, hub.drain(), refused).await;
        drop(conn);
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        let mut back = BytesMut::from(&back[..]);
        let mut answers = Vec::new();
        while let Some(p) = crate::framing::read_packet(&mut back).unwrap() {
            answers.push(p);
        }
        let bodies = events(&hub)
            .await
            .into_iter()
            .map(|e| e.event.body)
            .collect();
        (end, answers, bodies)
    }

    fn body(i: u16) -> Vec<u8> {
        format!("m{i}").into_bytes()
    }

    /// Buffered PUBLISHes go to the log as runs: in the order sent, each PUBACK after its
    /// message is durable and in the order of the PUBLISHes; another packet in between is
    /// answered in its place, and a QoS 0 message gets no PUBACK.
    #[tokio::test]
    async fn buffered_telemetry_is_appended_and_acknowledged_in_order() {
        let mut sent = Vec::new();
        let mut expected = Vec::new();
        let mut bodies = Vec::new();
        for i in 1..=80u16 {
            match i {
                20 => {
                    sent.push(Packet::PingReq);
                    expected.push(Packet::PingResp);
                }
                25 => {
                    sent.push(publish(TOPIC, QoS::AtMostOnce, 0, &body(i)));
                    bodies.push(body(i));
                }
                _ => {
                    sent.push(publish(TOPIC, QoS::AtLeastOnce, i, &body(i)));
                    expected.push(Packet::PubAck(PubAck::new(i)));
                    bodies.push(body(i));
                }
            }
        }
        sent.push(Packet::Disconnect);
        let (end, answers, stored) = run_with(&sent).await;
        assert_eq!(end, End::Graceful);
        assert_eq!(answers, expected);
        assert_eq!(
            stored, bodies,
            "the log has the device's messages in the order sent"
        );
    }

    /// A refused message in a run (here too large) is not acknowledged, nor is any after it,
    /// and none after it is appended; those before it are durable and acknowledged; the
    /// connection ends.
    #[tokio::test]
    async fn a_refused_message_stops_the_run_and_the_connection() {
        let mut sent = Vec::new();
        for i in 1..=9u16 {
            let payload = if i == 6 {
                vec![b'x'; ironhub_hub::MAX_TELEMETRY_BYTES + 1]
            } else {
                body(i)
            };
            sent.push(publish(TOPIC, QoS::AtLeastOnce, i, &payload));
        }
        let (end, answers, stored) = run_with(&sent).await;
        assert_eq!(end, End::Unclean);
        let acks: Vec<Packet> = (1..=5).map(|i| Packet::PubAck(PubAck::new(i))).collect();
        assert_eq!(answers, acks);
        assert_eq!(stored, (1..=5).map(body).collect::<Vec<_>>());
    }
}

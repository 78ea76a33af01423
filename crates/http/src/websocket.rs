//! MQTT over WebSocket on the HTTPS port, at `/$iothub/websocket`, as IoT Hub and DPS serve
//! it (the same path for both: the MQTT CONNECT tells them apart), and AMQP over WebSocket at
//! the same path and at `/$servicebus/websocket` (Event Hubs clients), told apart by the
//! subprotocol the client asks for: `mqtt`, or `AMQPWSB10` (Azure's clients) or `amqp`.
//!
//! The upgrade answers with `Sec-WebSocket-Protocol: mqtt` (Node's `ws` aborts without it) and no
//! extensions. Binary frames carry the MQTT byte stream: a packet may span frames and a frame
//! may hold several packets, so frames are pumped through an in-memory pipe to the same MQTT
//! session code that serves port 8883.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse as _, Response};
use ironhub_dps::Dps;
use ironhub_hub::{Hub, HubError};
use ironhub_mqtt::ConnectionContext;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::ApiError;
use crate::listener::ConnectionInfo;

/// The route's path.
pub const PATH: &str = "/$iothub/websocket";
/// Where Event Hubs clients ask for AMQP over WebSocket.
pub const SERVICEBUS_PATH: &str = "/$servicebus/websocket";

/// The subprotocols of AMQP over WebSocket: Azure's name and the AMQP WebSocket binding's.
const AMQP_PROTOCOLS: [&str; 2] = ["AMQPWSB10", "amqp"];

/// Size of the pipe between the WebSocket and the MQTT session.
const PIPE_BYTES: usize = 64 * 1024;
/// The most bytes read from the pipe into one frame, once a read found more waiting.
const CHUNK_BYTES: usize = 8 * 1024;
/// The WebSocket's read buffer and the first read from the pipe: small, since an idle
/// connection holds both while it waits (tungstenite's default read buffer is 128 KiB). A
/// frame larger than the read buffer gets room for itself when its header is read, and a read
/// from the pipe that fills its room is followed by reads of [`CHUNK_BYTES`].
const IDLE_READ_BYTES: usize = 512;

/// What an MQTT session over WebSocket may talk to.
#[derive(Debug, Clone)]
pub struct Services {
    pub hub: Hub,
    pub dps: Option<Dps>,
    /// The AMQP endpoint, when the server runs one.
    pub amqp: Option<ironhub_amqp::AmqpContext>,
}

/// `GET /$iothub/websocket` with an upgrade to WebSocket. A request that is not a WebSocket
/// upgrade (a browser, `curl` without the headers) gets an Azure-shaped 400.
pub async fn upgrade(
    State(Services { hub, dps, amqp }): State<Services>,
    Extension(info): Extension<ConnectionInfo>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::from(HubError::ArgumentInvalid(format!(
                "{PATH} serves MQTT and AMQP over WebSocket (subprotocol mqtt, AMQPWSB10 or \
                 amqp); this request is not a WebSocket upgrade: {e}."
            )))
            .into_response();
        }
    };
    let mut protocols = vec!["mqtt"];
    if amqp.is_some() {
        protocols.extend(AMQP_PROTOCOLS);
    }
    // The upgraded connection runs in tasks of its own: its caller goes along.
    let caller = ironhub_observe::caller::current();
    ws.protocols(protocols)
        .read_buffer_size(IDLE_READ_BYTES)
        .max_message_size(hub.frame_limits().websocket_message_bytes)
        .max_frame_size(hub.frame_limits().websocket_message_bytes)
        .on_upgrade(move |socket| async move {
            let is_amqp = socket
                .protocol()
                .and_then(|p| p.to_str().ok())
                .is_some_and(|p| AMQP_PROTOCOLS.contains(&p));
            let caller = caller.map(|c| ironhub_observe::Caller {
                listener: if is_amqp { "amqp-ws" } else { "mqtt-ws" },
                ..c
            });
            if let (true, Some(amqp)) = (is_amqp, amqp) {
                let (end, ws_end) = tokio::io::duplex(PIPE_BYTES);
                let certificates = info
                    .client_certificates
                    .iter()
                    .map(|c| c.to_vec())
                    .collect();
                let amqp = ironhub_amqp::AmqpContext {
                    private_endpoint: info.private_endpoint,
                    ..amqp
                };
                let session = tokio::spawn(ironhub_observe::caller::within(
                    caller,
                    ironhub_amqp::serve(end, info.peer, certificates, amqp),
                ));
                bridge(socket, ws_end, session).await;
                return;
            }
            let ctx = ConnectionContext {
                hub,
                dps: dps.map(Arc::new),
                peer: info.peer,
                client_certificates: Arc::new(
                    info.client_certificates
                        .iter()
                        .map(|c| c.to_vec())
                        .collect(),
                ),
                private_endpoint: info.private_endpoint,
            };
            let (end, ws_end) = tokio::io::duplex(PIPE_BYTES);
            let session = tokio::spawn(ironhub_observe::caller::within(
                caller,
                ironhub_mqtt::serve(end, ctx),
            ));
            bridge(socket, ws_end, session).await;
        })
}

/// Pumps the WebSocket's binary frames to and from `session` (which serves the other end of
/// `ws_end`) until either side closes.
async fn bridge(
    mut socket: WebSocket,
    mut ws_end: tokio::io::DuplexStream,
    session: tokio::task::JoinHandle<()>,
) {
    // What the session wrote, sent as a frame without a copy (`split`); the buffer is
    // allocated again for each read, small unless the last read found more waiting.
    let mut out = bytes::BytesMut::new();
    let mut read_size = IDLE_READ_BYTES;
    loop {
        out.reserve(read_size);
        tokio::select! {
            frame = socket.recv() => match frame {
                Some(Ok(Message::Binary(bytes))) => {
                    if ws_end.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // Text frames carry neither protocol; close like a broken stream.
                Some(Ok(Message::Text(_) | Message::Close(_)) | Err(_)) | None => break,
            },
            read = ws_end.read_buf(&mut out) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    read_size = if n >= read_size { CHUNK_BYTES } else { IDLE_READ_BYTES };
                    let frame = Message::Binary(out.split().freeze());
                    if socket.send(frame).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    // Closing our end of the pipe ends the session (as a dropped connection).
    drop(ws_end);
    let _ = session.await;
    if socket.send(Message::Close(None)).await.is_ok() {
        // RFC 6455, 5.5.1: the client answers a Close with its own before the TCP connection
        // closes; closing at once makes some clients (paho's WebSocket transport) fail writing
        // that answer and never report the disconnect. Bounded.
        let _ = tokio::time::timeout(CLOSE_ANSWER_WAIT, async {
            while let Some(Ok(frame)) = socket.recv().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// How long a closing WebSocket waits for the client's Close.
const CLOSE_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

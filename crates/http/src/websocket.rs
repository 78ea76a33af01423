//! MQTT over WebSocket on the HTTPS port, at `/$iothub/websocket`, as IoT Hub and DPS serve
//! it (the same path for both: the MQTT CONNECT tells them apart).
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

/// Size of the pipe between the WebSocket and the MQTT session.
const PIPE_BYTES: usize = 64 * 1024;

/// What an MQTT session over WebSocket may talk to.
#[derive(Debug, Clone)]
pub struct Services {
    pub hub: Hub,
    pub dps: Option<Dps>,
}

/// `GET /$iothub/websocket` with an upgrade to WebSocket. A request that is not a WebSocket
/// upgrade (a browser, `curl` without the headers) gets an Azure-shaped 400.
pub async fn upgrade(
    State(Services { hub, dps }): State<Services>,
    Extension(info): Extension<ConnectionInfo>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::from(HubError::ArgumentInvalid(format!(
                "{PATH} serves MQTT over WebSocket (subprotocol mqtt); this request is not a \
                 WebSocket upgrade: {e}."
            )))
            .into_response();
        }
    };
    ws.protocols(["mqtt"])
        .max_message_size(ironhub_hub::MAX_TELEMETRY_BYTES * 2)
        .on_upgrade(move |socket| async move {
            let ctx = ConnectionContext {
                hub,
                dps,
                peer: info.peer,
                client_certificates: Arc::new(
                    info.client_certificates
                        .iter()
                        .map(|c| c.to_vec())
                        .collect(),
                ),
            };
            bridge(socket, ctx).await;
        })
}

/// Runs an MQTT session over the WebSocket until either side closes.
async fn bridge(mut socket: WebSocket, ctx: ConnectionContext) {
    let (mqtt_end, mut ws_end) = tokio::io::duplex(PIPE_BYTES);
    let session = tokio::spawn(ironhub_mqtt::serve(mqtt_end, ctx));
    let mut buf = vec![0u8; PIPE_BYTES];
    loop {
        tokio::select! {
            frame = socket.recv() => match frame {
                Some(Ok(Message::Binary(bytes))) => {
                    if ws_end.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // Text frames are not MQTT; close like a broken stream.
                Some(Ok(Message::Text(_) | Message::Close(_)) | Err(_)) | None => break,
            },
            read = ws_end.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let frame = Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]));
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
    let _ = socket.send(Message::Close(None)).await;
}

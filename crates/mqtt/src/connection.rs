//! One connection from its first packet: CONNECT within [`CONNECT_TIMEOUT`], then, by its
//! username, a DPS session (`{idScope}/registrations/{id}/…`) or an IoT Hub session.

use std::time::Duration;

use ironhub_hub::network::{self, NetworkEndpoint};
use rumqttc::mqttbytes::v4::Packet;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::context::ConnectionContext;
use crate::dps_session::{self, DpsUsername};
use crate::framing::Conn;
use crate::hub_connection;

/// How long a client has to send CONNECT after the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one MQTT connection to its end.
///
/// Each held connection is a task whose state is this future at its largest await, so what a
/// connection does once or rarely (authentication, a DPS registration, the session's start and
/// end, a packet's or a bus message's handling) is boxed where it is awaited and freed when
/// done: an idle connection holds only what waiting needs. The stream goes into the
/// connection before the future is made, so it is not held twice (an `async fn` keeps its
/// arguments for its whole life).
pub fn serve<S>(stream: S, ctx: ConnectionContext) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let conn = Conn::new(stream, ctx.peer, ctx.hub.frame_limits().mqtt_packet_bytes);
    serve_conn(conn, ctx)
}

async fn serve_conn<S>(mut conn: Conn<S>, ctx: ConnectionContext)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
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
    let peer = ctx.network_peer();
    if let Some(dps) = &ctx.dps
        && let Some(user) = DpsUsername::of(dps, &connect)
    {
        // The diagnostic log's `operationVersion`.
        if let Some(version) = user.api_version.as_deref() {
            ironhub_observe::caller::set_api_version(version);
        }
        // The network rules drop a refused connection without an answer, now or when they
        // change.
        if !Box::pin(ctx.hub.network_admits(&peer, NetworkEndpoint::DpsDevice)).await {
            return;
        }
        // Boxed: a connection is rarely DPS's, and a registration's future is large.
        Box::pin(async {
            tokio::select! {
                () = dps_session::serve(conn, ironhub_dps::Dps::clone(dps), &ctx, connect, user) => {}
                () = network::refused(ctx.hub.clone(), peer, &[NetworkEndpoint::DpsDevice]) => {}
            }
        })
        .await;
        return;
    }
    if !Box::pin(ctx.hub.network_admits(&peer, NetworkEndpoint::HubDevice)).await {
        return;
    }
    hub_connection::serve(conn, &ctx, Box::new(connect)).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
    use ironhub_hub::{Backends, Hub};

    use super::*;

    /// Every held connection is one task whose state is this future at its largest await: what
    /// a connection does rarely (authentication, a twin update, a DPS registration) is boxed
    /// when it happens, so that an idle connection holds only what waiting needs.
    #[tokio::test]
    async fn an_idle_connection_holds_a_small_future() {
        let dir = tempfile::tempdir().unwrap();
        let backends = Backends {
            store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
            events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
            bus: Arc::new(LocalBus::new()),
        };
        let hub = Hub::open(backends, vec!["myhub.example".into()])
            .await
            .unwrap();
        let ctx = ConnectionContext {
            hub,
            dps: None,
            peer: "127.0.0.1:1".parse().unwrap(),
            client_certificates: Arc::default(),
            private_endpoint: false,
        };
        let (stream, _other) = tokio::io::duplex(64);
        let future = serve(stream, ctx);
        let size = size_of_val(&future);
        // 8,248 bytes in a debug build before the boxing, 3,048 after (less when optimized).
        assert!(size <= 4096, "the connection future is {size} bytes");
    }
}

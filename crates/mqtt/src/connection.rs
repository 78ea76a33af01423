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
pub async fn serve<S>(stream: S, ctx: ConnectionContext)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut conn = Conn::new(stream, ctx.peer);
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
        // The network rules drop a refused connection without an answer, now or when they
        // change.
        if !ctx
            .hub
            .network_admits(&peer, NetworkEndpoint::DpsDevice)
            .await
        {
            return;
        }
        tokio::select! {
            () = dps_session::serve(conn, dps.clone(), &ctx, connect, user) => {}
            () = network::refused(ctx.hub.clone(), peer, &[NetworkEndpoint::DpsDevice]) => {}
        }
        return;
    }
    if !ctx
        .hub
        .network_admits(&peer, NetworkEndpoint::HubDevice)
        .await
    {
        return;
    }
    hub_connection::serve(conn, &ctx, connect).await;
}

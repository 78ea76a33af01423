//! MQTT over TLS (8883) on the shared TLS accept loop: each admitted connection becomes an IoT
//! Hub (or DPS) MQTT session.

use std::sync::Arc;

use ironhub_dps::Dps;
use ironhub_hub::Hub;
use ironhub_hub::network::NetworkEndpoint;
use ironhub_mqtt::ConnectionContext;
use ironhub_tls::{AcceptLoop, Accepted};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The endpoints MQTT reaches: the hub's and the DPS instance's device APIs.
pub const ENDPOINTS: &[NetworkEndpoint] = &[NetworkEndpoint::HubDevice, NetworkEndpoint::DpsDevice];

/// Serves MQTT sessions on `listener` until `shutdown`; open sessions end with the process
/// (devices reconnect, and their sessions persist).
pub async fn serve(
    listener: TcpListener,
    accept: AcceptLoop,
    hub: Hub,
    dps: Option<Dps>,
    shutdown: watch::Receiver<bool>,
) {
    let dps = dps.map(Arc::new);
    accept
        .run(listener, shutdown, move |connection: Accepted, _| {
            let ctx = ConnectionContext {
                hub: hub.clone(),
                dps: dps.clone(),
                peer: connection.peer,
                client_certificates: Arc::new(
                    connection
                        .client_certificates
                        .iter()
                        .map(|c| c.to_vec())
                        .collect(),
                ),
                private_endpoint: connection.private_endpoint,
            };
            ironhub_mqtt::serve(connection.stream, ctx)
        })
        .await;
}

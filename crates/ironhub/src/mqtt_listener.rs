//! The MQTT-over-TLS listener (8883): TLS handshake, then an IoT Hub (or DPS) MQTT session.

use std::sync::Arc;
use std::time::Duration;

use ironhub_dps::Dps;
use ironhub_hub::Hub;
use ironhub_mqtt::ConnectionContext;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    hub: Hub,
    dps: Option<Dps>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let hub = hub.clone();
                    let dps = dps.clone();
                    sessions.spawn(async move {
                        let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                        let tls = match handshake {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => return ironhub_tls::log_handshake_error("mqtt", peer, &e),
                            Err(_) => return tracing::debug!(%peer, "MQTT TLS handshake timed out"),
                        };
                        let client_certificates = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .map(|c| c.iter().map(|c| c.to_vec()).collect())
                            .unwrap_or_default();
                        let ctx = ConnectionContext { hub, dps, peer, client_certificates: Arc::new(client_certificates) };
                        ironhub_mqtt::serve(tls, ctx).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
        while sessions.try_join_next().is_some() {}
    }
    // Sessions end with the process: devices reconnect, and their sessions persist.
    sessions.abort_all();
}

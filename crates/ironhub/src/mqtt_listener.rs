//! The MQTT-over-TLS listener. This step provides the listener and its TLS configuration; the
//! MQTT protocol itself (IoT Hub's device endpoint) is served from the next step on. Until
//! then a client completes the TLS handshake and the connection is closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                        match handshake {
                            Ok(Ok(_tls)) => tracing::warn!(%peer, "MQTT connection closed: the MQTT device endpoint is not served by this build"),
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "MQTT TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "MQTT TLS handshake timed out"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
}

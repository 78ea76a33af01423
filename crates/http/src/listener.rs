//! HTTPS on the shared TLS accept loop: serves HTTP/1.1 (with upgrades) on each admitted
//! connection (an upgraded connection keeps its place under the connection limits, since its
//! stream holds it). Each request carries a [`ConnectionInfo`] extension with the peer address and the
//! client certificate chain, for X.509 device authentication, and the body read timeout. A
//! client gets [`ReadTimeouts::header`] to send a request's head (counted from the moment the
//! server waits for one, so an idle kept-alive connection is closed after it too) and
//! [`ReadTimeouts::body`] to send its body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ironhub_tls::{AcceptLoop, Accepted};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::body::BodyReadTimeout;

/// How long open connections get to finish when the server shuts down.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the TLS layer knows about the client of a request.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// The client's certificate chain, leaf first; empty when it sent none.
    pub client_certificates: Arc<Vec<CertificateDer<'static>>>,
    /// Whether it came through a listener named a private endpoint.
    pub private_endpoint: bool,
}

impl ConnectionInfo {
    /// The client as the network rules see it.
    pub fn network_peer(&self) -> ironhub_hub::network::Peer {
        ironhub_hub::network::Peer {
            ip: self.peer.ip(),
            private_endpoint: self.private_endpoint,
        }
    }
}

/// How long a client may take to send a request, its head and its body apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadTimeouts {
    /// To send a request's line and headers.
    pub header: Duration,
    /// To send a request's body, once the route reads it.
    pub body: Duration,
}

impl ReadTimeouts {
    /// The default header read timeout (hyper's own default).
    pub const DEFAULT_HEADER: Duration = Duration::from_secs(30);
    /// The default body read timeout.
    pub const DEFAULT_BODY: Duration = BodyReadTimeout::DEFAULT;
}

impl Default for ReadTimeouts {
    fn default() -> Self {
        ReadTimeouts {
            header: Self::DEFAULT_HEADER,
            body: Self::DEFAULT_BODY,
        }
    }
}

/// Serves `app` over TLS on `listener` through `accept` until `shutdown` turns true, then lets
/// open connections finish (for at most a few seconds).
pub async fn serve_tls(
    listener: TcpListener,
    accept: AcceptLoop,
    app: Router,
    timeouts: ReadTimeouts,
    shutdown: watch::Receiver<bool>,
) {
    accept
        .with_drain(DRAIN_TIMEOUT)
        .run(listener, shutdown, move |connection, shutdown| {
            serve_connection(connection, app.clone(), timeouts, shutdown)
        })
        .await;
}

async fn serve_connection(
    connection: Accepted,
    app: Router,
    timeouts: ReadTimeouts,
    mut shutdown: watch::Receiver<bool>,
) {
    let Accepted {
        stream,
        peer,
        client_certificates,
        private_endpoint,
    } = connection;
    let info = ConnectionInfo {
        peer,
        client_certificates: Arc::new(client_certificates),
        private_endpoint,
    };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(info.clone());
        request
            .extensions_mut()
            .insert(BodyReadTimeout(timeouts.body));
        app.clone().oneshot(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

//! The one TLS accept loop every port runs: accept, admit under the [`ConnectionLimiter`]
//! (a connection over a cap is closed at once), complete the TLS handshake within the limits'
//! timeout, then hand the stream to the protocol (HTTP on 443, MQTT on 8883) until shutdown.
//! A plain loop ([`AcceptLoop::without_tls`], the opt-in AMQP listener for Event Hubs clients'
//! development emulator mode) does the same without TLS: same caps, gate and drain.
//! Shaped after mini-redis's `server.rs` (tokio-rs/mini-redis), which bounds its connections
//! with a semaphore and stops on a shutdown broadcast.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::limits::{Admission, ConnectionLimiter};

/// A connection whose TLS handshake completed, for the protocol to serve.
#[derive(Debug)]
pub struct Accepted {
    pub stream: AdmittedStream,
    pub peer: SocketAddr,
    /// The client's certificate chain, leaf first; empty when it sent none.
    pub client_certificates: Vec<CertificateDer<'static>>,
    /// Whether the listener is a private endpoint (see [`AcceptLoop::private_endpoint`]).
    pub private_endpoint: bool,
}

/// The stream of an admitted connection (TLS, or plain TCP on a plain loop). It holds the
/// connection's place under the limits and gives it back when dropped, whoever owns it then
/// (an HTTP upgrade hands it on to the WebSocket session, for one).
#[derive(Debug)]
pub struct AdmittedStream {
    io: Transport,
    _admission: Admission,
}

#[derive(Debug)]
enum Transport {
    Tls(Box<TlsStream<TcpStream>>),
    Plain(TcpStream),
}

/// Forwards a poll to the stream underneath, whichever it is.
macro_rules! forward {
    ($self:ident, $io:ident => $call:expr) => {
        match &mut $self.io {
            Transport::Tls(tls) => {
                let $io = Pin::new(tls.as_mut());
                $call
            }
            Transport::Plain(tcp) => {
                let $io = Pin::new(tcp);
                $call
            }
        }
    };
}

impl AsyncRead for AdmittedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        forward!(self, io => io.poll_read(cx, buf))
    }
}

impl AsyncWrite for AdmittedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        forward!(self, io => io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        forward!(self, io => io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Transport::Tls(tls) => tls.is_write_vectored(),
            Transport::Plain(tcp) => tcp.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, io => io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, io => io.poll_shutdown(cx))
    }
}

/// One listener's accept loop: its name in logs, TLS configuration and the server's limiter.
#[derive(Clone)]
pub struct AcceptLoop {
    name: &'static str,
    /// `None` on a plain loop: no TLS at all.
    acceptor: Option<TlsAcceptor>,
    limiter: Arc<ConnectionLimiter>,
    drain: Duration,
    /// What the drain waits for instead of every connection's end (see
    /// [`AcceptLoop::with_drain_until`]).
    idle: Option<Idle>,
    /// Whether a peer may connect at all (see [`AcceptLoop::with_gate`]).
    gate: Option<Gate>,
    private_endpoint: bool,
}

/// A future that resolves once the connections that matter have ended.
type Idle = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Asked with the peer's address and whether the listener is a private endpoint, before the
/// TLS handshake: `false` closes the connection.
type Gate =
    Arc<dyn Fn(SocketAddr, bool) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

impl std::fmt::Debug for AcceptLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptLoop")
            .field("name", &self.name)
            .field("limiter", &self.limiter)
            .field("drain", &self.drain)
            .finish_non_exhaustive()
    }
}

impl AcceptLoop {
    /// A loop that drops open connections as soon as the server shuts down.
    pub fn new(
        name: &'static str,
        tls: Arc<rustls::ServerConfig>,
        limiter: Arc<ConnectionLimiter>,
    ) -> Self {
        AcceptLoop {
            name,
            acceptor: Some(TlsAcceptor::from(tls)),
            limiter,
            drain: Duration::ZERO,
            idle: None,
            gate: None,
            private_endpoint: false,
        }
    }

    /// This loop without TLS, under another name: connections are admitted, gated and drained
    /// as on this one and handed to the protocol as plain TCP, with no client certificate.
    pub fn without_tls(&self, name: &'static str) -> Self {
        AcceptLoop {
            name,
            acceptor: None,
            ..self.clone()
        }
    }

    /// Asks `gate` about each admitted connection before its TLS handshake (the network
    /// rules): a connection it refuses is closed at once, with no answer.
    pub fn with_gate<F, Fut>(mut self, gate: F) -> Self
    where
        F: Fn(SocketAddr, bool) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.gate = Some(Arc::new(move |peer, private| Box::pin(gate(peer, private))));
        self
    }

    /// Marks this listener a private endpoint: its connections say so ([`Accepted`]), and the
    /// network rules let them in even with public network access disabled.
    pub fn private_endpoint(mut self, private: bool) -> Self {
        self.private_endpoint = private;
        self
    }

    /// Gives open connections up to `drain` to finish after shutdown (the protocol's handler
    /// sees the shutdown signal and closes gracefully).
    pub fn with_drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// Gives open connections up to `drain` after shutdown, but waits only until `idle`
    /// resolves (say, once the sessions that hold acknowledgements closed themselves): the
    /// rest (a half-done handshake, an idle socket) is dropped then.
    pub fn with_drain_until<F, Fut>(mut self, drain: Duration, idle: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.drain = drain;
        self.idle = Some(Arc::new(move || Box::pin(idle())));
        self
    }

    /// Accepts on `listener` until `shutdown` turns true, serving each admitted connection with
    /// `handler` (which gets the shutdown signal too), then drains or drops what is open.
    pub async fn run<H, F>(
        self,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
        handler: H,
    ) where
        H: Fn(Accepted, watch::Receiver<bool>) -> F + Clone + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        if let Some(admission) = self.admit(peer) {
                            let _ = tcp.set_nodelay(true);
                            let gate = self.gate.as_ref().map(|g| g(peer, self.private_endpoint));
                            let name = self.name;
                            // Boxed, and freed once done: the connection's task holds it only while it
                            // runs, not for the connection's life.
                            let handshake = Box::pin(self.handshake(tcp, peer, admission));
                            let handler = handler.clone();
                            let shutdown = shutdown.clone();
                            let caller = ironhub_observe::Caller {
                                ip: peer.ip(),
                                listener: self.name,
                            };
                            let open = ironhub_observe::metrics().process.connection(self.name);
                            // The caller is known to the domain for the connection's life.
                            connections.spawn(ironhub_observe::caller::scope(caller, async move {
                                let _open = open;
                                if let Some(gate) = gate && !gate.await {
                                    tracing::debug!(listener = name, %peer, "connection refused by the network rules");
                                    return;
                                }
                                if let Some(accepted) = handshake.await {
                                    handler(accepted, shutdown).await;
                                }
                            }));
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(listener = self.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = shutdown.changed() => break,
            }
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        if !self.drain.is_zero() {
            let _ = tokio::time::timeout(self.drain, async {
                match &self.idle {
                    Some(idle) => idle().await,
                    None => while connections.join_next().await.is_some() {},
                }
            })
            .await;
        }
        connections.abort_all();
    }

    /// The connection's admission, or `None` when a cap refuses it (the caller drops the socket).
    fn admit(&self, peer: SocketAddr) -> Option<Admission> {
        match self.limiter.admit(peer.ip()) {
            Ok(admission) => Some(admission),
            Err(refusal) => {
                tracing::debug!(
                    listener = self.name,
                    %peer,
                    cap = ?refusal,
                    refused = self.limiter.refused(),
                    "connection refused: over the connection limit",
                );
                None
            }
        }
    }

    /// The TLS handshake, bounded by the limits' timeout (none on a plain loop).
    fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        admission: Admission,
    ) -> impl Future<Output = Option<Accepted>> + Send + 'static {
        let acceptor = self.acceptor.clone();
        let timeout = self.limiter.limits().handshake_timeout;
        let limiter = Arc::clone(&self.limiter);
        let name = self.name;
        let private_endpoint = self.private_endpoint;
        async move {
            let Some(acceptor) = acceptor else {
                return Some(Accepted {
                    stream: AdmittedStream {
                        io: Transport::Plain(tcp),
                        _admission: admission,
                    },
                    peer,
                    client_certificates: Vec::new(),
                    private_endpoint,
                });
            };
            let accept = acceptor.accept(tcp);
            tokio::pin!(accept);
            let stream = match tokio::time::timeout(timeout, accept.as_mut()).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    log_handshake_error(name, peer, &e);
                    return None;
                }
                Err(_) => {
                    limiter.count_handshake_timeout();
                    tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                    // The place is free before the socket closes, so a client that sees the close
                    // may connect again at once.
                    drop(admission);
                    return None;
                }
            };
            let client_certificates = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            Some(Accepted {
                stream: AdmittedStream {
                    io: Transport::Tls(Box::new(stream)),
                    _admission: admission,
                },
                peer,
                client_certificates,
                private_endpoint,
            })
        }
    }
}

/// Logs a failed TLS handshake: at `info` when the client's certificate was the problem (a
/// device operator needs to see why, e.g. a certificate that does not parse or a handshake
/// signature that does not verify), at `debug` otherwise (scanners and aborted connections are noise).
fn log_handshake_error(listener: &str, peer: SocketAddr, error: &io::Error) {
    let text = error.to_string();
    if text.to_ascii_lowercase().contains("certificate") {
        tracing::info!(%peer, listener, error = %text, "TLS handshake failed: the client's certificate was refused");
    } else {
        tracing::debug!(%peer, listener, error = %text, "TLS handshake failed");
    }
}

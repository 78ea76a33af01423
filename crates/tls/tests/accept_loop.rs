//! The shared TLS accept loop over real sockets: the handshake timeout and the connection caps.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ironhub_tls::{AcceptLoop, Accepted, ConnectionLimiter, ConnectionLimits};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::client::TlsStream;

/// How long a test waits for anything the server does.
const WAIT: Duration = Duration::from_secs(10);
/// Limits under which only a refusal closes a connection within [`WAIT`].
const NO_HANDSHAKE_TIMEOUT_IN_SIGHT: ConnectionLimits = ConnectionLimits {
    max_connections: ConnectionLimits::DEFAULT_MAX_CONNECTIONS,
    max_connections_per_address: ConnectionLimits::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    handshake_timeout: Duration::from_secs(600),
};

struct Server {
    addr: std::net::SocketAddr,
    /// The same loop without TLS ([`AcceptLoop::without_tls`]), on its own listener.
    plain_addr: std::net::SocketAddr,
    connector: tokio_rustls::TlsConnector,
    limiter: Arc<ConnectionLimiter>,
    /// One message each time a handler has let its connection go.
    closed: mpsc::UnboundedReceiver<()>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Echoes what the client sends until it closes, then drops the stream (which gives the
/// connection's place back) and says so.
async fn echo(connection: Accepted, closed: mpsc::UnboundedSender<()>) {
    let mut stream = connection.stream;
    let mut buf = [0u8; 64];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        if stream.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    drop(stream);
    let _ = closed.send(());
}

async fn start(limits: ConnectionLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let files =
        ironhub_tls::ensure_certificates(&dir.path().join("tls"), &["localhost".into()]).unwrap();
    let tls = ironhub_tls::server_config(&files.server_chain, &files.server_key, false).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in ironhub_tls::read_certs(&files.ca).unwrap() {
        roots.add(c).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(ironhub_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limiter = ConnectionLimiter::new(limits);
    let (stop, stopped) = watch::channel(false);
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let accept = AcceptLoop::new("test", tls, limiter.clone());
    let plain_listener = TcpListener::bind((test_ip(57), 0)).await.unwrap();
    let plain_addr = plain_listener.local_addr().unwrap();
    let plain_closed = closed_tx.clone();
    tokio::spawn(accept.without_tls("test-plain").run(
        plain_listener,
        stopped.clone(),
        move |connection, _| echo(connection, plain_closed.clone()),
    ));
    let task = tokio::spawn(accept.run(listener, stopped, move |connection, _| {
        echo(connection, closed_tx.clone())
    }));
    Server {
        addr,
        plain_addr,
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        limiter,
        closed,
        stop,
        task,
        _dir: dir,
    }
}

impl Server {
    /// A TLS connection that the server admitted and serves (one echo round trip).
    async fn admitted(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = tokio::time::timeout(WAIT, self.connector.connect(name, tcp))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echo_once(&mut tls).await, b"ping");
        tls
    }

    /// A connection the server closes at once: its first read ends (no handshake, no data).
    async fn refused(&self) {
        let mut tcp = TcpStream::connect(self.addr).await.unwrap();
        assert!(
            closed_by_server(&mut tcp).await,
            "the connection over the cap is closed"
        );
    }
}

/// `127.0.0.{last}` moved into the test network (`IRONHUB_TEST_NET`, default 127.0.0).
fn test_ip(last: u8) -> std::net::IpAddr {
    let net = std::env::var("IRONHUB_TEST_NET").unwrap_or_else(|_| "127.0.0".into());
    format!("{net}.{last}").parse().unwrap()
}

async fn echo_once(tls: &mut (impl AsyncRead + tokio::io::AsyncWrite + Unpin)) -> Vec<u8> {
    tls.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(WAIT, tls.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf.to_vec()
}

/// Whether the server closes the stream (end of stream or reset) within the bound.
async fn closed_by_server(stream: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut buf = [0u8; 1];
    match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);
    let server = start(ConnectionLimits {
        handshake_timeout: timeout,
        ..ConnectionLimits::default()
    })
    .await;
    let began = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_by_server(&mut silent).await,
        "the silent client is dropped"
    );
    assert!(
        began.elapsed() >= timeout,
        "not before the timeout: {:?}",
        began.elapsed()
    );
    assert_eq!(server.limiter.handshake_timeouts(), 1);
    // Its place was given back before the socket closed.
    assert_eq!(server.limiter.open(), 0);
    // A client that completes its handshake is served as before.
    let mut tls = server.admitted().await;
    assert_eq!(echo_once(&mut tls).await, b"ping");
}

#[tokio::test]
async fn the_per_address_cap_refuses_one_more_and_admits_again_after_a_close() {
    let mut server = start(ConnectionLimits {
        max_connections_per_address: 2,
        ..NO_HANDSHAKE_TIMEOUT_IN_SIGHT
    })
    .await;
    let mut first = server.admitted().await;
    let mut second = server.admitted().await;
    server.refused().await;
    assert_eq!(server.limiter.refused(), 1);
    // The admitted connections keep working while the cap is reached.
    assert_eq!(echo_once(&mut second).await, b"ping");

    first.shutdown().await.unwrap();
    drop(first);
    tokio::time::timeout(WAIT, server.closed.recv())
        .await
        .unwrap()
        .unwrap();
    let mut third = server.admitted().await;
    server.refused().await;
    assert_eq!(server.limiter.refused(), 2);
    assert_eq!(server.limiter.open(), 2);
    assert_eq!(echo_once(&mut third).await, b"ping");
}

#[tokio::test]
async fn the_total_cap_counts_every_connection() {
    let server = start(ConnectionLimits {
        max_connections: 1,
        ..NO_HANDSHAKE_TIMEOUT_IN_SIGHT
    })
    .await;
    let _only = server.admitted().await;
    server.refused().await;
    assert_eq!(server.limiter.refused(), 1);
}

#[tokio::test]
async fn a_loop_without_tls_serves_plain_tcp_under_the_same_caps() {
    let server = start(ConnectionLimits {
        max_connections: 2,
        ..NO_HANDSHAKE_TIMEOUT_IN_SIGHT
    })
    .await;
    let _tls = server.admitted().await;
    let mut plain = TcpStream::connect(server.plain_addr).await.unwrap();
    assert_eq!(echo_once(&mut plain).await, b"ping", "no TLS in the way");
    let mut third = TcpStream::connect(server.plain_addr).await.unwrap();
    assert!(
        closed_by_server(&mut third).await,
        "the TLS and the plain connection fill the cap together"
    );
    assert_eq!(server.limiter.refused(), 1);
}

#[tokio::test]
async fn shutdown_ends_the_loop_and_its_connections() {
    let server = start(ConnectionLimits::default()).await;
    let mut open = server.admitted().await;
    server.stop.send(true).unwrap();
    tokio::time::timeout(WAIT, server.task)
        .await
        .unwrap()
        .unwrap();
    // With no drain time, open connections are dropped with the loop.
    assert!(closed_by_server(&mut open).await);
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "no longer listening"
    );
}

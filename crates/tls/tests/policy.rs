//! The accept loop's gate (the network rules' question before the handshake) and the TLS
//! policy, over real sockets in the test network (`IRONHUB_TEST_NET`, default 127.0.0).
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ironhub_tls::{AcceptLoop, ConnectionLimiter, ConnectionLimits, MinTlsVersion, TlsPolicy};
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

const WAIT: Duration = Duration::from_secs(10);

/// `127.0.0.{last}` moved into the test network.
fn test_ip(last: u8) -> IpAddr {
    let net = std::env::var("IRONHUB_TEST_NET").unwrap_or_else(|_| "127.0.0".into());
    format!("{net}.{last}").parse().unwrap()
}

struct Server {
    addr: SocketAddr,
    ca: std::path::PathBuf,
    /// Each served connection's peer and private-endpoint flag.
    served: mpsc::UnboundedReceiver<(SocketAddr, bool)>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// A loop on TESTNET.`last` that refuses peers from `refused` and marks itself private.
async fn start(last: u8, policy: TlsPolicy, refused: Option<IpAddr>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let files =
        ironhub_tls::ensure_certificates(&dir.path().join("tls"), &["localhost".into()]).unwrap();
    let tls =
        ironhub_tls::server_config_with(&files.server_chain, &files.server_key, false, &policy)
            .unwrap();
    let listener = TcpListener::bind(SocketAddr::new(test_ip(last), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let (tx, served) = mpsc::unbounded_channel();
    let accept = AcceptLoop::new(
        "test",
        tls,
        ConnectionLimiter::new(ConnectionLimits::default()),
    )
    .with_gate(move |peer: SocketAddr, _private| async move { Some(peer.ip()) != refused })
    .private_endpoint(true);
    tokio::spawn(accept.run(listener, stopped, move |connection, _| {
        let _ = tx.send((connection.peer, connection.private_endpoint));
        async move {
            let mut stream = connection.stream;
            let mut buf = [0u8; 1];
            let _ = stream.read(&mut buf).await;
        }
    }));
    Server {
        addr,
        ca: files.ca,
        served,
        _stop: stop,
        _dir: dir,
    }
}

async fn tcp_from(source: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

fn connector(
    ca: &std::path::Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in ironhub_tls::read_certs(ca).unwrap() {
        roots.add(c).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(ironhub_tls::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(client))
}

async fn handshake(
    server: &Server,
    source: IpAddr,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> bool {
    let tcp = tcp_from(source, server.addr).await;
    let name = ServerName::try_from("localhost").unwrap();
    matches!(
        tokio::time::timeout(WAIT, connector(&server.ca, versions).connect(name, tcp)).await,
        Ok(Ok(_))
    )
}

#[tokio::test]
async fn the_gate_closes_a_refused_peer_before_the_handshake() {
    let refused = test_ip(211);
    let mut server = start(214, TlsPolicy::default(), Some(refused)).await;
    let all = &[&rustls::version::TLS13, &rustls::version::TLS12];
    assert!(!handshake(&server, refused, all).await);
    assert!(handshake(&server, test_ip(212), all).await);
    let (peer, private) = tokio::time::timeout(WAIT, server.served.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peer.ip(), test_ip(212), "only the admitted peer was served");
    assert!(
        private,
        "the listener's private-endpoint flag reaches the connection"
    );
}

#[tokio::test]
async fn tls12_is_refused_when_13_is_the_minimum() {
    let policy = TlsPolicy {
        min_version: MinTlsVersion::Tls13,
        cipher_suites: Vec::new(),
    };
    let server = start(214, policy, None).await;
    let client = test_ip(212);
    assert!(!handshake(&server, client, &[&rustls::version::TLS12]).await);
    assert!(handshake(&server, client, &[&rustls::version::TLS13]).await);
    let tls12 = start(214, TlsPolicy::default(), None).await;
    assert!(handshake(&tls12, client, &[&rustls::version::TLS12]).await);
}

//! The TLS listener over real sockets: TLS 1.2 and 1.3, ALPN http/1.1, and client certificates
//! that are optional, accepted whoever signed them, and handed to the application.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use ironhub_http::{ConnectionInfo, ReadTimeouts, serve_tls};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn whoami(Extension(info): Extension<ConnectionInfo>) -> String {
    format!("certs={}", info.client_certificates.len())
}

struct Server {
    addr: std::net::SocketAddr,
    ca: Vec<CertificateDer<'static>>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let files =
        ironhub_tls::ensure_certificates(&dir.path().join("tls"), &["localhost".into()]).unwrap();
    let tls = ironhub_tls::server_config(&files.server_chain, &files.server_key, true).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let app = Router::new().route("/whoami", get(whoami));
    let limiter = ironhub_tls::ConnectionLimiter::new(ironhub_tls::ConnectionLimits::default());
    let accept = ironhub_tls::AcceptLoop::new("https", tls, limiter);
    tokio::spawn(serve_tls(
        listener,
        accept,
        app,
        ReadTimeouts::default(),
        stopped,
    ));
    Server {
        addr,
        ca: ironhub_tls::read_certs(&files.ca).unwrap(),
        _dir: dir,
        _stop: stop,
    }
}

fn client_config(
    server: &Server,
    versions: &[&'static rustls::SupportedProtocolVersion],
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in &server.ca {
        roots.add(c.clone()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(ironhub_tls::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// One GET over a fresh TLS connection; returns the negotiated ALPN and the response.
async fn get_whoami(server: &Server, config: rustls::ClientConfig) -> (Option<Vec<u8>>, String) {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    tls.write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    (alpn, response)
}

fn self_signed_client_cert() -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["device-1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

#[tokio::test]
async fn client_certificates_are_optional_and_reach_the_application() {
    let server = start().await;
    let tls13 = [&rustls::version::TLS13];
    let (alpn, response) = get_whoami(&server, client_config(&server, &tls13, None)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("certs=0"), "{response}");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

    let cert = self_signed_client_cert();
    let (_, response) = get_whoami(&server, client_config(&server, &tls13, Some(cert))).await;
    assert!(
        response.ends_with("certs=1"),
        "a self-signed client certificate is accepted: {response}"
    );
}

#[tokio::test]
async fn tls12_clients_are_served() {
    // The Python device SDK forces TLS 1.2.
    let server = start().await;
    let tls12 = [&rustls::version::TLS12];
    let cert = self_signed_client_cert();
    let (_, response) = get_whoami(&server, client_config(&server, &tls12, Some(cert))).await;
    assert!(response.ends_with("certs=1"), "{response}");
}

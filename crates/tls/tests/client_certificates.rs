//! Client certificates at the handshake, in memory: X.509 v1 certificates (the fixtures were
//! made with `openssl x509 -req -signkey`, which writes no extensions and so a v1
//! certificate) are accepted over TLS 1.2 and 1.3, and a client that does not hold the
//! certificate's key is refused.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection, SignatureScheme};

/// Presents one certificate and key, as they are (rustls's own client-certificate setting
/// checks that the key matches the certificate, which needs a v3 certificate).
#[derive(Debug)]
struct Present(Arc<CertifiedKey>);

impl ResolvesClientCert for Present {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs a handshake between the two ends; the error of the side that failed, if any.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) -> Result<(), String> {
    for _ in 0..20 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).unwrap();
            server
                .process_new_packets()
                .map_err(|e| format!("server: {e}"))?;
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).unwrap();
            client
                .process_new_packets()
                .map_err(|e| format!("client: {e}"))?;
        }
    }
    Err("the handshake did not finish".into())
}

fn connect(
    version: &'static rustls::SupportedProtocolVersion,
    cert: &str,
    key: &str,
) -> Result<Vec<Vec<u8>>, String> {
    let dir = tempfile::tempdir().unwrap();
    let files = ironhub_tls::ensure_certificates(dir.path(), &["hub.example".into()]).unwrap();
    let server_config =
        ironhub_tls::server_config(&files.server_chain, &files.server_key, false).unwrap();
    let mut roots = RootCertStore::empty();
    for c in ironhub_tls::read_certs(&files.ca).unwrap() {
        roots.add(c).unwrap();
    }
    let client_config = ClientConfig::builder_with_provider(ironhub_tls::provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Present(Arc::new(CertifiedKey::new(
            ironhub_tls::read_certs(&fixture(cert)).unwrap(),
            ironhub_tls::provider()
                .key_provider
                .load_private_key(ironhub_tls::read_key(&fixture(key)).unwrap())
                .unwrap(),
        )))));
    let mut client = ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from("hub.example").unwrap(),
    )
    .unwrap();
    let mut server = ServerConnection::new(server_config).unwrap();
    handshake(&mut client, &mut server)?;
    Ok(server
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect())
}

#[test]
fn v1_client_certificates_are_accepted_over_tls12_and_tls13() {
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        for (cert, key) in [("v1-ec.pem", "v1-ec.key"), ("v1-rsa.pem", "v1-rsa.key")] {
            let chain = connect(version, cert, key)
                .unwrap_or_else(|e| panic!("{cert} over {version:?}: {e}"));
            let expected = ironhub_tls::read_certs(&fixture(cert)).unwrap();
            assert_eq!(
                chain,
                [expected[0].as_ref().to_vec()],
                "{cert} over {version:?}"
            );
        }
    }
}

#[test]
fn a_v1_certificate_without_its_key_is_refused() {
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        // The EC certificate presented with the RSA key: the handshake signature cannot verify.
        let e = connect(version, "v1-ec.pem", "v1-rsa.key").unwrap_err();
        assert!(e.starts_with("server:"), "{version:?}: {e}");
    }
}

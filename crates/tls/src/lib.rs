//! TLS that works out of the box: a local CA and a server certificate it signs, kept in
//! `DATA_DIR/tls/`, and the rustls server configuration both listeners use.
//!
//! Client certificates are requested but optional, and any chain is accepted at the handshake
//! (devices authenticate by thumbprint or CA chain afterwards, in the domain); the handshake
//! signature is still verified, so a client proves it holds the certificate's key.
//!
//! Every port accepts through one [`AcceptLoop`], under one server-wide [`ConnectionLimiter`].

mod accept;
mod certs;
mod limits;
mod verifier;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use accept::{AcceptLoop, Accepted, AdmittedStream};
pub use certs::{CertificateFiles, ensure_certificates, write_private};
pub use limits::{Admission, ConnectionLimiter, ConnectionLimits, Refusal};
pub use verifier::AnyClientCert;

/// Errors while preparing TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// The crypto provider every ironhub TLS endpoint uses (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate in a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in this PEM file"));
    }
    Ok(certs)
}

/// Reads the first private key in a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| file_error(path, e))?
        .ok_or_else(|| file_error(path, "no private key in this PEM file"))
}

/// The server configuration: TLS 1.2 and 1.3, optional client certificates, and ALPN
/// `http/1.1` only when `alpn_http1` (never `h2`: urllib3 clients offer only `http/1.1`).
pub fn server_config(
    cert_chain: &Path,
    key: &Path,
    alpn_http1: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(Arc::new(AnyClientCert::new(provider)))
        .with_single_cert(read_certs(cert_chain)?, read_key(key)?)?;
    if alpn_http1 {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

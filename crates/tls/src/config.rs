//! The rustls server configuration every listener uses, and the PEM files it is read from.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{TlsError, file_error};
use crate::policy::TlsPolicy;
use crate::verifier::AnyClientCert;

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
    server_config_with(cert_chain, key, alpn_http1, &TlsPolicy::default())
}

/// [`server_config`] under `policy`: its lowest version and its cipher suites.
pub fn server_config_with(
    cert_chain: &Path,
    key: &Path,
    alpn_http1: bool,
    policy: &TlsPolicy,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = policy.provider()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(policy.versions())?
        .with_client_cert_verifier(Arc::new(AnyClientCert::new(provider)))
        .with_single_cert(read_certs(cert_chain)?, read_key(key)?)?;
    if alpn_http1 {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

//! TLS to the server through rustls: verified against the CA file of the options, or the
//! system's roots.

use std::sync::Arc;

use ironhub_store::{Result, StoreError};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::PgOptions;

/// The connector `tokio-postgres` uses when `sslmode` asks for TLS.
pub(crate) fn connector(options: &PgOptions) -> Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                StoreError::Engine(format!("cannot read the CA file {}: {e}", path.display()))
            })?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| {
                    StoreError::Engine(format!("bad CA file {}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    StoreError::Engine(format!("bad CA file {}: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(StoreError::Engine(format!(
                    "the CA file {} holds no certificate",
                    path.display()
                )));
            }
        }
        None => {
            // Roots that fail to load are skipped, as a browser would.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Engine(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

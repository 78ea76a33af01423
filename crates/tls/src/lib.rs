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
mod config;
mod error;
mod limits;
mod policy;
mod verifier;

pub use accept::{AcceptLoop, Accepted, AdmittedStream};
pub use certs::{CertificateFiles, ensure_certificates, write_private};
pub use config::{provider, read_certs, read_key, server_config, server_config_with};
pub use error::TlsError;
pub use limits::{Admission, ConnectionLimiter, ConnectionLimits, Refusal};
pub use policy::{MinTlsVersion, TlsPolicy, check_policy, supported_cipher_suites};
pub use verifier::AnyClientCert;

//! TLS trust for the client (system roots plus extra CA files) and turning transport failures
//! into messages a person can act on.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, RootCertStore};

use crate::ClientError;

/// The rustls client configuration: the system's trusted roots (which honour `SSL_CERT_FILE`
/// and `SSL_CERT_DIR`, as `rustls-native-certs` does) plus every certificate in `extra_ca_pems`.
pub fn client_config(extra_ca_pems: &[PathBuf]) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system stores are not fatal: an extra CA file may be all that is needed, and
    // a missing root shows up as "certificate not trusted" with its remedy.
    let native = rustls_native_certs::load_native_certs();
    let _ = roots.add_parsable_certificates(native.certs);
    for path in extra_ca_pems {
        for cert in read_pem_certs(path)? {
            roots.add(cert).map_err(|e| ClientError::CaFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::TlsSetup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

fn read_pem_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let file_error = |message: String| ClientError::CaFile {
        path: path.clone(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error("no PEM certificate in this file".into()));
    }
    Ok(certs)
}

/// Classifies a failed request by walking the error's causes: a rustls certificate error, a
/// refused connection, or anything else with the whole chain of messages.
pub fn classify(host: &str, error: &(dyn StdError + 'static)) -> ClientError {
    let host = host.to_owned();
    let legacy = error.downcast_ref::<hyper_util::client::legacy::Error>();
    let connect_phase = legacy.is_some_and(hyper_util::client::legacy::Error::is_connect);
    if let Some(tls) = find_rustls(error) {
        return tls_error(host, tls);
    }
    // hyper-util's own text ("client error (Connect)") adds nothing to its cause's.
    let detail = match (legacy, error.source()) {
        (Some(_), Some(cause)) => chain_text(cause),
        _ => chain_text(error),
    };
    if connect_phase {
        ClientError::Connect { host, detail }
    } else {
        ClientError::Transport { host, detail }
    }
}

/// The rustls error among `error`'s causes. `io::Error` hides the error it wraps from
/// `source()` (hyper-rustls nests one `io::Error` in another), so it is opened explicitly.
fn find_rustls<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(tls) = find_rustls(inner)
        {
            return Some(tls);
        }
        current = e.source();
    }
    None
}

fn tls_error(host: String, e: &rustls::Error) -> ClientError {
    let detail = e.to_string();
    match e {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
            | CertificateError::BadSignature
            | CertificateError::UnhandledCriticalExtension,
        ) => ClientError::CertificateNotTrusted { host, detail },
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => ClientError::CertificateWrongName { host, detail },
        _ => ClientError::Tls { host, detail },
    }
}

/// `a: b: c` from an error and its causes, without repeating a cause already in the text.
fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        current = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_are_explained() {
        // hyper-rustls nests the rustls error in two io::Errors.
        let io = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        ));
        let e = classify("h.example", &io);
        assert!(matches!(e, ClientError::CertificateNotTrusted { .. }));
        let text = e.to_string();
        assert!(text.starts_with("certificate not trusted"), "{text}");
        assert!(
            text.contains("--cafile") && text.contains("SSL_CERT_FILE"),
            "{text}"
        );

        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        );
        assert!(matches!(
            classify("h", &io),
            ClientError::CertificateWrongName { .. }
        ));
    }

    #[test]
    fn other_errors_keep_their_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = classify("h:1", &io);
        assert_eq!(e.to_string(), "request to h:1 failed: connection refused");
    }

    #[test]
    fn missing_or_empty_ca_files_are_named() {
        let e = client_config(&[PathBuf::from("/nonexistent/ca.pem")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot use the CA file /nonexistent/ca.pem")
        );
        let dir = std::env::temp_dir().join(format!("ironhub-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a pem").unwrap();
        let e = client_config(std::slice::from_ref(&empty)).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

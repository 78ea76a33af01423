//! Connecting to NATS: the server URL (user and password, or a token, may be in it), a
//! credentials file, TLS.

use std::path::PathBuf;
use std::time::Duration;

use ironhub_store::StoreError;

use crate::error::engine;

/// How to reach the NATS servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsOptions {
    /// `nats://[user:password@]host:port` or `tls://…`; several separated by commas.
    pub url: String,
    /// A `.creds` file (JWT and NKey seed) for NATS accounts.
    pub creds_file: Option<PathBuf>,
    /// PEM CA certificates to trust for the server's TLS certificate.
    pub tls_ca: Option<PathBuf>,
    /// A PEM client certificate and its key, for servers that verify clients.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// A name the server shows for this connection.
    pub name: Option<String>,
    /// How many copies JetStream keeps of each stream and KV bucket ironhub creates: 1 on a
    /// single nats-server, 3 on a JetStream cluster of 3 (0 counts as 1). Applies to what is
    /// created from then on; JetStream keeps an existing stream's setting.
    pub replicas: usize,
}

/// Connects to NATS. Fails if no server answers; once connected, the client reconnects by
/// itself for as long as it takes, and requests fail meanwhile.
pub async fn connect(options: &NatsOptions) -> Result<async_nats::Client, StoreError> {
    let mut connect = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None);
    if let Some(path) = &options.creds_file {
        connect = connect
            .credentials_file(path)
            .await
            .map_err(|e| engine(&format!("credentials file {}", path.display()), e))?;
    }
    if let Some(ca) = &options.tls_ca {
        connect = connect.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &options.tls_client {
        connect = connect
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    if let Some(name) = &options.name {
        connect = connect.name(name);
    }
    let urls: Vec<async_nats::ServerAddr> = options
        .url
        .split(',')
        .map(|u| u.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e| engine(&format!("the URL {}", redacted(&options.url)), e))?;
    // The client does not read credentials from the URL: a user and password, or a token
    // alone, given there apply to every server of the list.
    if let Some(addr) = urls.iter().find(|a| a.username().is_some()) {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = decode(addr.username().unwrap_or_default());
        connect = match addr.password() {
            Some(password) => connect.user_and_password(user, decode(password)),
            None => connect.token(user),
        };
    }
    connect
        .connect(urls)
        .await
        .map_err(|e| engine(&format!("connect to {}", redacted(&options.url)), e))
}

/// `url` (a list, separated by commas) without passwords or tokens, for logs and errors.
pub fn redacted(url: &str) -> String {
    url.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &u[..scheme + 3], &u[at..])
            }
            _ => u.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_messages() {
        assert_eq!(
            redacted("nats://u:secret@h:4222,tls://h2:4222"),
            "nats://***@h:4222,tls://h2:4222"
        );
    }
}

//! What the benchmarks share: the host name the targets' certificates carry, TLS 1.2 to a
//! loopback port, and MQTT packets one at a time (`ironhub_simulate::net`'s reader and writer).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::bail;
use ironhub_simulate::Dialer;
pub use ironhub_simulate::net::{read, write};
use tokio::net::TcpStream;

/// The host name the benchmark's certificates are issued for.
pub const HOST: &str = "bench.ironhub";

/// The loopback address set by [`set_address`].
static ADDRESS: OnceLock<IpAddr> = OnceLock::new();

/// Moves ironhub and its clients from 127.0.0.1 to another loopback address (`ironhub-bench
/// amqp --address`, so that a smoke test keeps to its own); once, before anything listens.
pub fn set_address(address: IpAddr) {
    let _ = ADDRESS.set(address);
}

/// The loopback address ironhub listens on and clients connect to: 127.0.0.1 unless
/// [`set_address`] moved it.
pub fn address() -> IpAddr {
    ADDRESS
        .get()
        .copied()
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Waits until something listens on loopback `port` (10 s at most).
pub async fn wait_port(port: u16) -> anyhow::Result<()> {
    for _ in 0..200 {
        if TcpStream::connect((address(), port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nothing listens on {}:{port}", address())
}

/// A client's TLS stream.
pub type Tls = ironhub_simulate::net::BoxStream;

/// A TLS 1.2 client trusting `ca` (the certificate both targets are given). With `resume`,
/// connections may resume an earlier session (rustls's default in-memory cache); without it,
/// every connection is a full handshake, as a device's first connection is.
pub fn client_config(ca: &Path, resume: bool) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ironhub_tls::read_certs(ca)? {
        roots.add(c)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(ironhub_tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// A new TCP connection to loopback `port` and its TLS handshake (certificate name [`HOST`]).
pub async fn tls_connect(config: Arc<rustls::ClientConfig>, port: u16) -> anyhow::Result<Tls> {
    Dialer::new(Some((config, HOST)), Vec::new())?
        .connect(SocketAddr::from((address(), port)), 0)
        .await
}

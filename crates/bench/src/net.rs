//! What both benchmarks share: the host name the targets' certificates carry, and MQTT over
//! TLS to a loopback port, one packet at a time.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::Packet;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The host name the benchmark's certificates are issued for.
pub const HOST: &str = "bench.ironhub";

/// Waits until something listens on loopback `port` (10 s at most).
pub async fn wait_port(port: u16) -> anyhow::Result<()> {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nothing listens on 127.0.0.1:{port}")
}

/// A client's TLS stream.
pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

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

/// A new TCP connection to loopback `port` and its TLS handshake.
pub async fn tls_connect(config: Arc<rustls::ClientConfig>, port: u16) -> anyhow::Result<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    Ok(tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(HOST)?, tcp)
        .await?)
}

/// Writes one MQTT packet.
pub async fn write(tls: &mut Tls, packet: Packet) -> anyhow::Result<()> {
    let mut out = BytesMut::new();
    packet
        .write(&mut out, usize::MAX)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    tls.write_all(&out).await?;
    Ok(())
}

/// Reads one MQTT packet, buffering what follows it in `buf`.
pub async fn read(tls: &mut Tls, buf: &mut BytesMut) -> anyhow::Result<Packet> {
    loop {
        match Packet::read(buf, 1 << 20) {
            Ok(p) => return Ok(p),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => bail!("{e:?}"),
        }
        if tls.read_buf(buf).await? == 0 {
            bail!("the connection closed");
        }
    }
}

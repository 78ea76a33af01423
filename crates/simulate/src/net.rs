//! Connections: TCP from a chosen local source address (so one machine can open more than the
//! ~64k connections one source address allows towards one port), optional TLS, and MQTT
//! packets read and written one at a time (on any stream; `ironhub-bench` uses them too).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::Packet;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The largest packet a simulated device accepts (IoT Hub's messages are at most 256 KB).
const MAX_PACKET: usize = 1 << 20;

/// A byte stream to a server: TCP or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// Where and how connections go: the server's address, the name its certificate carries (TLS
/// only) and the local addresses connections are made from.
#[derive(Debug, Clone)]
pub struct Dialer {
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    sources: Arc<Vec<IpAddr>>,
}

impl Dialer {
    /// A dialer; `tls` names the host whose certificate is checked, `sources` the local
    /// addresses used in turn (empty: the system picks).
    pub fn new(
        tls: Option<(Arc<rustls::ClientConfig>, &str)>,
        sources: Vec<IpAddr>,
    ) -> anyhow::Result<Dialer> {
        let tls = match tls {
            Some((config, host)) => Some((
                config,
                ServerName::try_from(host.to_owned())
                    .with_context(|| format!("{host} is not a host name"))?,
            )),
            None => None,
        };
        Ok(Dialer {
            tls,
            sources: Arc::new(sources),
        })
    }

    /// The same trust and sources, checking another host's certificate.
    pub fn for_host(&self, host: &str) -> anyhow::Result<Dialer> {
        let mut d = self.clone();
        if let Some((config, _)) = &self.tls {
            d.tls = Some((
                config.clone(),
                ServerName::try_from(host.to_owned())
                    .with_context(|| format!("{host} is not a host name"))?,
            ));
        }
        Ok(d)
    }

    /// Connects to `address`; connection `n` comes from the `n`-th source address (in turn).
    pub async fn connect(&self, address: SocketAddr, n: usize) -> anyhow::Result<BoxStream> {
        let tcp = match self.sources.get(n % self.sources.len().max(1)) {
            Some(source) => {
                let socket = if source.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket
                    .bind(SocketAddr::new(*source, 0))
                    .with_context(|| format!("cannot bind the source address {source}"))?;
                socket.connect(address).await?
            }
            None => TcpStream::connect(address).await?,
        };
        tcp.set_nodelay(true)?;
        Ok(match &self.tls {
            Some((config, name)) => Box::new(
                tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await?,
            ),
            None => Box::new(tcp),
        })
    }
}

/// A TLS client configuration trusting the system's roots and every certificate in `ca_files`.
pub fn tls_config(ca_files: &[PathBuf]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    for file in ca_files {
        for cert in ironhub_tls::read_certs(file)
            .with_context(|| format!("cannot read the CA file {}", file.display()))?
        {
            roots.add(cert)?;
        }
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(ironhub_tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// `127.0.1.0/24` → its addresses (without the network and broadcast addresses when the
/// range has more than two); a single address stands for itself.
pub fn parse_sources(text: &str) -> anyhow::Result<Vec<IpAddr>> {
    let (address, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let address: IpAddr = address
        .trim()
        .parse()
        .with_context(|| format!("--source-addresses: {text} is not an address or CIDR range"))?;
    let Some(bits) = bits else {
        return Ok(vec![address]);
    };
    let IpAddr::V4(v4) = address else {
        bail!("--source-addresses: only IPv4 ranges are supported ({text})");
    };
    let bits: u32 = bits
        .trim()
        .parse()
        .ok()
        .filter(|b| (8..=32).contains(b))
        .with_context(|| format!("--source-addresses: the prefix of {text} must be 8 to 32"))?;
    let size = 1u64 << (32 - bits);
    let base = u64::from(u32::from(v4)) & !(size - 1);
    let (first, last) = if size > 2 {
        (base + 1, base + size - 2)
    } else {
        (base, base + size - 1)
    };
    Ok((first..=last)
        .filter_map(|a| u32::try_from(a).ok())
        .map(|a| IpAddr::V4(a.into()))
        .collect())
}

/// Writes one MQTT packet.
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, packet: Packet) -> anyhow::Result<()> {
    let mut out = BytesMut::new();
    packet
        .write(&mut out, usize::MAX)
        .map_err(|e| anyhow::anyhow!("cannot encode an MQTT packet: {e:?}"))?;
    w.write_all(&out).await?;
    Ok(())
}

/// Reads one MQTT packet, buffering what follows it in `buf`.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut) -> anyhow::Result<Packet> {
    loop {
        match Packet::read(buf, MAX_PACKET) {
            Ok(p) => return Ok(p),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => bail!("a malformed MQTT packet: {e:?}"),
        }
        if r.read_buf(buf).await? == 0 {
            bail!("the connection closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ranges_expand_to_their_host_addresses() {
        let all = parse_sources("127.0.1.0/24").unwrap();
        assert_eq!(all.len(), 254);
        assert_eq!(all[0], "127.0.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(all[253], "127.0.1.254".parse::<IpAddr>().unwrap());
        assert_eq!(parse_sources("127.0.2.7/31").unwrap().len(), 2);
        assert_eq!(
            parse_sources("127.0.0.9").unwrap(),
            vec!["127.0.0.9".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(parse_sources("127.0.0.0/16").unwrap().len(), 65_534);
        assert!(parse_sources("127.0.0.0/4").is_err());
        assert!(parse_sources("nonsense/24").is_err());
    }

    #[tokio::test]
    async fn packets_round_trip_through_a_stream() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let mut p = rumqttc::mqttbytes::v4::Publish::new(
            "t/1",
            rumqttc::mqttbytes::QoS::AtLeastOnce,
            vec![7u8; 200],
        );
        p.pkid = 3;
        let sent = Packet::Publish(p);
        let writer = tokio::spawn(async move { write(&mut a, sent).await });
        let mut buf = BytesMut::new();
        match read(&mut b, &mut buf).await.unwrap() {
            Packet::Publish(p) => {
                assert_eq!(p.pkid, 3);
                assert_eq!(p.payload.len(), 200);
            }
            other => panic!("{other:?}"),
        }
        writer.await.unwrap().unwrap();
    }
}

//! MQTT over WebSocket (RFC 6455) on a TLS connection, as a device reaches IoT Hub on port 443
//! at `/$iothub/websocket`: just enough of a client to connect and then hold the connection
//! (the idle-connection figure). Frames from the client are masked, with a zero key (a valid
//! key: the RFC asks for one, not for it to be unpredictable to a benchmark).

use std::sync::Arc;

use anyhow::{bail, ensure};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::net::{HOST, Tls, tls_connect};

/// Opens a TLS connection to loopback `port`, upgrades it to a WebSocket at
/// `/$iothub/websocket` with the `mqtt` subprotocol, sends `connect` in a binary frame and
/// waits for a successful CONNACK.
pub async fn connect(
    config: Arc<rustls::ClientConfig>,
    port: u16,
    connect: Packet,
) -> anyhow::Result<Tls> {
    let mut tls = tls_connect(config, port).await?;
    let upgrade = format!(
        "GET /$iothub/websocket HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    tls.write_all(upgrade.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        ensure!(head.len() < 8192, "the upgrade answer's head is too long");
        let b = tls.read_u8().await?;
        head.push(b);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        bail!(
            "the upgrade was refused: {}",
            String::from_utf8_lossy(&head)
        );
    }
    let mut packet = BytesMut::new();
    connect
        .write(&mut packet, usize::MAX)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    tls.write_all(&frame(&packet)).await?;
    let payload = read_frame(&mut tls).await?;
    match Packet::read(&mut BytesMut::from(&payload[..]), 1 << 16) {
        Ok(Packet::ConnAck(ConnAck {
            code: ConnectReturnCode::Success,
            ..
        })) => Ok(tls),
        other => bail!("connection refused: {other:?}"),
    }
}

/// A masked binary frame holding `payload` (a zero mask leaves it as it is).
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | u8::try_from(n).unwrap_or(125)),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    out
}

/// Reads one unmasked data frame from the server and returns its payload.
async fn read_frame(tls: &mut Tls) -> anyhow::Result<Vec<u8>> {
    let mut head = [0u8; 2];
    tls.read_exact(&mut head).await?;
    ensure!(head[1] & 0x80 == 0, "a server frame must not be masked");
    let len = match head[1] & 0x7F {
        126 => u64::from(tls.read_u16().await?),
        127 => tls.read_u64().await?,
        n => u64::from(n),
    };
    ensure!(len <= 1 << 16, "a frame of {len} bytes");
    let mut payload = vec![0; usize::try_from(len)?];
    tls.read_exact(&mut payload).await?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::frame;

    #[test]
    fn frames_carry_their_length_and_a_mask() {
        assert_eq!(frame(&[1, 2]), vec![0x82, 0x82, 0, 0, 0, 0, 1, 2]);
        let long = frame(&[7; 300]);
        assert_eq!(&long[..4], &[0x82, 0xFE, 0x01, 0x2C]);
        assert_eq!(long.len(), 4 + 4 + 300);
    }
}

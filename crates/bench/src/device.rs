//! One benchmark device over MQTT: its id, its CONNECT (a SAS token for ironhub, anonymous for
//! a peer broker), a connection, and a QoS 1 burst with a bounded number unacknowledged.

use std::sync::Arc;

use anyhow::bail;
use bytes::BytesMut;
use ironhub_auth::{sas, unix_now};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish};

use crate::net::{HOST, Tls, read, tls_connect, write};

pub(crate) fn device_id(i: usize) -> String {
    format!("bench-{i:05}")
}

pub(crate) enum Login {
    Sas(String),
    Anonymous,
}

/// A device's CONNECT: with a SAS token of its key for ironhub, anonymous for a peer.
pub(crate) fn connect_packet(id: &str, login: Login, keep_alive: u16) -> anyhow::Result<Packet> {
    let mut c = Connect::new(id);
    c.keep_alive = keep_alive;
    if let Login::Sas(key) = login {
        let token = sas::generate(
            &format!("{HOST}/devices/{id}"),
            &key,
            unix_now() + 3600,
            None,
        )?;
        c.set_login(format!("{HOST}/{id}/?api-version=2021-04-12"), token);
    }
    Ok(Packet::Connect(c))
}

/// A new TLS connection to loopback `port` and a successful CONNECT on it.
pub(crate) async fn connect(
    config: Arc<rustls::ClientConfig>,
    port: u16,
    id: &str,
    login: Login,
    keep_alive: u16,
) -> anyhow::Result<Tls> {
    let mut tls = tls_connect(config, port).await?;
    write(&mut tls, connect_packet(id, login, keep_alive)?).await?;
    let mut buf = BytesMut::new();
    match read(&mut tls, &mut buf).await? {
        Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => Ok(tls),
        other => bail!("{id}: connection refused: {other:?}"),
    }
}

/// Sends `messages` QoS 1 messages with at most `inflight` unacknowledged.
pub(crate) async fn send_all(
    mut tls: Tls,
    i: usize,
    messages: usize,
    inflight: usize,
    payload: Vec<u8>,
) -> anyhow::Result<()> {
    let topic = format!("devices/{}/messages/events/", device_id(i));
    let mut buf = BytesMut::new();
    let (mut sent, mut acked) = (0usize, 0usize);
    while acked < messages {
        while sent < messages && sent - acked < inflight.max(1) {
            let mut p = Publish::new(topic.as_str(), QoS::AtLeastOnce, payload.clone());
            p.pkid = u16::try_from(sent % 65_535 + 1).unwrap_or(1);
            write(&mut tls, Packet::Publish(p)).await?;
            sent += 1;
        }
        if let Packet::PubAck(_) = read(&mut tls, &mut buf).await? {
            acked += 1;
        }
    }
    write(&mut tls, Packet::Disconnect).await
}

//! The harness the end-to-end tests share: an in-process server on loopback, and a minimal
//! MQTT client (rumqttc's codec over tokio-rustls) that sends packets exactly as written.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unused_imports)]

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ironhub::config::ServeArgs;
use ironhub::serve::{Server, start};
use ironhub_auth::{sas, unix_now};
use ironhub_hub::model::DeviceSpec;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, Publish, Subscribe, SubscribeReasonCode,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub const HOST: &str = "myhub.example";

pub struct TestHub {
    pub server: Server,
    pub _dir: tempfile::TempDir,
}

pub async fn hub() -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        data_dir: Some(dir.path().to_owned()),
        hostnames: vec![HOST.into()],
        https_listen: Some("127.0.0.1:0".parse().unwrap()),
        mqtt_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServeArgs::default()
    };
    let server = start(&args.resolve().unwrap()).await.unwrap();
    TestHub { server, _dir: dir }
}

impl TestHub {
    pub async fn device(&self, id: &str, body: serde_json::Value) -> String {
        let spec: DeviceSpec = serde_json::from_value(body).unwrap();
        let d = self.server.hub.put_device(id, &spec, None).await.unwrap();
        d.authentication
            .symmetric_key
            .primary_key
            .unwrap_or_default()
    }

    pub fn token(&self, id: &str, key: &str, expiry: u64) -> String {
        sas::generate(&format!("{HOST}/devices/{id}"), key, expiry, None).unwrap()
    }

    pub async fn connect(
        &self,
        client_cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    ) -> Client {
        let tcp = TcpStream::connect(self.server.mqtt_addr).await.unwrap();
        let tls = self
            .tls_connector(client_cert)
            .connect(ServerName::try_from(HOST).unwrap(), tcp)
            .await
            .unwrap();
        Client {
            tls,
            buf: BytesMut::new(),
            next_pkid: 1,
        }
    }

    /// A TLS client trusting the server's CA, with `client_cert` when given.
    pub fn tls_connector(
        &self,
        client_cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    ) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for c in ironhub_tls::read_certs(&self.server.ca_certificate).unwrap() {
            roots.add(c).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(ironhub_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client_cert {
            Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// Connects `id` with a SAS token signed by `key`; returns the client and the CONNACK code.
    pub async fn connect_sas(
        &self,
        id: &str,
        key: &str,
        clean: bool,
    ) -> (Client, ConnectReturnCode) {
        let mut c = self.connect(None).await;
        let mut connect = Connect::new(id);
        connect.clean_session = clean;
        connect.set_login(
            format!("{HOST}/{id}/?api-version=2021-04-12"),
            self.token(id, key, unix_now() + 3600),
        );
        let code = c.handshake(connect).await;
        (c, code)
    }
}

pub struct Client {
    pub tls: TlsStream<TcpStream>,
    pub buf: BytesMut,
    pub next_pkid: u16,
}

impl Client {
    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).unwrap();
        self.tls.write_all(&out).await.unwrap();
    }

    /// The next packet, or `None` when the server closed the connection (or 5 s passed).
    pub async fn recv(&mut self) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Some(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("bad packet from the server: {e:?}"),
            }
            let read = tokio::time::timeout_at(deadline, self.tls.read_buf(&mut self.buf)).await;
            match read {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// How long until the server closes the connection, reading (and dropping) whatever it
    /// sends meanwhile; `None` if it is still open after `within`.
    pub async fn closed_within(&mut self, within: Duration) -> Option<Duration> {
        let started = tokio::time::Instant::now();
        let deadline = started + within;
        loop {
            self.buf.clear();
            match tokio::time::timeout_at(deadline, self.tls.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Some(started.elapsed()),
                Err(_) => return None,
            }
        }
    }

    /// PINGREQ, answered by PINGRESP: the connection is alive.
    pub async fn ping(&mut self) {
        self.send(Packet::PingReq).await;
        assert!(
            matches!(self.recv().await, Some(Packet::PingResp)),
            "no PINGRESP"
        );
    }

    pub async fn handshake(&mut self, connect: Connect) -> ConnectReturnCode {
        self.send(Packet::Connect(connect)).await;
        match self.recv().await {
            Some(Packet::ConnAck(ConnAck { code, .. })) => code,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub fn pkid(&mut self) -> u16 {
        self.next_pkid += 1;
        self.next_pkid
    }

    pub async fn publish(&mut self, topic: &str, qos: QoS, payload: &[u8]) {
        let mut p = Publish::new(topic, qos, payload.to_vec());
        if qos != QoS::AtMostOnce {
            p.pkid = self.pkid();
        }
        self.send(Packet::Publish(p)).await;
    }

    pub async fn subscribe(&mut self, filters: &[&str]) -> Vec<SubscribeReasonCode> {
        let mut s = Subscribe::new(filters[0], QoS::AtLeastOnce);
        for f in &filters[1..] {
            s.add((*f).to_owned(), QoS::AtLeastOnce);
        }
        s.pkid = self.pkid();
        self.send(Packet::Subscribe(s)).await;
        match self.recv().await {
            Some(Packet::SubAck(ack)) => ack.return_codes,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// The next PUBLISH from the server.
    pub async fn next_publish(&mut self) -> Publish {
        loop {
            match self.recv().await {
                Some(Packet::Publish(p)) => return p,
                Some(_) => continue,
                None => panic!("the connection closed before a PUBLISH arrived"),
            }
        }
    }
}

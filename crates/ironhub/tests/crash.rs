//! `kill -9` during a burst of QoS 1 telemetry loses no message that was acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ironhub_auth::{sas, unix_now};
use ironhub_hub::{Backends, Hub};
use ironhub_store::{EventLog as _, LocalBus, SqliteEventLog, SqliteStore, Store as _};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "myhub.example";

/// Creates the hub and a device in `dir` without a server, returning the device key.
async fn prepare(dir: &std::path::Path) -> String {
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir).unwrap()),
        events: Arc::new(SqliteEventLog::open(dir, 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec![HOST.into()]).await.unwrap();
    let spec = serde_json::from_value(serde_json::json!({})).unwrap();
    let device = hub.put_device("burst", &spec, None).await.unwrap();
    device.authentication.symmetric_key.primary_key.unwrap()
}

fn spawn_server(dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ironhub"))
        .args([
            "serve",
            "--hostname",
            HOST,
            "--https-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the server has recorded where it listens; returns the MQTT port.
async fn mqtt_port(dir: &std::path::Path) -> u16 {
    let store = SqliteStore::open_existing(dir).unwrap();
    for _ in 0..200 {
        if let Some(e) = store.endpoint().await.unwrap() {
            return e.mqtt_port;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not start");
}

#[tokio::test]
async fn kill_9_during_a_telemetry_burst_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let key = prepare(dir.path()).await;
    let mut server = spawn_server(dir.path());
    let port = mqtt_port(dir.path()).await;

    let mut roots = rustls::RootCertStore::empty();
    for c in ironhub_tls::read_certs(&dir.path().join("tls/ca.pem")).unwrap() {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(ironhub_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);

    let mut connect = Connect::new("burst");
    let token = sas::generate(
        &format!("{HOST}/devices/burst"),
        &key,
        unix_now() + 600,
        None,
    )
    .unwrap();
    connect.set_login(format!("{HOST}/burst/?api-version=2021-04-12"), token);
    let mut out = BytesMut::new();
    Packet::Connect(connect)
        .write(&mut out, usize::MAX)
        .unwrap();
    wr.write_all(&out).await.unwrap();

    // Publish as fast as the connection takes it, in another task.
    let writer = tokio::spawn(async move {
        for i in 1..=20_000u16 {
            let mut p = Publish::new(
                format!("devices/burst/messages/events/%24.mid=m{i}"),
                QoS::AtLeastOnce,
                format!("{{\"i\":{i}}}").into_bytes(),
            );
            p.pkid = i;
            let mut out = BytesMut::new();
            Packet::Publish(p).write(&mut out, usize::MAX).unwrap();
            if wr.write_all(&out).await.is_err() {
                break;
            }
        }
    });

    // Collect acknowledgements; kill the server once a few hundred have arrived.
    let mut acked = HashSet::new();
    let mut buf = BytesMut::new();
    let mut killed = false;
    loop {
        match Packet::read(&mut buf, 1 << 20) {
            Ok(Packet::PubAck(a)) => {
                acked.insert(a.pkid);
                if acked.len() >= 300 && !killed {
                    server.kill().unwrap(); // SIGKILL
                    killed = true;
                }
                continue;
            }
            Ok(_) => continue,
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
        match tokio::time::timeout(Duration::from_secs(10), rd.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    let _ = server.wait();
    writer.abort();
    assert!(
        killed,
        "the burst was acknowledged far enough to kill the server during it"
    );

    // Every acknowledged message is in the log after the crash.
    let log = SqliteEventLog::open(dir.path(), 4).unwrap();
    let partition = ironhub_store::eventlog::partition_for("burst", log.partition_count());
    let stored: HashSet<String> = log
        .read(partition, 0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.system_properties["message-id"].clone())
        .collect();
    let lost: Vec<u16> = acked
        .iter()
        .filter(|i| !stored.contains(&format!("m{i}")))
        .copied()
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(stored.len() >= acked.len());

    // And the server starts again on the same data.
    let mut again = spawn_server(dir.path());
    let store = SqliteStore::open_existing(dir.path()).unwrap();
    assert!(store.get_device("burst").await.unwrap().is_some());
    let _ = again.kill();
    let _ = again.wait();
}

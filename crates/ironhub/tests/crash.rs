//! `kill -9` loses nothing the server acknowledged: a burst of QoS 1 telemetry, and
//! cloud-to-device messages queued (204) or delivered but not yet acknowledged by the device.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ironhub_auth::{sas, unix_now};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};
use ironhub_store::prelude::*;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, PubAck, Publish, Subscribe};
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

/// Waits until the server has recorded where it listens and accepts connections there;
/// returns the MQTT port.
async fn mqtt_port(dir: &std::path::Path) -> u16 {
    let store = SqliteStore::open_existing(dir).unwrap();
    for _ in 0..200 {
        if let Some(e) = store.endpoint().await.unwrap()
            && tokio::net::TcpStream::connect(("127.0.0.1", e.mqtt_port))
                .await
                .is_ok()
        {
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

// ---------------------------------------------------------------------------------------------
// Cloud-to-device messages across a `kill -9`.

/// The host name of the C2D crash tests: an address, so that the REST client can dial it.
const C2D_HOST: &str = "127.0.0.1";
const C2D_DEVICE: &str = "c2d";

/// A port nothing listens on now (so both runs of the server can use the same one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct C2dServer {
    /// The data directory (in `dir`, or on the tmpfs of `mount`).
    data: std::path::PathBuf,
    /// Unmounted before `dir` is removed (fields drop in order); held only to be dropped.
    _mount: Option<Tmpfs>,
    _dir: tempfile::TempDir,
    https_port: u16,
    mqtt_port: u16,
    child: Option<Child>,
    key: String,
}

impl C2dServer {
    /// A hub with the device `c2d` (created before the server runs).
    async fn prepare() -> C2dServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_owned();
        Self::prepare_in(dir, data, None).await
    }

    /// [`C2dServer::prepare`] with the data in `data`.
    async fn prepare_in(
        dir: tempfile::TempDir,
        data: std::path::PathBuf,
        mount: Option<Tmpfs>,
    ) -> C2dServer {
        let backends = Backends {
            store: Arc::new(SqliteStore::open(&data).unwrap()),
            events: Arc::new(SqliteEventLog::open(&data, 4).unwrap()),
            bus: Arc::new(LocalBus::new()),
        };
        let hub = Hub::open(backends, vec![C2D_HOST.into()]).await.unwrap();
        let spec = serde_json::from_value(serde_json::json!({})).unwrap();
        let device = hub.put_device(C2D_DEVICE, &spec, None).await.unwrap();
        let key = device.authentication.symmetric_key.primary_key.unwrap();
        C2dServer {
            data,
            _mount: mount,
            _dir: dir,
            https_port: free_port(),
            mqtt_port: free_port(),
            child: None,
            key,
        }
    }

    /// Starts `ironhub serve` and waits until both listeners accept connections.
    async fn start(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(env!("CARGO_BIN_EXE_ironhub"))
            .args(["serve", "--hostname", C2D_HOST])
            .arg("--https-listen")
            .arg(format!("127.0.0.1:{}", self.https_port))
            .arg("--mqtt-listen")
            .arg(format!("127.0.0.1:{}", self.mqtt_port))
            .args(["--amqp-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for port in [self.https_port, self.mqtt_port] {
            let mut tries = 0;
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tries += 1;
                assert!(tries < 400, "the server did not listen on {port}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// SIGKILL: no chance to flush or to settle anything.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            let _ = child.wait();
        }
    }

    /// The REST client the CLI uses, logged in as the owner policy.
    async fn client(&self) -> ironhub_client::HubClient {
        let id = ironhub::identity::Identity::load(&self.data).await.unwrap();
        ironhub_client::HubClient::new(
            id.connection_string("iothubowner", false).unwrap(),
            &[self.data.join("tls/ca.pem")],
        )
        .unwrap()
    }

    /// The device `c2d` over MQTT (TLS, SAS), subscribed to its messages at QoS 1.
    async fn device(&self) -> Device {
        let mut roots = rustls::RootCertStore::empty();
        for c in ironhub_tls::read_certs(&self.data.join("tls/ca.pem")).unwrap() {
            roots.add(c).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(ironhub_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.mqtt_port))
            .await
            .unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(C2D_HOST).unwrap(), tcp)
            .await
            .unwrap();
        let mut device = Device {
            tls,
            buf: BytesMut::new(),
        };
        let mut connect = Connect::new(C2D_DEVICE);
        connect.clean_session = true;
        connect.keep_alive = 30;
        let token = sas::generate(
            &format!("{C2D_HOST}/devices/{C2D_DEVICE}"),
            &self.key,
            unix_now() + 600,
            None,
        )
        .unwrap();
        connect.set_login(
            format!("{C2D_HOST}/{C2D_DEVICE}/?api-version=2021-04-12"),
            token,
        );
        device.send(Packet::Connect(connect)).await;
        match device.recv(Duration::from_secs(10)).await {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        let mut subscribe = Subscribe::new(
            format!("devices/{C2D_DEVICE}/messages/devicebound/#"),
            QoS::AtLeastOnce,
        );
        subscribe.pkid = 1;
        device.send(Packet::Subscribe(subscribe)).await;
        loop {
            match device.recv(Duration::from_secs(10)).await {
                Some(Packet::SubAck(_)) => break,
                Some(_) => {}
                None => panic!("no SUBACK"),
            }
        }
        device
    }
}

impl Drop for C2dServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Device {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: BytesMut,
}

impl Device {
    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).unwrap();
        self.tls.write_all(&out).await.unwrap();
    }

    /// The next packet within `wait`, or `None` (nothing came, or the connection closed).
    async fn recv(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Some(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("bad packet from the server: {e:?}"),
            }
            match tokio::time::timeout_at(deadline, self.tls.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// Subscribes to `$iothub/twin/res/#` and waits for the SUBACK.
    async fn subscribe_twin_responses(&mut self) {
        let mut subscribe = Subscribe::new("$iothub/twin/res/#", QoS::AtMostOnce);
        subscribe.pkid = 2;
        self.send(Packet::Subscribe(subscribe)).await;
        while !matches!(
            self.recv(Duration::from_secs(10)).await,
            Some(Packet::SubAck(_))
        ) {}
    }

    /// The next PUBLISH within `wait`, pinging every few seconds to keep the connection alive.
    async fn publish_within(&mut self, wait: Duration) -> Option<Publish> {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            let slice = Duration::from_secs(5)
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            match self.recv(slice).await {
                Some(Packet::Publish(p)) => return Some(p),
                Some(_) => {}
                None => self.send(Packet::PingReq).await,
            }
        }
        None
    }
}

/// The `n`th test message: an id, a body, and properties with upper-case names.
fn c2d_message(n: usize) -> ironhub_client::C2dMessage {
    ironhub_client::C2dMessage {
        message_id: Some(format!("crash-{n}")),
        correlation_id: Some(format!("corr-{n}")),
        content_type: Some("text/plain".into()),
        ack: Some("full".into()),
        properties: vec![
            ("Seq".into(), n.to_string()),
            ("Topic".into(), "/power".into()),
        ],
        body: format!("message {n}").into_bytes(),
        ..ironhub_client::C2dMessage::default()
    }
}

/// `%24.mid=crash-3&…` → the message id and the application properties, in order.
fn parse_bag(topic: &str) -> (String, Vec<(String, String)>) {
    let bag = topic.split('/').nth(4).unwrap();
    let mut mid = String::new();
    let mut app = Vec::new();
    for pair in bag.split('&') {
        let (k, v) = pair.split_once('=').unwrap();
        let (k, v) = (percent_decode(k), percent_decode(v));
        if k == "$.mid" {
            mid = v;
        } else if !k.starts_with("$.") && k != "iothub-ack" {
            app.push((k, v));
        }
    }
    (mid, app)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn kill_9_right_after_c2d_sends_loses_no_queued_message() {
    let mut server = C2dServer::prepare().await;
    server.start().await;
    let client = server.client().await;
    const N: usize = 12;
    for n in 0..N {
        let id = client.send_c2d(C2D_DEVICE, &c2d_message(n)).await.unwrap();
        assert_eq!(id, format!("crash-{n}"));
    }
    // Right after the last 204.
    server.kill9();

    server.start().await;
    let mut device = server.device().await;
    let mut got = Vec::new();
    while got.len() < N {
        let p = device
            .publish_within(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("only {} of {N} messages arrived: {got:?}", got.len()));
        assert_eq!(p.qos, QoS::AtLeastOnce);
        let (mid, app) = parse_bag(&p.topic);
        let n: usize = mid.strip_prefix("crash-").unwrap().parse().unwrap();
        assert_eq!(p.payload.as_ref(), format!("message {n}").as_bytes());
        assert!(
            p.topic.contains(&format!("%24.cid=corr-{n}&")),
            "{}",
            p.topic
        );
        assert!(p.topic.contains("&%24.ct=text%2Fplain&"), "{}", p.topic);
        assert_eq!(
            app,
            [
                ("Seq".to_owned(), n.to_string()),
                ("Topic".to_owned(), "/power".to_owned()),
            ],
            "properties, their names' case and their order survive"
        );
        assert!(p.topic.ends_with("&Topic=%2Fpower"), "{}", p.topic);
        device.send(Packet::PubAck(PubAck::new(p.pkid))).await;
        got.push(mid);
    }
    let expected: Vec<String> = (0..N).map(|n| format!("crash-{n}")).collect();
    assert_eq!(got, expected, "every message, once, in order");
    assert!(
        device
            .publish_within(Duration::from_millis(1500))
            .await
            .is_none(),
        "no message is delivered twice"
    );
    // Every PUBACK completed its message: the queue is empty and the feedback says Success.
    let mut feedback = Vec::new();
    for _ in 0..50 {
        while let Some(batch) = client.receive_feedback().await.unwrap() {
            feedback.extend(batch.records);
            client.complete_feedback(&batch.lock_token).await.unwrap();
        }
        if feedback.len() >= N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(feedback.len(), N, "{feedback:?}");
    assert!(
        feedback
            .iter()
            .all(|r| r.status_code == ironhub_wire::hub::FeedbackStatus::Success)
    );
    let d = client.get_device(C2D_DEVICE).await.unwrap();
    assert_eq!(d.cloud_to_device_message_count, 0);
}

#[tokio::test]
async fn kill_9_before_the_puback_delivers_the_message_again_after_the_restart() {
    let mut server = C2dServer::prepare().await;
    server.start().await;
    let client = server.client().await;
    client.send_c2d(C2D_DEVICE, &c2d_message(1)).await.unwrap();
    let mut device = server.device().await;
    let first = device
        .publish_within(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(parse_bag(&first.topic).0, "crash-1");
    // Received, not acknowledged: the server dies.
    server.kill9();
    drop(device);

    server.start().await;
    let mut device = server.device().await;
    // No connection survives a restart, so the server gives the message back at start instead
    // of waiting for the delivery's lock to run out.
    let again = device
        .publish_within(Duration::from_secs(10))
        .await
        .expect("the unacknowledged message was lost in the crash");
    let (mid, app) = parse_bag(&again.topic);
    assert_eq!(mid, "crash-1");
    assert_eq!(again.payload.as_ref(), b"message 1");
    assert_eq!(app[1], ("Topic".to_owned(), "/power".to_owned()));
    device.send(Packet::PubAck(PubAck::new(again.pkid))).await;
    device.send(Packet::PingReq).await;
    assert!(matches!(
        device.recv(Duration::from_secs(5)).await,
        Some(Packet::PingResp)
    ));
    let d = client.get_device(C2D_DEVICE).await.unwrap();
    assert_eq!(d.cloud_to_device_message_count, 0);
}

// ---------------------------------------------------------------------------------------------
// Twin versions across a `kill -9`.

#[tokio::test]
async fn kill_9_during_reported_patches_never_takes_the_twin_version_back() {
    let mut server = C2dServer::prepare().await;
    server.start().await;
    let mut device = server.device().await;
    device.subscribe_twin_responses().await;

    // Reported patches one after the other; each 204 carries the version it made.
    let patch = |n: u32| {
        Publish::new(
            format!("$iothub/twin/PATCH/properties/reported/?$rid={n}"),
            QoS::AtMostOnce,
            format!("{{\"n\":{n}}}").into_bytes(),
        )
    };
    let mut acked: Option<(u32, u64)> = None;
    for n in 1..=40u32 {
        device.send(Packet::Publish(patch(n))).await;
        let answer = device
            .publish_within(Duration::from_secs(10))
            .await
            .unwrap();
        let prefix = format!("$iothub/twin/res/204/?$rid={n}&$version=");
        let version: u64 = answer
            .topic
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{}", answer.topic))
            .parse()
            .unwrap();
        if let Some((_, before)) = acked {
            assert!(
                version > before,
                "versions only go up: {before} then {version}"
            );
        }
        acked = Some((n, version));
    }
    // One more patch in flight, and the server dies.
    device.send(Packet::Publish(patch(41))).await;
    server.kill9();
    drop(device);

    server.start().await;
    let (last_n, last_version) = acked.unwrap();
    let twin =
        serde_json::to_value(server.client().await.get_twin(C2D_DEVICE).await.unwrap()).unwrap();
    let reported = &twin["properties"]["reported"];
    let version = reported["$version"].as_u64().unwrap();
    let n = u32::try_from(reported["n"].as_u64().unwrap()).unwrap();
    assert!(
        version >= last_version,
        "acknowledged version {last_version}, {version} after the restart"
    );
    assert!(
        n >= last_n,
        "acknowledged n={last_n}, n={n} after the restart"
    );

    // And the next patch goes on from there.
    let mut device = server.device().await;
    device.subscribe_twin_responses().await;
    device.send(Packet::Publish(patch(100))).await;
    let answer = device
        .publish_within(Duration::from_secs(10))
        .await
        .unwrap();
    let next: u64 = answer
        .topic
        .rsplit("$version=")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(next > version, "{next} after {version}");
}

// ---------------------------------------------------------------------------------------------
// A full disk.

/// A tmpfs of a few MB mounted for a test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `mb` MB at `at`; `None` where mounting is not allowed (not root, or
    /// a container without the capability), which the caller reports.
    fn mount(at: &std::path::Path, mb: u32) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros to `path` until the disk refuses more.
fn fill(path: &std::path::Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test]
async fn a_full_disk_refuses_writes_clearly_and_corrupts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let Some(mount) = Tmpfs::mount(&disk, 8) else {
        // DESIGN.md ("A full disk is named"): only root with CAP_SYS_ADMIN can make a small disk.
        eprintln!("cannot mount a tmpfs here (not root?): the full-disk test did not run");
        return;
    };
    let mut server = C2dServer::prepare_in(dir, disk.join("data"), Some(mount)).await;
    server.start().await;
    let client = server.client().await;
    let spec = serde_json::from_value(serde_json::json!({})).unwrap();
    client.create_device("before", &spec).await.unwrap();

    let filler = disk.join("filler");
    fill(&filler);
    let refused = client.create_device("during", &spec).await.unwrap_err();
    assert!(
        refused.to_string().contains("storage is full"),
        "a clear error: {refused}"
    );
    // Telemetry is not acknowledged when it cannot be kept.
    let mut device = server.device().await;
    let mut p = Publish::new(
        format!("devices/{C2D_DEVICE}/messages/events/"),
        QoS::AtLeastOnce,
        b"full".to_vec(),
    );
    p.pkid = 7;
    device.send(Packet::Publish(p)).await;
    loop {
        match device.recv(Duration::from_secs(5)).await {
            Some(Packet::PubAck(a)) => {
                panic!("PUBACK {} for a message the disk could not take", a.pkid)
            }
            Some(_) => {}
            None => break,
        }
    }

    // Space again: the server works on, and nothing half-written shows, also after a crash.
    std::fs::remove_file(&filler).unwrap();
    client.create_device("after", &spec).await.unwrap();
    server.kill9();
    server.start().await;
    let client = server.client().await;
    client.get_device("before").await.unwrap();
    client.get_device("after").await.unwrap();
    assert!(client.get_device("during").await.is_err());
    let log = SqliteEventLog::open(&server.data, 4).unwrap();
    let partition = ironhub_store::eventlog::partition_for(C2D_DEVICE, log.partition_count());
    let stored = log.read(partition, 0, 1000).await.unwrap();
    assert!(stored.iter().all(|e| e.event.body.as_slice() != b"full"));
}

#[tokio::test]
async fn kill_9_while_c2d_messages_are_being_sent_delivers_every_accepted_one() {
    let mut server = C2dServer::prepare().await;
    server.start().await;
    let client = server.client().await;
    // Senders race the kill: whatever got its 204 must be delivered after the restart.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sender = {
        let client = server.client().await;
        tokio::spawn(async move {
            for n in 0..500 {
                match client.send_c2d(C2D_DEVICE, &c2d_message(n)).await {
                    Ok(id) => tx.send(id).unwrap(),
                    Err(_) => break,
                }
            }
        })
    };
    let mut accepted = Vec::new();
    while accepted.len() < 15 {
        accepted.push(rx.recv().await.expect("the sends were accepted"));
    }
    server.kill9();
    sender.await.unwrap();
    while let Ok(id) = rx.try_recv() {
        accepted.push(id);
    }
    drop(client);

    server.start().await;
    let mut device = server.device().await;
    let mut delivered = HashSet::new();
    while let Some(p) = device.publish_within(Duration::from_secs(3)).await {
        device.send(Packet::PubAck(PubAck::new(p.pkid))).await;
        delivered.insert(parse_bag(&p.topic).0);
    }
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !delivered.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "accepted (204) but never delivered: {lost:?}"
    );
}

#[test]
fn an_unwritable_data_directory_is_a_one_line_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let mut places = vec![file.join("data")];
    // A read-only file system refuses even root (a plain chmod does not).
    let ro = dir.path().join("ro");
    let mount = Tmpfs::mount(&ro, 1);
    if mount.is_some() {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&ro)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        places.push(ro.join("data"));
    }
    for place in places {
        let out = Command::new(env!("CARGO_BIN_EXE_ironhub"))
            .args([
                "serve",
                "--https-listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(&place)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{place:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(
            lines[0].starts_with("error: cannot create the data directory")
                && lines[0].contains(&place.display().to_string()),
            "{stderr}"
        );
    }
    drop(mount);
}

//! NATS subject endpoints against a real `nats-server` (Debian's, with JetStream) started on
//! the test network: JetStream-acknowledged delivery through a server stopped and restarted
//! mid-run (nothing lost, nothing twice), and core NATS publishing with headers. Skipped with
//! a message when `nats-server` is not installed, unless `CI` is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use common::*;
use futures::StreamExt as _;
use ironhub_endpoints::{EndpointKind, Health, Pump, Sink, SinkContext, sink, validate};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Whether `nats-server` can run here; panics under CI when it cannot.
fn nats_available() -> bool {
    let found = std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server is not installed (scripts/test installs it)"
        );
        eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server)");
    }
    found
}

/// A free port on the test network's address.
fn free_port() -> u16 {
    std::net::TcpListener::bind((host(), 0))
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// Starts nats-server with JetStream (data in `store`) and waits for it to say it is ready.
async fn start_nats(port: u16, store: &Path) -> Child {
    start_nats_with(port, store, &[]).await
}

/// [`start_nats`] with more arguments.
async fn start_nats_with(port: u16, store: &Path, extra: &[&Path]) -> Child {
    // JetStream's storage limit defaults to 75% of the free disk; a fixed one keeps a nearly
    // full disk from refusing the tests' streams.
    std::fs::create_dir_all(store).expect("the store directory");
    let limits = store.join("limits.conf");
    std::fs::write(
        &limits,
        "jetstream {\n  max_file_store: 64G\n  max_memory_store: 1G\n}\n",
    )
    .expect("write the JetStream limits");
    let mut child = Command::new("nats-server")
        .args(["-js", "-a", &host(), "-p", &port.to_string(), "-c"])
        .arg(&limits)
        .arg("-sd")
        .arg(store)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start nats-server");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let ready = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("Server is ready") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready.ok(), Some(true), "nats-server did not become ready");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// Stops nats-server as an operator would (SIGTERM) and waits for it to exit.
async fn stop_nats(mut child: Child) {
    let pid = child.id().expect("running");
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill");
    assert!(status.success());
    tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("nats-server stops")
        .expect("wait");
}

fn nats_sink(url: &str, subject: &str) -> Arc<dyn Sink> {
    nats_sink_with(json!({"name": "bus", "url": url, "subject": subject, "timeoutInSeconds": 2}))
}

fn nats_sink_with(settings: serde_json::Value) -> Arc<dyn Sink> {
    let settings = validate(EndpointKind::NatsSubjects, &settings).expect("valid settings");
    sink(
        &settings,
        &SinkContext {
            hub_name: "hub".into(),
            file_root: PathBuf::from("/nonexistent"),
        },
    )
    .expect("sink")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_delivery_survives_a_server_restart() {
    if !nats_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("js");
    let port = free_port();
    let url = format!("nats://{}:{port}", host());
    let server = start_nats(port, &store).await;
    let admin = async_nats::connect(url.as_str()).await.expect("connect");
    let js = async_nats::jetstream::new(admin.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "TELEMETRY".into(),
        subjects: vec!["telemetry.>".into()],
        ..Default::default()
    })
    .await
    .expect("create the stream");

    let stream = open_log(&dir.path().join("stream"), 2);
    let dead = open_log(&dir.path().join("dead"), 1);
    let pump = Pump::start(
        "bus",
        stream.clone(),
        nats_sink(&url, "telemetry.{deviceId}"),
        dead.clone(),
        fast(1000),
    );
    let mut sent = append_all(
        &stream,
        vec![
            message("dev.1", b"\x00one", None),
            message("dev-b", b"two", None),
            message("dev.1", br#"{"n":3}"#, Some("application/json")),
        ],
    )
    .await;
    wait_status(&pump, "3 deliveries", |s| s.delivered == 3).await;

    // The server goes away; messages keep arriving and wait in the delivery stream.
    drop(admin);
    stop_nats(server).await;
    sent.extend(
        append_all(
            &stream,
            vec![
                message("dev.1", b"four", None),
                message("dev-b", b"five", None),
                message("dev.1", b"six", None),
            ],
        )
        .await,
    );
    let status = wait_status(&pump, "the outage noticed", |s| {
        s.health_status == Health::Unhealthy
    })
    .await;
    assert_eq!(status.delivered, 3);
    assert!(status.last_known_error.is_some());

    // Back on the same port with the same store: everything arrives, once.
    let _server = start_nats(port, &store).await;
    let status = wait_status(&pump, "6 deliveries", |s| s.delivered == 6).await;
    assert_eq!(status.health_status, Health::Healthy);
    assert_eq!(status.dead_lettered, 0);
    pump.stop().await;
    assert!(read_all(&dead).await.is_empty());

    let admin = async_nats::connect(url.as_str()).await.expect("reconnect");
    let js = async_nats::jetstream::new(admin);
    let mut telemetry = js.get_stream("TELEMETRY").await.expect("stream");
    let info = telemetry.info().await.expect("info");
    assert_eq!(info.state.messages, 6, "no message lost or stored twice");
    let mut got = Vec::new();
    for seq in 1..=6 {
        got.push(telemetry.get_raw_message(seq).await.expect("message"));
    }
    for device in ["dev.1", "dev-b"] {
        let subject = ironhub_endpoints::render_subject("telemetry.{deviceId}", device);
        let expected: Vec<&[u8]> = sent
            .iter()
            .filter(|e| e.event.device_id == device)
            .map(|e| e.event.body.as_slice())
            .collect();
        let bodies: Vec<&[u8]> = got
            .iter()
            .filter(|m| m.subject.as_str() == subject)
            .map(|m| m.payload.as_ref())
            .collect();
        assert_eq!(bodies, expected, "{device}: exact bodies in order");
    }
    assert_eq!(got[0].subject.as_str(), "telemetry.dev%2E1");
    let headers = &got[0].headers;
    assert_eq!(
        headers
            .get("iothub-connection-device-id")
            .map(|v| v.as_str()),
        Some("dev.1")
    );
    assert_eq!(
        headers.get("iothub-app-level").map(|v| v.as_str()),
        Some("high")
    );
    assert!(headers.get("Nats-Msg-Id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_nats_subjects_get_each_message_with_headers() {
    if !nats_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("nats://{}:{port}", host());
    let _server = start_nats(port, &dir.path().join("js")).await;
    nats_sink(&url, "plain.x").probe().await.expect("up");
    let down = nats_sink(&format!("nats://{}:{}", host(), free_port()), "plain.x")
        .probe()
        .await
        .expect_err("down");
    assert!(down.message.contains("cannot connect"), "{down}");
    let listener = async_nats::connect(url.as_str()).await.expect("connect");
    let mut subscription = listener.subscribe("plain.>").await.expect("subscribe");
    listener.flush().await.expect("flush");

    let stream = open_log(&dir.path().join("stream"), 1);
    let dead = open_log(&dir.path().join("dead"), 1);
    let pump = Pump::start(
        "bus",
        stream.clone(),
        nats_sink(&url, "plain.{deviceId}"),
        dead,
        fast(3),
    );
    append_all(
        &stream,
        vec![
            message("dev-a", b"\xffraw\x00", None),
            message("dev-a", b"second", None),
        ],
    )
    .await;
    let mut received = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(WAIT, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("no message in time; {:?}", pump.status()))
            .expect("subscribed");
        received.push(m);
    }
    assert_eq!(received[0].subject.as_str(), "plain.dev-a");
    assert_eq!(received[0].payload.as_ref(), b"\xffraw\x00");
    assert_eq!(received[1].payload.as_ref(), b"second");
    let headers = received[0].headers.as_ref().expect("headers");
    assert_eq!(
        headers.get("ironhub-delivery-id").map(|v| v.as_str()),
        Some("0-0")
    );
    wait_status(&pump, "2 deliveries", |s| s.delivered == 2).await;
    pump.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_servers_are_trusted_through_the_ca_file() {
    if !nats_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tls =
        ironhub_tls::ensure_certificates(&dir.path().join("tls"), &[host()]).expect("certificates");
    let port = free_port();
    let _server = start_nats_with(
        port,
        &dir.path().join("js"),
        &[
            Path::new("--tls"),
            Path::new("--tlscert"),
            &tls.server_chain,
            Path::new("--tlskey"),
            &tls.server_key,
        ],
    )
    .await;
    let url = format!("tls://{}:{port}", host());
    let listener = async_nats::ConnectOptions::new()
        .add_root_certificates(tls.ca.clone())
        .require_tls(true)
        .connect(url.as_str())
        .await
        .expect("connect over TLS");
    let mut subscription = listener.subscribe("secure.>").await.expect("subscribe");
    listener.flush().await.expect("flush");

    let trusting = nats_sink_with(json!({"name": "secure", "url": url,
        "subject": "secure.{deviceId}", "caFile": tls.ca, "timeoutInSeconds": 2}));
    trusting.probe().await.expect("trusted");
    let untrusting = nats_sink_with(json!({"name": "plain", "url": url,
        "subject": "secure.{deviceId}", "timeoutInSeconds": 2}));
    let refused = untrusting.probe().await.expect_err("not trusted");
    assert!(refused.message.contains("cannot connect"), "{refused}");

    let stream = open_log(&dir.path().join("stream"), 1);
    let dead = open_log(&dir.path().join("dead"), 1);
    let pump = Pump::start("secure", stream.clone(), trusting, dead, fast(3));
    append_all(&stream, vec![message("dev-a", b"over tls", None)]).await;
    let m = tokio::time::timeout(WAIT, subscription.next())
        .await
        .unwrap_or_else(|_| panic!("no message in time; {:?}", pump.status()))
        .expect("subscribed");
    assert_eq!(m.payload.as_ref(), b"over tls");
    wait_status(&pump, "1 delivery", |s| s.delivered == 1).await;
    pump.stop().await;
}

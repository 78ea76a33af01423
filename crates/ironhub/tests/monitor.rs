//! `ironhub hub monitor-events` and `consumer-group` end to end: an in-process server, the real
//! binary, telemetry appended through the hub, and what a script reading stdout sees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ironhub::config::ServeArgs;
use ironhub::serve::{Server, start};
use ironhub_client::HubClient;
use ironhub_hub::{Annotations, AuthMethod, DeviceIdentity};
use serde_json::{Value, json};

async fn server(dir: &std::path::Path) -> Server {
    let args = ServeArgs {
        data_dir: Some(dir.to_owned()),
        hostnames: vec!["127.0.0.1".into()],
        https_listen: Some("127.0.0.1:0".parse().unwrap()),
        mqtt_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServeArgs::default()
    };
    start(&args.resolve().unwrap()).await.unwrap()
}

fn command(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ironhub"));
    cmd.arg("hub")
        .args(args)
        .env_remove("IRONHUB_CONNECTION_STRING")
        .env("IRONHUB_DATA_DIR", dir);
    cmd
}

fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    command(dir, args).output().unwrap()
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The concatenated, indented JSON objects monitor-events prints.
fn events(stdout: &[u8]) -> Vec<Value> {
    serde_json::Deserializer::from_slice(stdout)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect()
}

async fn send(server: &Server, device: &str, properties: &[(&str, &str)], body: &[u8]) {
    let who = DeviceIdentity {
        device_id: device.into(),
        module_id: None,
        generation_id: "gen-1".into(),
        auth: AuthMethod::Sas,
        model_id: None,
    };
    // The pairs are an MQTT property bag (`$.mid`, …), read as the MQTT adapter reads it.
    let properties = properties
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
        .collect();
    let message =
        ironhub_mqtt::topics::telemetry(properties, body.to_vec(), Annotations::default());
    server.hub.send_telemetry(&who, message).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_prints_each_event_as_it_arrives_then_exits_on_idle() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    send(&server, "old", &[], b"before the monitor").await;

    let mut child = command(
        dir.path(),
        &["monitor-events", "--props", "sys", "app", "--timeout", "3"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (started, mut stderr) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(stderr);
        reader.read_line(&mut line).unwrap();
        (line, reader)
    })
    .await
    .unwrap();
    assert_eq!(started, "Starting event monitor, use ctrl-c to stop...\n");

    send(
        &server,
        "dev1",
        &[
            ("$.mid", "m1"),
            ("$.ct", "application/json"),
            ("$.ce", "utf-8"),
            ("room", "kitchen"),
        ],
        br#"{"t": 21}"#,
    )
    .await;
    // The event is on stdout long before the monitor's idle timeout ends it.
    let mut stdout = child.stdout.take().unwrap();
    let sent = Instant::now();
    let first = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(&mut stdout);
        let mut text = String::new();
        while !text.ends_with("}\n}\n") {
            assert!(reader.read_line(&mut text).unwrap() > 0, "stdout closed");
        }
        (text, stdout)
    });
    let (text, _stdout) = tokio::time::timeout(Duration::from_secs(2), first)
        .await
        .expect("the event was not flushed as it arrived")
        .unwrap();
    assert!(sent.elapsed() < Duration::from_secs(2));
    let [event] = events(text.as_bytes()).try_into().unwrap();
    assert_eq!(
        event,
        json!({"event": {
            "origin": "dev1", "module": "", "interface": "", "component": "",
            "properties": {
                "system": {"message_id": "m1", "content_type": "application/json",
                           "content_encoding": "utf-8"},
                "application": {"room": "kitchen"}
            },
            "payload": {"t": 21}
        }})
    );

    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    assert!(
        sent.elapsed() >= Duration::from_secs(3),
        "exited before its timeout"
    );
    // It says why it stopped.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(
        rest.contains("Stopping event monitor: no event for 3 s (--timeout"),
        "{rest}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_filters_and_consumer_groups() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let t0 = chrono::Utc::now().timestamp_millis() - 1;
    for (device, body) in [("sensor-1", "a"), ("pump-1", "b"), ("sensor-2", "c")] {
        send(&server, device, &[], body.as_bytes()).await;
    }
    let dir_path = dir.path().to_owned();
    let t0_text = t0.to_string();
    let out = tokio::task::spawn_blocking(move || {
        run(
            &dir_path,
            &[
                "monitor-events",
                "-d",
                "sensor-*",
                "--et",
                &t0_text,
                "--to",
                "1",
            ],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success());
    let payloads: Vec<Value> = events(&out.stdout)
        .iter()
        .map(|e| e["event"]["payload"].clone())
        .collect();
    let mut payloads: Vec<&str> = payloads.iter().map(|p| p.as_str().unwrap()).collect();
    payloads.sort_unstable();
    assert_eq!(payloads, ["a", "c"]);

    let d = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let created = ok_json(&run(
            &d,
            &[
                "consumer-group",
                "create",
                "--hub-name",
                "127.0.0.1",
                "-n",
                "g1",
            ],
        ));
        assert_eq!(created["name"], "g1");
        let list = ok_json(&run(&d, &["consumer-group", "list"]));
        assert_eq!(list, json!([{"name": "$Default"}, {"name": "g1"}]));
        let out = run(
            &d,
            &[
                "monitor-events",
                "--cg",
                "g1",
                "-d",
                "pump-1",
                "--et",
                "0",
                "--to",
                "1",
                "-o",
                "table",
            ],
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.ends_with("  pump-1  b\n") && text.lines().count() == 1,
            "{text}"
        );
        assert!(
            run(&d, &["consumer-group", "delete", "-n", "g1"])
                .status
                .success()
        );
        let gone = run(&d, &["consumer-group", "show", "-n", "g1"]);
        assert!(!gone.status.success());
        let bad = run(&d, &["consumer-group", "list", "--event-hub-name", "other"]);
        assert!(String::from_utf8_lossy(&bad.stderr).contains("built-in endpoint"));
    })
    .await
    .unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_streams_lines_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let identity = ironhub::identity::Identity::load(dir.path()).await.unwrap();
    let cs = identity.connection_string("service", false).unwrap();
    let client = HubClient::new(cs, std::slice::from_ref(&server.ca_certificate)).unwrap();

    let mut stream = client
        .event_stream("$Default", &[("from", "end".into())])
        .await
        .unwrap();
    send(&server, "dev1", &[], b"one").await;
    send(&server, "dev1", &[], b"two").await;
    for expected in ["one", "two"] {
        let line = tokio::time::timeout(Duration::from_secs(5), stream.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["body"], expected);
    }
    // Nothing more: waiting times out, and nothing is lost by the cancelled wait.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next_line())
            .await
            .is_err()
    );
    send(&server, "dev1", &[], b"three").await;
    let line = stream.next_line().await.unwrap().unwrap();
    assert!(line.contains("\"three\""));

    // A timeout on the server's side ends the stream: `None`.
    let mut short = client
        .event_stream(
            "$Default",
            &[("from", "end".into()), ("timeout", "0.2".into())],
        )
        .await
        .unwrap();
    assert_eq!(short.next_line().await.unwrap(), None);

    let e = client.event_stream("nope", &[]).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    server.shutdown().await;
}

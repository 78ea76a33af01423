//! One pump owner per routing endpoint across nodes: two hubs (nodes `a` and `b`) over one
//! store, one set of event streams and one file endpoint. Whichever node holds the endpoint's
//! lease delivers; every message is written once; when the owner stops, the other node takes
//! over at once, and when an owner disappears without giving its lease up, the other takes
//! over once the lease has run out.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteEventStreams, SqliteStore};
use ironhub_hub::routing::{Allowances, RoutingConfig};
use ironhub_hub::{AuthMethod, Backends, DeviceIdentity, Hub, Telemetry};
use ironhub_store::{ManualClock, Store};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long any step may take before the test fails.
const BOUND: Duration = Duration::from_secs(30);
const LEASE: Duration = Duration::from_secs(10);

struct Node {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn hub(
    store: &Arc<dyn Store>,
    dir: &Path,
    streams: &Arc<SqliteEventStreams>,
    node: &str,
) -> Hub {
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(SqliteEventLog::open(dir, 2).unwrap()),
        bus: Arc::new(LocalBus::with_node(node)),
    };
    Hub::open(backends, vec!["hub.example".into()])
        .await
        .unwrap()
        .with_event_streams(streams.clone())
        .with_routing_allowances(Allowances {
            small_file_batches: true,
        })
}

fn start(hub: &Hub, files: &Path, clock: &Arc<ManualClock>) -> Node {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(ironhub::endpoint_pumps::run(
        hub.clone(),
        files.to_path_buf(),
        clock.clone(),
        LEASE,
        stopped,
    ));
    Node { stop, task }
}

async fn send(hub: &Hub, n: u32) {
    let who = DeviceIdentity {
        device_id: format!("dev-{}", n % 3),
        module_id: None,
        generation_id: "g".into(),
        auth: AuthMethod::Sas,
        model_id: None,
    };
    let message = Telemetry {
        body: format!("{{\"n\": {n}}}").into_bytes(),
        ..Telemetry::default()
    };
    assert_eq!(hub.send_telemetry(&who, message).await.unwrap().len(), 1);
}

/// How many times each `n` was written to the files under `root`.
fn written(root: &Path) -> BTreeMap<u64, u32> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".ironhub-"))
            {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
                let record: serde_json::Value = serde_json::from_str(line).unwrap();
                let body = base64_body(&record);
                *out.entry(body["n"].as_u64().unwrap()).or_default() += 1;
            }
        }
    }
    out
}

/// The message body of a JSON-lines record (IoT Hub writes it as JSON when the content type
/// says so, else base64).
fn base64_body(record: &serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    match &record["Body"] {
        serde_json::Value::String(s) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
            serde_json::from_slice(&bytes).unwrap()
        }
        other => other.clone(),
    }
}

/// Waits (bounded) until messages `1..=n` are each in the files; with `once`, checks that
/// none is there twice.
async fn wait_written(root: &Path, n: u64, once: bool) {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let seen = written(root);
        if let Some((dup, count)) = seen.iter().find(|(_, c)| **c > 1)
            && once
        {
            panic!("message {dup} written {count} times");
        }
        if (1..=n).all(|i| seen.contains_key(&i)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {n} messages; written: {seen:?}"
        );
        // The pumps write in the background; look again shortly.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_delivers_each_endpoint_and_another_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let streams = Arc::new(SqliteEventStreams::open(&dir.path().join("streams")).unwrap());
    let files: PathBuf = dir.path().join("files");
    let a = hub(&store, dir.path(), &streams, "a").await;
    let b = hub(&store, dir.path(), &streams, "b").await;
    let doc: RoutingConfig = serde_json::from_value(json!({
        "endpoints": {"storageContainers": [{"name": "cold", "containerName": "cold",
            "encoding": "json", "batchFrequencyInSeconds": 1}]},
        "routes": [{"name": "all", "source": "DeviceMessages", "condition": "true",
            "endpointNames": ["cold"], "isEnabled": true}]
    }))
    .unwrap();
    a.set_routing_config(doc, None).await.unwrap();
    let root = files.join("cold");

    // Node a takes the lease first; b, started after, finds it held.
    let node_a = start(&a, &files, &clock);
    for n in 1..=5 {
        send(&a, n).await;
    }
    wait_written(&root, 5, true).await;
    let node_b = start(&b, &files, &clock);
    for n in 6..=10 {
        send(&b, n).await;
    }
    wait_written(&root, 10, true).await;

    // a stops and gives its lease up: b delivers from where a's checkpoint is.
    node_a.stop.send(true).unwrap();
    tokio::time::timeout(BOUND, node_a.task)
        .await
        .unwrap()
        .unwrap();
    for n in 11..=15 {
        send(&a, n).await;
    }
    wait_written(&root, 15, true).await;

    // a comes back while b holds the lease; b then disappears without giving it up (its
    // loop ends, its pumps are dropped). a takes over once the lease runs out by the clock.
    let node_a = start(&a, &files, &clock);
    node_b.task.abort();
    let _ = node_b.task.await;
    for n in 16..=20 {
        send(&b, n).await;
    }
    clock.advance(TimeDelta::from_std(LEASE).unwrap());
    // At least once: b's pump may have been closing its last chunk as a took over.
    wait_written(&root, 20, false).await;

    node_a.stop.send(true).unwrap();
    tokio::time::timeout(BOUND, node_a.task)
        .await
        .unwrap()
        .unwrap();
    drop(node_b.stop);
}

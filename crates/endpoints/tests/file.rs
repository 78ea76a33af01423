//! File endpoints on a temporary directory: chunks rolled by size (JSON lines) and by time
//! (Avro, deflate), read back with the exact bytes, IoT Hub's file names, and a crash that
//! leaves an open chunk behind.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use common::*;
use ironhub_endpoints::{
    Accepted, Allowances, EndpointKind, FileSink, Health, Pump, Settings, Sink, SinkContext,
    json_line, sink, validate_with,
};
use serde_json::json;

fn file_sink(root: &Path, settings: serde_json::Value) -> Arc<dyn Sink> {
    let settings = validate_with(EndpointKind::StorageContainers, &settings, Allowances::ANY)
        .expect("valid settings");
    sink(
        &settings,
        &SinkContext {
            hub_name: "myhub".into(),
            file_root: root.to_path_buf(),
        },
    )
    .expect("sink")
}

/// The finished files under `dir` (not the scratch directory), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with(".ironhub-") {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

fn json_bodies(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).expect("read");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert_eq!(v["SystemProperties"]["connectionDeviceId"], "dev-a");
            assert_eq!(v["Properties"]["level"], "high");
            base64::engine::general_purpose::STANDARD
                .decode(v["Body"].as_str().expect("base64 body"))
                .expect("base64")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_chunks_roll_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = open_log(&dir.path().join("stream"), 1);
    let dead = open_log(&dir.path().join("dead"), 1);
    let bodies: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i, 0, 0xff, b'"', b'\n']).collect();
    let events = append_all(
        &stream,
        bodies.iter().map(|b| message("dev-a", b, None)).collect(),
    )
    .await;
    // Room for two records (they have the same size) but not three.
    let record = json_line(&events[0]).len() as u64;
    let root = dir.path().join("files");
    let sink = file_sink(
        &root,
        json!({"name": "cold", "containerName": "telemetry", "encoding": "json",
               "maxChunkSizeInBytes": record * 2 + record / 2}),
    );
    let pump = Pump::start("cold", stream.clone(), sink, dead.clone(), fast(5));
    // Three chunks fill up; the seventh message waits in an open chunk.
    let status = wait_status(&pump, "6 deliveries", |s| s.delivered == 6).await;
    assert_eq!(status.health_status, Health::Healthy);
    assert_eq!(
        stream.checkpoint("$Default", 0).await.expect("checkpoint"),
        Some(6)
    );
    pump.stop().await;
    // Stopping closed the last chunk.
    assert_eq!(
        stream.checkpoint("$Default", 0).await.expect("checkpoint"),
        Some(7)
    );
    let container = root.join("telemetry");
    let written = files(&container);
    assert_eq!(written.len(), 4, "{written:?}");
    let mut read = Vec::new();
    for (i, path) in written.iter().enumerate() {
        let size = std::fs::metadata(path).expect("metadata").len();
        assert!(size <= record * 2 + record / 2, "{path:?} has {size} bytes");
        let chunk = json_bodies(path);
        assert_eq!(chunk.len(), if i < 3 { 2 } else { 1 });
        read.extend(chunk);
    }
    assert_eq!(read, bodies, "every body, exact, in order, once");
    // IoT Hub's default name: {iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}; chunks of the
    // same minute get -1, -2, … after the first.
    let relative = written[0]
        .strip_prefix(&container)
        .expect("under the container")
        .to_string_lossy()
        .into_owned();
    let parts: Vec<&str> = relative.split('/').collect();
    assert_eq!(parts.len(), 7, "{relative}");
    assert_eq!(&parts[..2], ["myhub", "0"]);
    assert_eq!(parts[2].len(), 4);
    assert!(parts[3..].iter().all(|p| p.len() == 2 || p.contains('-')));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_chunks_roll_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = open_log(&dir.path().join("stream"), 1);
    let dead = open_log(&dir.path().join("dead"), 1);
    let container = dir.path().join("absolute-container");
    let sink = file_sink(
        dir.path(),
        json!({"name": "avro", "containerName": container.to_string_lossy(),
               "encoding": "AvroDeflate", "batchFrequencyInSeconds": 1,
               "fileNameFormat": "{iothub}-{partition}/{YYYY}{MM}{DD}/{HH}{mm}.avro"}),
    );
    let pump = Pump::start("avro", stream.clone(), sink, dead, fast(5));
    let first = append_all(
        &stream,
        vec![
            message("dev-a", b"\x00binary\xff", None),
            message("dev-a", br#"{"t":21}"#, Some("application/json")),
        ],
    )
    .await;
    // Nothing fills the chunk: it is closed when its second has passed.
    wait_status(&pump, "2 deliveries", |s| s.delivered == 2).await;
    assert_eq!(files(&container).len(), 1);
    append_all(&stream, vec![message("dev-a", b"later", None)]).await;
    wait_status(&pump, "3 deliveries", |s| s.delivered == 3).await;
    pump.stop().await;

    let written = files(&container);
    assert_eq!(written.len(), 2, "{written:?}");
    let mut bodies = Vec::new();
    for path in &written {
        let name = path.to_string_lossy();
        assert!(
            name.contains("/myhub-0/") && name.contains(".avro"),
            "{name}"
        );
        let reader = apache_avro::Reader::new(std::fs::File::open(path).expect("open"))
            .expect("an Avro container file");
        assert_eq!(
            reader.writer_schema(),
            &*ironhub_endpoints::AVRO_SCHEMA,
            "IoT Hub's schema"
        );
        for value in reader {
            let apache_avro::types::Value::Record(fields) = value.expect("record") else {
                panic!("not a record");
            };
            let field = |n: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .expect("field")
            };
            let apache_avro::types::Value::Map(system) = field("SystemProperties") else {
                panic!("SystemProperties");
            };
            assert_eq!(
                system.get("connectionDeviceId"),
                Some(&apache_avro::types::Value::String("dev-a".into()))
            );
            let apache_avro::types::Value::String(time) = field("EnqueuedTimeUtc") else {
                panic!("EnqueuedTimeUtc");
            };
            assert!(time.ends_with('Z') && time.len() == 28, "{time}");
            let apache_avro::types::Value::Union(1, body) = field("Body") else {
                panic!("Body");
            };
            let apache_avro::types::Value::Bytes(body) = *body else {
                panic!("bytes");
            };
            bodies.push(body);
        }
    }
    assert_eq!(
        bodies,
        [
            first[0].event.body.clone(),
            first[1].event.body.clone(),
            b"later".to_vec()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_chunk_lost_in_a_crash_is_written_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = open_log(&dir.path().join("stream"), 1);
    let dead = open_log(&dir.path().join("dead"), 1);
    let events = append_all(
        &stream,
        vec![
            message("dev-a", b"one", None),
            message("dev-a", b"two", None),
        ],
    )
    .await;
    let settings = json!({"name": "cold", "containerName": "crash", "encoding": "json",
                          "batchFrequencyInSeconds": 1});
    let Settings::StorageContainer(storage) =
        validate_with(EndpointKind::StorageContainers, &settings, Allowances::ANY).expect("valid")
    else {
        panic!("kind");
    };
    // A sink takes the messages into its open chunk, and the process dies before closing it.
    let crashed = FileSink::new(&storage, "myhub", dir.path()).expect("sink");
    assert_eq!(
        crashed.deliver(&events).await.expect("buffered"),
        Accepted::Buffered(2)
    );
    let container = dir.path().join("crash");
    assert!(files(&container).is_empty(), "nothing under a final name");
    drop(crashed);
    // At restart, nothing was checkpointed: the pump writes them again, once.
    let pump = Pump::start(
        "cold",
        stream.clone(),
        file_sink(dir.path(), settings),
        dead,
        fast(5),
    );
    wait_status(&pump, "2 deliveries", |s| s.delivered == 2).await;
    pump.stop().await;
    let written = files(&container);
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(json_bodies(&written[0]), [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(
        std::fs::read_dir(container.join(".ironhub-cold"))
            .expect("scratch")
            .count(),
        0,
        "the crash's temporary file is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_cannot_be_written_dead_letters_then_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = open_log(&dir.path().join("stream"), 1);
    let dead = open_log(&dir.path().join("dead"), 1);
    let sink = file_sink(
        dir.path(),
        json!({"name": "cold", "containerName": "blocked", "encoding": "json",
               "batchFrequencyInSeconds": 1}),
    );
    // The scratch directory becomes a file: no chunk can be opened.
    let scratch = dir.path().join("blocked/.ironhub-cold");
    std::fs::remove_dir(&scratch).expect("remove");
    std::fs::write(&scratch, b"in the way").expect("block");
    let pump = Pump::start("cold", stream.clone(), sink, dead.clone(), fast(2));
    append_all(&stream, vec![message("dev-a", b"lost?", None)]).await;
    let status = wait_status(&pump, "1 dead letter", |s| s.dead_lettered == 1).await;
    assert_eq!(status.health_status, Health::Dead);
    assert_error(&status, "cannot create");
    let letters = read_all(&dead).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.body, b"lost?");
    assert_eq!(
        letters[0].event.system_properties[ironhub_endpoints::dead_letter::ATTEMPTS],
        "2"
    );
    // Once the directory is back, the next message is written and the endpoint is healthy.
    std::fs::remove_file(&scratch).expect("unblock");
    std::fs::create_dir(&scratch).expect("restore");
    append_all(&stream, vec![message("dev-a", b"kept", None)]).await;
    let status = wait_status(&pump, "1 delivery", |s| s.delivered == 1).await;
    assert_eq!(status.health_status, Health::Healthy);
    pump.stop().await;
    let written = files(&dir.path().join("blocked"));
    assert_eq!(written.len(), 1);
    assert_eq!(json_bodies(&written[0]), [b"kept".to_vec()]);
}

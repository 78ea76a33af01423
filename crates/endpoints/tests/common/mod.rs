//! What the integration tests share: addresses in the test network, an embedded event log on
//! a temporary directory, routed messages, a fast pump and waiting on a pump's status.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ironhub_embedded::SqliteEventLog;
use ironhub_endpoints::{EndpointStatus, Pump, PumpConfig};
use ironhub_store::{Event, EventLog, NewEvent};

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(20);

/// An address of the test network (`IRONHUB_TEST_NET`, default `127.0.0`), e.g. `127.0.13.1`.
pub fn host() -> String {
    let net = std::env::var("IRONHUB_TEST_NET").unwrap_or_else(|_| "127.0.0".into());
    format!("{net}.1")
}

/// An embedded event log in `dir` with `partitions` partitions.
pub fn open_log(dir: &Path, partitions: u32) -> Arc<dyn EventLog> {
    Arc::new(SqliteEventLog::open(dir, partitions).expect("open the event log"))
}

/// A routed message as the router appends it.
pub fn message(device: &str, body: &[u8], content_type: Option<&str>) -> NewEvent {
    let mut system = BTreeMap::from([
        ("iothub-connection-device-id".to_owned(), device.to_owned()),
        ("message-id".to_owned(), format!("m-{}", body.len())),
    ]);
    if let Some(t) = content_type {
        system.insert("content-type".into(), t.into());
        system.insert("content-encoding".into(), "utf-8".into());
    }
    NewEvent {
        device_id: device.to_owned(),
        module_id: None,
        system_properties: system,
        application_properties: BTreeMap::from([
            ("level".to_owned(), Some("high".to_owned())),
            ("bare".to_owned(), None),
        ]),
        body: body.to_vec(),
    }
}

/// Appends `messages` in order; returns them as stored.
pub async fn append_all(log: &Arc<dyn EventLog>, messages: Vec<NewEvent>) -> Vec<Event> {
    let mut out = Vec::new();
    for m in messages {
        out.push(log.append(m).await.expect("append"));
    }
    out
}

/// A pump configuration that retries within milliseconds.
pub fn fast(max_delivery_count: u32) -> PumpConfig {
    PumpConfig {
        max_delivery_count,
        batch_size: 4,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(200),
        idle_wait: Duration::from_millis(500),
        ..PumpConfig::default()
    }
}

/// Waits until the pump's status satisfies `ok`; fails after [`WAIT`] with the last status.
pub async fn wait_status(
    pump: &Pump,
    what: &str,
    ok: impl Fn(&EndpointStatus) -> bool,
) -> EndpointStatus {
    let mut rx = pump.watch();
    match tokio::time::timeout(WAIT, rx.wait_for(|s| ok(s))).await {
        Ok(Ok(status)) => status.clone(),
        _ => panic!("timed out waiting for {what}; status: {:?}", pump.status()),
    }
}

/// Every event of every partition of `log`.
pub async fn read_all(log: &Arc<dyn EventLog>) -> Vec<Event> {
    let mut out = Vec::new();
    for p in 0..log.partition_count() {
        out.extend(log.read(p, 0, 10_000).await.expect("read"));
    }
    out
}

/// Asserts that the status's last error mentions `text`.
pub fn assert_error(status: &EndpointStatus, text: &str) {
    let error = status.last_known_error.as_deref().unwrap_or_default();
    assert!(error.contains(text), "{text:?} not in {status:?}");
}

//! What the console's pages read from the store on a registry larger than a scan batch: the
//! overview's counts and the device list's pages never read the whole registry (counted
//! through the store's `TimedStore` wrapper, which reports every port call). A binary of its
//! own: the counters are process-wide.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};
use ironhub_store::{
    Authentication, ConnectionState, DeviceRecord, DeviceStatus, TimedStore, TwinRecord,
};
use tower::ServiceExt as _;

/// Devices: more than two scan batches (1000) of the hub's query.
const DEVICES: usize = 2500;

/// Calls to the twin port (`scan_twins`, `get_twin`, …: the pages counted here make scans only).
static TWIN_SCANS: AtomicUsize = AtomicUsize::new(0);

fn observe(port: &'static str, _: Duration) {
    if port == "twins" {
        TWIN_SCANS.fetch_add(1, Ordering::SeqCst);
    }
}

fn device(i: usize) -> (DeviceRecord, TwinRecord) {
    let device_id = format!("dev-{i:05}");
    let device = DeviceRecord {
        device_id: device_id.clone(),
        generation_id: i.to_string(),
        etag: String::new(),
        // A few disabled or connected devices, one in each scan batch of the registry.
        status: if i % 1000 == 7 {
            DeviceStatus::Disabled
        } else {
            DeviceStatus::Enabled
        },
        status_reason: None,
        status_updated_time: None,
        connection_state: if i % 1000 == 9 {
            ConnectionState::Connected
        } else {
            ConnectionState::Disconnected
        },
        connection_node: None,
        connection_state_updated_time: None,
        last_activity_time: None,
        cloud_to_device_message_count: 0,
        authentication: Authentication::default(),
        iot_edge: false,
        device_scope: None,
        parent_scopes: vec![],
    };
    let twin = TwinRecord {
        device_id,
        ..TwinRecord::default()
    };
    (device, twin)
}

async fn get(hub: &Hub, uri: &str, cookie: &str) -> (StatusCode, String) {
    let request = Request::get(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let response = ironhub_console::routes(hub.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Store scans of twins while `uri` is served, and its page.
async fn scans(hub: &Hub, uri: &str, cookie: &str) -> (usize, String) {
    let before = TWIN_SCANS.load(Ordering::SeqCst);
    let (status, page) = get(hub, uri, cookie).await;
    assert_eq!(status, StatusCode::OK, "{uri}");
    (TWIN_SCANS.load(Ordering::SeqCst) - before, page)
}

#[tokio::test]
async fn list_pages_and_counts_read_one_page_not_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open(dir.path()).unwrap());
    sqlite
        .load_fleet((0..DEVICES).map(device).collect())
        .await
        .unwrap();
    let backends = Backends {
        store: Arc::new(TimedStore::new(sqlite, observe)),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec!["myhub.example".into()])
        .await
        .unwrap();
    let key = hub
        .settings()
        .policy("iothubowner")
        .unwrap()
        .primary_key
        .clone();
    let form = format!(
        "policy=iothubowner&key={}",
        ironhub_auth::sas::url_encode(&key)
    );
    let request = Request::post("/console/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let response = ironhub_console::routes(hub.clone())
        .oneshot(request)
        .await
        .unwrap();
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    // The overview counts without reading a twin.
    let (n, page) = scans(&hub, "/console", &cookie).await;
    assert_eq!(n, 0);
    assert!(
        page.contains(&format!("id=\"total-devices\">{DEVICES}<")),
        "{page}"
    );

    // The first page and a later one: one scan each (the whole registry takes three).
    let (n, page) = scans(&hub, "/console/devices", &cookie).await;
    assert_eq!(n, 1);
    assert!(page.contains("/console/devices/dev-00049\"") && !page.contains("dev-00050"));
    let mut next = page;
    for _ in 0..10 {
        let link = next
            .split("id=\"next-page\" href=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&");
        let (n, page) = scans(&hub, &link, &cookie).await;
        assert_eq!(n, 1, "{link}");
        next = page;
    }
    assert!(next.contains("/console/devices/dev-00549\"") && !next.contains("dev-00550"));

    // The status and connection filters: the store narrows its scan to the devices in that
    // state, so the page of the few disabled (connected) devices is one scan, not three.
    for (filter, state) in [
        ("status%20%3D%20%27disabled%27", 7),
        ("connectionState%20%3D%20%27Connected%27", 9),
    ] {
        let (n, page) = scans(&hub, &format!("/console/devices?q={filter}"), &cookie).await;
        assert_eq!(n, 1, "{filter}");
        let listed: Vec<usize> = (0..DEVICES)
            .filter(|i| page.contains(&format!("/console/devices/dev-{i:05}\"")))
            .collect();
        assert_eq!(listed, [state, 1000 + state, 2000 + state], "{filter}");
    }
}

//! The file upload routes through the router: not configured, a device's upload start and
//! completion, and the notification that follows (storage is a stand-in that reports the blob).
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use ironhub_auth::storage::StorageAccount;
use ironhub_auth::{sas, unix_now};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_http::ConnectionInfo;
use ironhub_hub::file_upload::{BlobProperties, BlobStorage, FileUpload, FileUploadSettings};
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{Backends, Hub};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const HOST: &str = "myhub.example";
const STORAGE: &str =
    "DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=a2V5LW9mLWFjY291bnQtb25l";

/// Storage as a test stand-in: the blob exists (with this size) or not, and the URLs asked.
#[derive(Debug, Default)]
struct FakeStorage {
    size: Option<u64>,
    asked: Mutex<Vec<String>>,
}

#[async_trait]
impl BlobStorage for FakeStorage {
    async fn properties(&self, url: &str) -> Result<Option<BlobProperties>, String> {
        self.asked.lock().unwrap().push(url.to_owned());
        Ok(self.size.map(|size| BlobProperties {
            size,
            last_modified: None,
        }))
    }
}

struct Setup {
    hub: Hub,
    owner: String,
    device: String,
    _dir: tempfile::TempDir,
}

async fn setup(storage: Option<Arc<FakeStorage>>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let mut hub = Hub::open(backends, vec![HOST.into()]).await.unwrap();
    if let Some(storage) = storage {
        let mut settings =
            FileUploadSettings::new(StorageAccount::parse(STORAGE).unwrap(), "uploads".into());
        settings.notifications = true;
        hub = hub.with_file_upload(FileUpload { settings, storage });
    }
    let owner = hub.settings().policy("iothubowner").unwrap().clone();
    let owner = sas::generate(
        HOST,
        &owner.primary_key,
        unix_now() + 3600,
        Some("iothubowner"),
    )
    .unwrap();
    let record = hub
        .put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    let key = record.authentication.symmetric_key.primary_key.unwrap();
    let device =
        sas::generate(&format!("{HOST}/devices/d1"), &key, unix_now() + 3600, None).unwrap();
    Setup {
        hub,
        owner,
        device,
        _dir: dir,
    }
}

async fn call(
    hub: &Hub,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", token)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    request.extensions_mut().insert(ConnectionInfo {
        peer: "127.0.0.1:50000".parse().unwrap(),
        client_certificates: Arc::new(Vec::new()),
        private_endpoint: false,
    });
    let response = ironhub_http::hub_router(hub.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let code = response
        .headers()
        .get("iothub-errorcode")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, code, body)
}

#[tokio::test]
async fn without_a_storage_account_file_upload_is_refused() {
    let s = setup(None).await;
    let (status, code, _) = call(
        &s.hub,
        "POST",
        "/devices/d1/files",
        &s.device,
        Some(json!({"blobName": "a"})),
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (
            StatusCode::BAD_REQUEST,
            Some("DefaultStorageEndpointNotConfigured")
        )
    );
    let (status, code, _) = call(
        &s.hub,
        "GET",
        "/messages/serviceBound/filenotifications",
        &s.owner,
        None,
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (
            StatusCode::BAD_REQUEST,
            Some("DefaultStorageEndpointNotConfigured")
        )
    );
}

#[tokio::test]
async fn an_upload_completes_into_a_notification() {
    let storage = Arc::new(FakeStorage {
        size: Some(42),
        ..FakeStorage::default()
    });
    let s = setup(Some(storage.clone())).await;
    let (status, _, info) = call(
        &s.hub,
        "POST",
        "/devices/d1/files",
        &s.device,
        Some(json!({"blobName": "logs/a.txt"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["hostName"], "acct1.blob.core.windows.net");
    assert_eq!(info["containerName"], "uploads");
    assert_eq!(info["blobName"], "d1/logs/a.txt");
    assert!(info["sasToken"].as_str().unwrap().contains("sr=b"));
    // The device's token does not read the feed.
    let (status, _, _) = call(
        &s.hub,
        "GET",
        "/messages/serviceBound/filenotifications",
        &s.device,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let done = json!({"correlationId": info["correlationId"], "isSuccess": true, "statusCode": 201, "statusDescription": "ok"});
    let (status, _, _) = call(
        &s.hub,
        "POST",
        "/devices/d1/files/notifications",
        &s.device,
        Some(done),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let asked = storage.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0].starts_with("https://acct1.blob.core.windows.net/uploads/d1/logs/a.txt?"),
        "{}",
        asked[0]
    );
    assert!(asked[0].contains("sp=r&"), "{}", asked[0]);

    let (status, _, n) = call(
        &s.hub,
        "GET",
        "/messages/serviceBound/filenotifications",
        &s.owner,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(n["deviceId"], "d1");
    assert_eq!(n["blobName"], "d1/logs/a.txt");
    assert_eq!(
        n["blobUri"],
        "https://acct1.blob.core.windows.net/uploads/d1/logs/a.txt"
    );
    assert_eq!(n["blobSizeInBytes"], 42);
}

#[tokio::test]
async fn a_success_for_a_blob_that_is_not_there_is_refused() {
    let s = setup(Some(Arc::new(FakeStorage::default()))).await;
    let (_, _, info) = call(
        &s.hub,
        "POST",
        "/devices/d1/files",
        &s.device,
        Some(json!({"blobName": "a"})),
    )
    .await;
    let done = json!({"correlationId": info["correlationId"], "isSuccess": true});
    let (status, code, _) = call(
        &s.hub,
        "POST",
        "/devices/d1/files/notifications",
        &s.device,
        Some(done),
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (
            StatusCode::BAD_REQUEST,
            Some("InvalidStorageEndpointOrBlob")
        )
    );
    let (status, _, _) = call(
        &s.hub,
        "GET",
        "/messages/serviceBound/filenotifications",
        &s.owner,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

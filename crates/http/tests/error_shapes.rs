//! Client mistakes that axum's extractors catch (a path that does not decode, a query
//! parameter given twice, a WebSocket route called without an upgrade) are answered in IoT
//! Hub's error shape like every other: a status, `iothub-errorcode`, and the Azure JSON body.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use ironhub_auth::{sas, unix_now};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_http::ConnectionInfo;
use ironhub_hub::{Backends, Hub};
use tower::ServiceExt as _;

const HOST: &str = "myhub.example";

async fn hub() -> (Hub, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec![HOST.into()]).await.unwrap();
    let owner = hub.settings().policy("iothubowner").unwrap().clone();
    let token = sas::generate(
        HOST,
        &owner.primary_key,
        unix_now() + 3600,
        Some("iothubowner"),
    )
    .unwrap();
    (hub, token, dir)
}

/// Sends a request (with a connection's info, as the TLS listener adds it) and checks that
/// the answer is an Azure-shaped `status` with `ArgumentInvalid`.
async fn assert_azure_error(hub: &Hub, method: &str, uri: &str, token: &str, status: StatusCode) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", token)
        .body(Body::empty())
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
    assert_eq!(response.status(), status, "{method} {uri}");
    assert_eq!(
        response.headers()["iothub-errorcode"],
        "ArgumentInvalid",
        "{method} {uri}"
    );
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{method} {uri}"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{method} {uri}: not JSON ({e}): {body:?}"));
    let message = body["Message"].as_str().unwrap();
    assert!(
        message.starts_with("ErrorCode:ArgumentInvalid;"),
        "{method} {uri}: {body}"
    );
    assert_eq!(body["errorCode"], 400_004, "{method} {uri}");
}

#[tokio::test]
async fn paths_that_do_not_decode_are_azure_400s() {
    let (hub, token, _dir) = hub().await;
    for (method, uri) in [
        // C2D: service send, device receive/complete/abandon, feedback, purge.
        (
            "POST",
            "/devices/%FF/messages/deviceBound?api-version=2021-04-12",
        ),
        (
            "GET",
            "/devices/%FF/messages/devicebound?api-version=2021-04-12",
        ),
        (
            "DELETE",
            "/devices/d1/messages/deviceBound/%FF?api-version=2021-04-12",
        ),
        (
            "POST",
            "/devices/%C3/messages/deviceBound/t/abandon?api-version=2021-04-12",
        ),
        (
            "DELETE",
            "/messages/serviceBound/feedback/%FF?api-version=2021-04-12",
        ),
        (
            "POST",
            "/messages/serviceBound/feedback/%FF/abandon?api-version=2021-04-12",
        ),
        ("DELETE", "/devices/%FF/commands?api-version=2021-04-12"),
        (
            "POST",
            "/devices/%FF/messages/events?api-version=2021-04-12",
        ),
        // Certificates and the event reader.
        ("GET", "/certificates/%FF?api-version=2021-04-12"),
        ("POST", "/certificates/%FF/verify?api-version=2021-04-12"),
        ("GET", "/events/consumergroups/%FF?api-version=2021-04-12"),
        ("PUT", "/events/consumergroups/g/partitions/x/checkpoint"),
    ] {
        assert_azure_error(&hub, method, uri, &token, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn a_query_parameter_given_twice_is_an_azure_400() {
    let (hub, token, _dir) = hub().await;
    for uri in [
        "/devices?api-version=2021-04-12&top=1&top=2",
        "/events/consumergroups/$Default/stream?from=start&from=end",
    ] {
        assert_azure_error(&hub, "GET", uri, &token, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn the_websocket_route_without_an_upgrade_is_an_azure_400() {
    let (hub, token, _dir) = hub().await;
    assert_azure_error(
        &hub,
        "GET",
        "/$iothub/websocket",
        &token,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

//! Issue 15's slow-body abuse, at the router: every route checks the request's credentials
//! before it reads a byte of its body, so a client that cannot authenticate is refused at once
//! however large a body it declares and however slowly it sends it (a 401, not the 413 its
//! declared size would get); a body declared larger than the route's limit is refused at once;
//! a body that does not arrive is answered 408 when the body read timeout runs out (here the
//! default, on a paused clock); and a body sent whole after an early answer is read, so the
//! client gets the answer rather than a reset connection.
#![allow(clippy::unwrap_used)]

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use ironhub_auth::{sas, unix_now};
use ironhub_dps::Dps;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_http::ConnectionInfo;
use ironhub_hub::{Backends, Hub};
use tower::ServiceExt as _;

const HOST: &str = "myhub.example";
/// Far more than any route accepts.
const HUGE: u64 = 100 * 1024 * 1024;
/// Longer than a refusal "at once" takes, far shorter than the body read timeout.
const AT_ONCE: Duration = Duration::from_secs(5);

/// A request body that never sends a byte and never ends: a client gone silent.
struct Silent;

impl http_body::Body for Silent {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Pending
    }
}

struct Server {
    app: Router,
    hub: Hub,
    owner_token: String,
    scope: String,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec![HOST.into()]).await.unwrap();
    let dps = Dps::open(store, vec![HOST.into()], None).await.unwrap();
    let owner = hub.settings().policy("iothubowner").unwrap().clone();
    let owner_token = sas::generate(
        HOST,
        &owner.primary_key,
        unix_now() + 3600,
        Some("iothubowner"),
    )
    .unwrap();
    Server {
        app: ironhub_http::router(hub.clone(), Some(dps.clone())),
        hub,
        owner_token,
        scope: dps.id_scope().to_owned(),
        _dir: dir,
    }
}

/// Sends `method uri` declaring a `declared`-byte body that never comes.
async fn send_silent(
    app: &Router,
    method: &str,
    uri: &str,
    authorization: Option<&str>,
    declared: u64,
) -> Response<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-length", declared)
        .header("content-type", "application/json");
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let mut request = request.body(Body::new(Silent)).unwrap();
    request.extensions_mut().insert(ConnectionInfo {
        peer: "127.0.0.1:50000".parse().unwrap(),
        client_certificates: Arc::new(Vec::new()),
        private_endpoint: false,
    });
    app.clone().oneshot(request).await.unwrap()
}

/// `send_silent`, answered within [`AT_ONCE`].
async fn refused_at_once(
    app: &Router,
    method: &str,
    uri: &str,
    authorization: Option<&str>,
    declared: u64,
) -> (StatusCode, HeaderMap, serde_json::Value) {
    let response = tokio::time::timeout(
        AT_ONCE,
        send_silent(app, method, uri, authorization, declared),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {uri}: not answered at once"));
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn requests_without_valid_credentials_are_refused_before_their_body_on_every_service() {
    let s = server().await;
    let scope = &s.scope;
    let bad = "SharedAccessSignature sr=myhub.example&sig=AAAA&se=9999999999&skn=iothubowner";
    let routes = [
        ("PUT", "/devices/d1?api-version=2021-04-12".to_owned()),
        ("POST", "/devices?api-version=2021-04-12".to_owned()),
        ("PATCH", "/twins/d1?api-version=2021-04-12".to_owned()),
        (
            "POST",
            "/twins/d1/methods?api-version=2021-04-12".to_owned(),
        ),
        ("POST", "/devices/d1/messages/deviceBound".to_owned()),
        ("PUT", "/certificates/ca1".to_owned()),
        ("POST", "/digitaltwins/d1/commands/reboot".to_owned()),
        (
            "PUT",
            "/events/consumergroups/g/partitions/0/checkpoint".to_owned(),
        ),
        // The device API: no such device, no token.
        ("POST", "/devices/d1/messages/events".to_owned()),
        ("POST", "/devices/d1/files".to_owned()),
        // DPS's service API.
        ("PUT", "/enrollments/e1?api-version=2021-10-01".to_owned()),
        (
            "POST",
            "/enrollmentGroups/query?api-version=2021-10-01".to_owned(),
        ),
        ("PUT", "/dps/linkedHubs/h1".to_owned()),
        ("PUT", "/dps/certificates/ca1".to_owned()),
        // DPS's device API with a token that does not verify.
        (
            "PUT",
            format!("/{scope}/registrations/r1/register?api-version=2021-06-01"),
        ),
        ("POST", format!("/{scope}/registrations/r1")),
    ];
    for (method, uri) in &routes {
        for authorization in [None, Some(bad)] {
            if uri.contains("/registrations/r1") && authorization.is_none() {
                continue; // without any credentials the body may be a TPM's (below)
            }
            let (status, headers, body) =
                refused_at_once(&s.app, method, uri, authorization, HUGE).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
            assert_eq!(body["errorCode"], 401_002, "{method} {uri}");
            // Each service's own shape: IoT Hub's header and classic message, or DPS's header.
            if let Some(name) = headers.get("iothub-errorcode") {
                assert_eq!(name, "IotHubUnauthorizedAccess", "{method} {uri}");
                let message = body["Message"].as_str().unwrap_or_default();
                assert!(
                    message.starts_with("ErrorCode:IotHubUnauthorizedAccess;"),
                    "{method} {uri}: {body}"
                );
            } else {
                assert_eq!(headers["x-ms-error-code"], "401002", "{method} {uri}");
                assert!(body.get("Message").is_none(), "{method} {uri}: {body}");
            }
        }
    }
    // Nothing was written.
    assert!(s.hub.get_device("d1").await.is_err());
}

#[tokio::test]
async fn a_body_declared_over_the_routes_limit_is_refused_at_once() {
    let s = server().await;
    let owner = Some(s.owner_token.as_str());
    let (status, _, body) = refused_at_once(&s.app, "PUT", "/devices/d1", owner, HUGE).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["errorCode"], 413_001);
    // A DPS register request without credentials (whose body may be a TPM's) over DPS's limit.
    let uri = format!("/{}/registrations/r1/register", s.scope);
    let (status, _, body) = refused_at_once(&s.app, "PUT", &uri, None, HUGE).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["errorCode"], 413_001);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_does_not_arrive_is_answered_408_after_the_body_read_timeout() {
    let s = server().await;
    let owner = Some(s.owner_token.as_str());
    let started = tokio::time::Instant::now();
    let response = send_silent(&s.app, "PUT", "/devices/d1", owner, 100).await;
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(response.headers()["iothub-errorcode"], "RequestTimeout");
    assert!(started.elapsed() >= ironhub_http::ReadTimeouts::DEFAULT_BODY);
    assert!(s.hub.get_device("d1").await.is_err(), "nothing was written");

    // DPS's device API: a request without credentials is read (it may be a TPM's), in time.
    let uri = format!("/{}/registrations/r1/register", s.scope);
    let response = send_silent(&s.app, "PUT", &uri, None, 100).await;
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errorCode"], 408_000, "{body}");
}

/// A request answered before its body was read (over the route's limit, declared so) still has
/// its body read to the end, so the answer's end comes after the body and the connection can
/// carry the next request; the client sees the 413.
#[tokio::test]
async fn an_early_answer_reads_the_rest_of_a_body_that_comes() {
    let s = server().await;
    let body = vec![b' '; ironhub_http::MAX_BODY_BYTES + 10];
    let mut request = Request::builder()
        .method("PUT")
        .uri("/devices/d1")
        .header("content-length", body.len())
        .header("authorization", &s.owner_token)
        .body(Body::from(body))
        .unwrap();
    request.extensions_mut().insert(ConnectionInfo {
        peer: "127.0.0.1:50000".parse().unwrap(),
        client_certificates: Arc::new(Vec::new()),
        private_endpoint: false,
    });
    let response = tokio::time::timeout(AT_ONCE, s.app.clone().oneshot(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The answer is sent chunked: its end waits for the request's body.
    assert!(response.headers().get("content-length").is_none());
    let body = tokio::time::timeout(AT_ONCE, response.into_body().collect())
        .await
        .expect("the body that came was read and the answer ended")
        .unwrap()
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errorCode"], 413_001);
}

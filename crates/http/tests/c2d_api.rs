//! Cloud-to-device messaging and the HTTPS device API through the router, as clients call
//! them: the service sends, purges and reads feedback; the device receives, completes,
//! rejects and abandons, and sends telemetry.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use ironhub_auth::{sas, unix_now};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{Backends, Hub};
use tower::ServiceExt as _;

const HOST: &str = "myhub.example";

struct Fixture {
    hub: Hub,
    service: String,
    device: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec![HOST.into()]).await.unwrap();
    let d = hub
        .put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    let key = d.authentication.symmetric_key.primary_key.unwrap();
    let owner = hub.settings().policy("iothubowner").unwrap().clone();
    let service = sas::generate(
        HOST,
        &owner.primary_key,
        unix_now() + 3600,
        Some("iothubowner"),
    )
    .unwrap();
    let device =
        sas::generate(&format!("{HOST}/devices/d1"), &key, unix_now() + 3600, None).unwrap();
    Fixture {
        hub,
        service,
        device,
        _dir: dir,
    }
}

impl Fixture {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", token);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(Body::from(body.to_vec())).unwrap();
        ironhub_http::hub_router(self.hub.clone())
            .oneshot(request)
            .await
            .unwrap()
    }
}

async fn body_of(response: Response) -> Vec<u8> {
    axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec()
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

const V: &str = "api-version=2021-04-12";

#[tokio::test]
async fn a_message_sent_by_the_service_is_received_and_completed_by_the_device() {
    let f = fixture().await;
    let sent = f
        .call(
            "POST",
            &format!("/devices/d1/messages/deviceBound?{V}"),
            &f.service,
            &[
                ("iothub-messageid", "m1"),
                ("iothub-correlationid", "c1"),
                ("iothub-ack", "full"),
                ("content-type", "application/json"),
                ("iothub-app-topic", "cmnd/X/POWER"),
                ("iothub-app-level", "3"),
            ],
            br#"{"on":1}"#,
        )
        .await;
    assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&sent, "iothub-messageid"), "m1");

    // The device token cannot send; an unknown device is a 404.
    let refused = f
        .call(
            "POST",
            &format!("/devices/d1/messages/deviceBound?{V}"),
            &f.device,
            &[],
            b"x",
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let missing = f
        .call(
            "POST",
            &format!("/devices/ghost/messages/deviceBound?{V}"),
            &f.service,
            &[],
            b"x",
        )
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&missing, "iothub-errorcode"), "DeviceNotFound");

    // The registry counts it.
    let device = f
        .call("GET", &format!("/devices/d1?{V}"), &f.service, &[], b"")
        .await;
    let json: serde_json::Value = serde_json::from_slice(&body_of(device).await).unwrap();
    assert_eq!(json["cloudToDeviceMessageCount"], 1);

    // The Node SDK's path is lower case.
    let got = f
        .call(
            "GET",
            &format!("/devices/d1/messages/devicebound?{V}"),
            &f.device,
            &[],
            b"",
        )
        .await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(header(&got, "iothub-messageid"), "m1");
    assert_eq!(header(&got, "iothub-correlationid"), "c1");
    assert_eq!(
        header(&got, "iothub-to"),
        "/devices/d1/messages/deviceBound"
    );
    assert_eq!(header(&got, "iothub-deliverycount"), "1");
    assert_eq!(header(&got, "content-type"), "application/json");
    assert_eq!(header(&got, "iothub-app-topic"), "cmnd/X/POWER");
    assert_eq!(header(&got, "iothub-app-level"), "3");
    let etag = header(&got, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    let token = etag.trim_matches('"').to_owned();
    assert_eq!(body_of(got).await, br#"{"on":1}"#);

    // Nothing else waits (the one message is locked).
    let empty = f
        .call(
            "GET",
            &format!("/devices/d1/messages/deviceBound?{V}"),
            &f.device,
            &[],
            b"",
        )
        .await;
    assert_eq!(empty.status(), StatusCode::NO_CONTENT);

    let done = f
        .call(
            "DELETE",
            &format!("/devices/d1/messages/deviceBound/{token}?{V}"),
            &f.device,
            &[("if-match", &token)],
            b"",
        )
        .await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    let twice = f
        .call(
            "DELETE",
            &format!("/devices/d1/messages/deviceBound/{token}?{V}"),
            &f.device,
            &[],
            b"",
        )
        .await;
    assert_eq!(twice.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(header(&twice, "iothub-errorcode"), "DeviceMessageLockLost");

    // Feedback: Success for m1, as IoT Hub shapes it, locked until completed.
    let fb = f
        .call(
            "GET",
            &format!("/messages/serviceBound/feedback?{V}"),
            &f.service,
            &[],
            b"",
        )
        .await;
    assert_eq!(fb.status(), StatusCode::OK);
    let lock = header(&fb, "iothub-locktoken").to_owned();
    assert_eq!(header(&fb, "etag"), format!("\"{lock}\""));
    let records: serde_json::Value = serde_json::from_slice(&body_of(fb).await).unwrap();
    assert_eq!(records[0]["originalMessageId"], "m1");
    assert_eq!(records[0]["statusCode"], "Success");
    assert_eq!(records[0]["deviceId"], "d1");
    for field in ["description", "deviceGenerationId", "enqueuedTimeUtc"] {
        assert!(records[0][field].is_string(), "{field}");
    }
    let none = f
        .call(
            "GET",
            &format!("/messages/serviceBound/feedback?{V}"),
            &f.service,
            &[],
            b"",
        )
        .await;
    assert_eq!(none.status(), StatusCode::NO_CONTENT);
    let abandoned = f
        .call(
            "POST",
            &format!("/messages/serviceBound/feedback/{lock}/abandon?{V}"),
            &f.service,
            &[],
            b"",
        )
        .await;
    assert_eq!(abandoned.status(), StatusCode::NO_CONTENT);
    let fb = f
        .call(
            "GET",
            &format!("/messages/serviceBound/feedback?{V}"),
            &f.service,
            &[],
            b"",
        )
        .await;
    let lock = header(&fb, "iothub-locktoken").to_owned();
    let completed = f
        .call(
            "DELETE",
            &format!("/messages/serviceBound/feedback/{lock}?{V}"),
            &f.service,
            &[],
            b"",
        )
        .await;
    assert_eq!(completed.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_device_rejects_and_abandons_and_the_service_purges() {
    let f = fixture().await;
    for i in 0..3 {
        let r = f
            .call(
                "POST",
                &format!("/devices/d1/messages/deviceBound?{V}"),
                &f.service,
                &[("iothub-ack", "negative")],
                format!("{i}").as_bytes(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let got = f
        .call(
            "GET",
            &format!("/devices/d1/messages/deviceBound?{V}"),
            &f.device,
            &[],
            b"",
        )
        .await;
    let token = header(&got, "etag").trim_matches('"').to_owned();
    let rejected = f
        .call(
            "DELETE",
            &format!("/devices/d1/messages/devicebound/{token}?{V}&reject"),
            &f.device,
            &[],
            b"",
        )
        .await;
    assert_eq!(rejected.status(), StatusCode::NO_CONTENT);

    let got = f
        .call(
            "GET",
            &format!("/devices/d1/messages/deviceBound?{V}"),
            &f.device,
            &[],
            b"",
        )
        .await;
    let token = header(&got, "etag").trim_matches('"').to_owned();
    assert_eq!(body_of(got).await, b"1");
    let abandoned = f
        .call(
            "POST",
            &format!("/devices/d1/messages/deviceBound/{token}/abandon?{V}"),
            &f.device,
            &[],
            b"",
        )
        .await;
    assert_eq!(abandoned.status(), StatusCode::NO_CONTENT);
    let again = f
        .call(
            "GET",
            &format!("/devices/d1/messages/deviceBound?{V}"),
            &f.device,
            &[],
            b"",
        )
        .await;
    assert_eq!(header(&again, "iothub-deliverycount"), "2");
    assert_eq!(body_of(again).await, b"1");

    let purged = f
        .call(
            "DELETE",
            &format!("/devices/d1/commands?{V}"),
            &f.service,
            &[],
            b"",
        )
        .await;
    assert_eq!(purged.status(), StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&body_of(purged).await).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"totalMessagesPurged": 2, "deviceId": "d1"})
    );

    let fb = f
        .call(
            "GET",
            &format!("/messages/serviceBound/feedback?{V}"),
            &f.service,
            &[],
            b"",
        )
        .await;
    let records: serde_json::Value = serde_json::from_slice(&body_of(fb).await).unwrap();
    let statuses: Vec<_> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["statusCode"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["Rejected", "Purged", "Purged"]);

    let big = vec![b'x'; 64 * 1024 + 1];
    let too_big = f
        .call(
            "POST",
            &format!("/devices/d1/messages/deviceBound?{V}"),
            &f.service,
            &[],
            &big,
        )
        .await;
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bad_ack = f
        .call(
            "POST",
            &format!("/devices/d1/messages/deviceBound?{V}"),
            &f.service,
            &[("iothub-ack", "sometimes")],
            b"x",
        )
        .await;
    assert_eq!(bad_ack.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_device_sends_telemetry_over_https() {
    let f = fixture().await;
    let sent = f
        .call(
            "POST",
            &format!("/devices/d1/messages/events?{V}"),
            &f.device,
            &[
                ("iothub-messageid", "t1"),
                ("content-type", "application/json"),
                ("iothub-app-temp", "21"),
            ],
            br#"{"t":21}"#,
        )
        .await;
    assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    let batch = f
        .call(
            "POST",
            &format!("/devices/d1/messages/events?{V}"),
            &f.device,
            &[("content-type", "application/vnd.microsoft.iothub.json")],
            br#"[{"body":"YQ==","properties":{"iothub-app-k":"v"}},{"body":"Yg=="}]"#,
        )
        .await;
    assert_eq!(batch.status(), StatusCode::NO_CONTENT);
    // A policy with DeviceConnect (iothubowner) may act for the device; a bad token may not.
    let wrong = f
        .call(
            "POST",
            &format!("/devices/d1/messages/events?{V}"),
            "SharedAccessSignature sr=myhub.example%2Fdevices%2Fd1&sig=bm9wZQ%3D%3D&se=99999999999",
            &[],
            b"x",
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let log = f.hub.events();
    let partition = ironhub_store::eventlog::partition_for("d1", log.partition_count());
    let events = log.read(partition, 0, 10).await.unwrap();
    assert_eq!(events.len(), 3);
    let first = &events[0].event;
    assert_eq!(first.body, br#"{"t":21}"#);
    assert_eq!(first.system_properties["message-id"], "t1");
    assert_eq!(first.system_properties["content-type"], "application/json");
    assert_eq!(first.application_properties["temp"].as_deref(), Some("21"));
    assert_eq!(events[1].event.body, b"a");
    assert_eq!(
        events[1].event.application_properties["k"].as_deref(),
        Some("v")
    );
    assert_eq!(events[2].event.body, b"b");
}

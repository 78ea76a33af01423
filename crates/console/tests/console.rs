//! The console's routes in process: sign-in, the session cookie, CSRF and the policy's rights.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};
use tower::ServiceExt as _;

mod support;
use support::{field, request, text};

const HOST: &str = "myhub.example";

async fn hub() -> (Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    // Failed sign-ins counted in the store, as `serve` has them.
    let hub = Hub::open(backends, vec![HOST.into()])
        .await
        .unwrap()
        .with_rate_windows(store);
    (hub, dir)
}

async fn call(hub: &Hub, method: &str, uri: &str, cookie: Option<&str>, form: &str) -> Response {
    ironhub_console::routes(hub.clone())
        .oneshot(request(method, uri, cookie, form))
        .await
        .unwrap()
}

/// Signs in as `policy` and returns the cookie and a page's CSRF token.
async fn sign_in(hub: &Hub, policy: &str) -> (String, String) {
    let key = hub.settings().policy(policy).unwrap().primary_key.clone();
    let form = format!(
        "policy={policy}&key={}",
        ironhub_auth::sas::url_encode(&key)
    );
    let response = call(hub, "POST", "/console/signin", None, &form).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(set.contains("Secure; HttpOnly; SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = text(call(hub, "GET", "/console", Some(&cookie), "").await).await;
    (cookie, field(&page, "csrf"))
}

#[tokio::test]
async fn pages_need_a_session_and_a_wrong_key_gets_none() {
    let (hub, _dir) = hub().await;
    for uri in ["/", "/console", "/console/devices", "/console/devices/d1"] {
        let response = call(&hub, "GET", uri, None, "").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{uri}");
        let to = response.headers()[header::LOCATION].to_str().unwrap();
        assert!(to == "/console/signin" || to == "/console", "{uri} -> {to}");
    }
    let response = call(
        &hub,
        "POST",
        "/console/signin",
        None,
        "policy=iothubowner&key=AAAA",
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get(header::SET_COOKIE).is_none());
    let forged = call(
        &hub,
        "GET",
        "/console",
        Some("ironhub-console=aW90aHVib3duZXI.AAAA"),
        "",
    )
    .await;
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn owner_creates_devices_only_with_the_csrf_token_and_a_valid_id() {
    let (hub, _dir) = hub().await;
    let (cookie, csrf) = sign_in(&hub, "iothubowner").await;
    let page = call(&hub, "GET", "/console", Some(&cookie), "").await;
    assert_eq!(page.headers()[header::X_FRAME_OPTIONS], "DENY");
    assert!(
        page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(text(page).await.contains(HOST));

    let no_token = call(
        &hub,
        "POST",
        "/console/devices",
        Some(&cookie),
        "device_id=d1",
    )
    .await;
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    let bad_id = call(
        &hub,
        "POST",
        "/console/devices",
        Some(&cookie),
        &format!("csrf={csrf}&device_id=bad+id%21"),
    )
    .await;
    assert_eq!(bad_id.status(), StatusCode::BAD_REQUEST);
    assert!(text(bad_id).await.contains("device_id-error"));
    assert!(hub.get_device("d1").await.is_err());
    assert!(hub.get_device("bad id!").await.is_err());

    let created = call(
        &hub,
        "POST",
        "/console/devices",
        Some(&cookie),
        &format!("csrf={csrf}&device_id=d1"),
    )
    .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert_eq!(created.headers()[header::LOCATION], "/console/devices/d1");
    let device = text(call(&hub, "GET", "/console/devices/d1", Some(&cookie), "").await).await;
    assert!(device.contains("twin-form") && device.contains("delete-form"));
    // Keys are masked until asked.
    let key = hub
        .get_device("d1")
        .await
        .unwrap()
        .authentication
        .symmetric_key
        .primary_key
        .unwrap();
    assert!(!device.contains(&key));
    let shown = text(
        call(
            &hub,
            "GET",
            "/console/devices/d1?keys=show",
            Some(&cookie),
            "",
        )
        .await,
    )
    .await;
    assert!(shown.contains(&key));

    // Disable with the page's ETag; a stale one is a conflict and changes nothing.
    let etag = field(&device, "etag");
    let set_status = |status: &'static str| {
        let form = format!(
            "csrf={csrf}&status={status}&etag={}",
            ironhub_auth::sas::url_encode(&etag)
        );
        let hub = hub.clone();
        let cookie = cookie.clone();
        async move {
            call(
                &hub,
                "POST",
                "/console/devices/d1/status",
                Some(&cookie),
                &form,
            )
            .await
        }
    };
    let disabled = set_status("disabled").await;
    assert_eq!(disabled.status(), StatusCode::OK);
    assert!(text(disabled).await.contains("now disabled"));
    let stale = set_status("enabled").await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        hub.get_device("d1").await.unwrap().status,
        ironhub_store::DeviceStatus::Disabled
    );
}

#[tokio::test]
async fn a_read_only_policy_sees_no_write_controls_and_its_posts_are_refused() {
    let (hub, _dir) = hub().await;
    let (owner, owner_csrf) = sign_in(&hub, "iothubowner").await;
    let created = call(
        &hub,
        "POST",
        "/console/devices",
        Some(&owner),
        &format!("csrf={owner_csrf}&device_id=d1"),
    )
    .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);

    let (reader, csrf) = sign_in(&hub, "registryRead").await;
    let device = text(call(&hub, "GET", "/console/devices/d1", Some(&reader), "").await).await;
    for control in [
        "twin-form",
        "delete-form",
        "status-form",
        "c2d-form",
        "method-form",
    ] {
        assert!(!device.contains(control), "{control}");
    }
    assert!(device.contains("twin-json"));
    let list = text(call(&hub, "GET", "/console/devices", Some(&reader), "").await).await;
    assert!(!list.contains("create-device") && list.contains("/console/devices/d1"));
    let delete = call(
        &hub,
        "POST",
        "/console/devices/d1/delete",
        Some(&reader),
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(delete.status(), StatusCode::UNAUTHORIZED);
    assert!(hub.get_device("d1").await.is_ok());
    // One session's token does not pass for another's.
    let crossed = call(
        &hub,
        "POST",
        "/console/devices/d1/delete",
        Some(&owner),
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(crossed.status(), StatusCode::FORBIDDEN);
    assert!(hub.get_device("d1").await.is_ok());
}

/// A sign-in post from the client address `ip`, as the HTTPS listener marks it.
async fn sign_in_from(hub: &Hub, ip: &str, policy: &str, key: &str) -> Response {
    let form = format!("policy={policy}&key={}", ironhub_auth::sas::url_encode(key));
    let mut request = Request::builder()
        .method("POST")
        .uri("/console/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    request
        .extensions_mut()
        .insert(ironhub_hub::network::Peer::public(ip.parse().unwrap()));
    ironhub_console::routes(hub.clone())
        .oneshot(request)
        .await
        .unwrap()
}

#[tokio::test]
async fn failed_sign_ins_refuse_their_address_only() {
    let (hub, _dir) = hub().await;
    let key = hub
        .settings()
        .policy("iothubowner")
        .unwrap()
        .primary_key
        .clone();
    let wrong =
        ironhub_auth::SharedAccessPolicy::generate("x", ironhub_auth::Rights::REGISTRY_READ);
    let mut refused_after = None;
    // Five failures fall in one minute unless a minute ends among them.
    for attempt in 1..=10 {
        let response = sign_in_from(&hub, "192.0.2.1", "iothubowner", &wrong.primary_key).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = response.headers()[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry));
            assert!(text(response).await.contains("Too many failed sign-ins"));
            refused_after = Some(attempt - 1);
            break;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let failures = refused_after.expect("refused within ten attempts");
    assert!((5..10).contains(&failures), "{failures}");
    // The right key from that address is refused too; another address signs in.
    let response = sign_in_from(&hub, "192.0.2.1", "iothubowner", &key).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let response = sign_in_from(&hub, "192.0.2.2", "iothubowner", &key).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn routing_edits_go_through_the_hub_on_the_page_etag() {
    let (hub, dir) = hub().await;
    // External endpoints deliver through event streams.
    let streams = ironhub_embedded::SqliteEventStreams::open(&dir.path().join("streams")).unwrap();
    let hub = hub.with_event_streams(Arc::new(streams));
    let (owner, csrf) = sign_in(&hub, "iothubowner").await;
    let post = |path: &'static str, form: String| {
        let hub = hub.clone();
        let owner = owner.clone();
        async move { call(&hub, "POST", path, Some(&owner), &form).await }
    };
    let etag = |page: &str| field(page, "etag");
    let page = text(call(&hub, "GET", "/console/routes", Some(&owner), "").await).await;
    assert!(page.contains("id=\"route-form\"") && page.contains("id=\"endpoint-form\""));
    // Nothing written yet: the forms carry an empty ETag.
    assert_eq!(etag(&page), "");
    let saved = post(
        "/console/routes/endpoint",
        format!(
            "csrf={csrf}&etag=&kind=storageContainers&name=hook&settings={}",
            ironhub_auth::sas::url_encode(
                &serde_json::json!({"containerName": dir.path().join("cold"), "encoding": "json"})
                    .to_string()
            )
        ),
    )
    .await;
    let status = saved.status();
    let page = text(saved).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Endpoint saved"), "{page}");
    let (_, first) = hub.routing_config().await.unwrap();
    let first = first.unwrap();
    assert_eq!(etag(&page), first);

    // A bad condition: the parser's message beside the field, nothing saved.
    let refused = post(
        "/console/routes/route",
        format!("csrf={csrf}&etag={first}&name=r1&source=DeviceMessages&condition=a+%3D%3D%3D+1&endpoints=hook&enabled=on"),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let page = text(refused).await;
    assert!(page.contains("id=\"route-condition-error\""), "{page}");
    assert_eq!(
        hub.routing_config().await.unwrap().1.as_deref(),
        Some(first.as_str())
    );

    // A good route; then the page from before it is stale.
    let ok = post(
        "/console/routes/route",
        format!("csrf={csrf}&etag={first}&name=r1&source=DeviceMessages&condition=a+%3D+1&endpoints=hook&enabled=on"),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let (config, _) = hub.routing_config().await.unwrap();
    assert_eq!(config.routes.len(), 1);
    assert!(config.routes[0].is_enabled);
    let stale = post(
        "/console/routes/route/delete",
        format!("csrf={csrf}&etag={first}&name=r1"),
    )
    .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(hub.routing_config().await.unwrap().0.routes.len(), 1);
    // An endpoint a route names cannot go: the hub's own refusal.
    let (_, now) = hub.routing_config().await.unwrap();
    let now = now.unwrap();
    let in_use = post(
        "/console/routes/endpoint/delete",
        format!("csrf={csrf}&etag={now}&name=hook"),
    )
    .await;
    assert_eq!(in_use.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        hub.routing_config()
            .await
            .unwrap()
            .0
            .endpoints
            .storage_containers
            .len(),
        1
    );

    // A read-only policy: no forms, and its posts are refused.
    let (reader, reader_csrf) = sign_in(&hub, "registryRead").await;
    let page = text(call(&hub, "GET", "/console/routes", Some(&reader), "").await).await;
    assert!(
        page.contains("r1") && !page.contains("route-form") && !page.contains("delete-route-r1")
    );
    let forged = call(
        &hub,
        "POST",
        "/console/routes/route/delete",
        Some(&reader),
        &format!("csrf={reader_csrf}&etag={now}&name=r1"),
    )
    .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let deleted = post(
        "/console/routes/route/delete",
        format!("csrf={csrf}&etag={now}&name=r1"),
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::OK);
    assert!(hub.routing_config().await.unwrap().0.routes.is_empty());
}

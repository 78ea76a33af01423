//! The console's DPS pages in process: their own sign-in with a DPS policy, enrollment groups
//! and individual enrollments through the forms (refusals beside their field, nothing
//! written), a device key derived from a group key, and a read-only DPS policy.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::Response;
use chrono::Utc;
use ironhub_auth::sas::url_encode;
use ironhub_auth::{Rights, SharedAccessPolicy};
use ironhub_dps::model::{EnrollmentGroup, IndividualEnrollment, LinkedHub};
use ironhub_dps::{Dps, LocalHub, NoWebhook, Services, StaticConnector, default_dps_policies};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};
use ironhub_store::DpsSettings;
use ironhub_store::prelude::*;
use tower::ServiceExt as _;

mod support;
use support::{field, request, text};

const HOST: &str = "myhub.example";
const READER_KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleQ==";

struct Setup {
    hub: Hub,
    dps: Dps,
    _dir: tempfile::TempDir,
}

/// A hub and a DPS instance with the owner policy and `enrollmentread` (EnrollmentRead only).
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let mut policies = default_dps_policies();
    policies.push(SharedAccessPolicy {
        key_name: "enrollmentread".into(),
        primary_key: READER_KEY.into(),
        secondary_key: READER_KEY.into(),
        rights: Rights::ENROLLMENT_READ,
    });
    store
        .dps_settings_or_init(DpsSettings {
            id_scope: "0ne00000A0A".into(),
            policies,
            created_time: Utc::now(),
        })
        .await
        .unwrap();
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec![HOST.into()])
        .await
        .unwrap()
        .with_rate_windows(store.clone());
    // The hub itself is linked, as `serve` links it, and reached in process.
    let owner = hub
        .settings()
        .policy("iothubowner")
        .unwrap()
        .primary_key
        .clone();
    let own = LinkedHub {
        name: HOST.into(),
        connection_string: format!(
            "HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={owner}"
        ),
        allocation_weight: None,
        apply_allocation_policy: None,
        location: None,
        etag: None,
    };
    let services = Services {
        connector: Arc::new(StaticConnector::new().with(HOST, Arc::new(LocalHub(hub.clone())))),
        webhook: Arc::new(NoWebhook),
    };
    let dps = Dps::open(store, vec![HOST.into()], None)
        .await
        .unwrap()
        .with_services(services);
    dps.put_linked_hub(own, None).await.unwrap();
    Setup {
        hub,
        dps,
        _dir: dir,
    }
}

impl Setup {
    async fn call(&self, method: &str, uri: &str, cookie: Option<&str>, form: &str) -> Response {
        ironhub_console::routes_with_dps(self.hub.clone(), Some(self.dps.clone()))
            .oneshot(request(method, uri, cookie, form))
            .await
            .unwrap()
    }

    /// Signs in to DPS as `policy` with `key`: the cookie and a page's CSRF token.
    async fn sign_in(&self, policy: &str, key: &str) -> (String, String) {
        let form = format!("policy={policy}&key={}", url_encode(key));
        let response = self.call("POST", "/console/dps/signin", None, &form).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let set = response.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(set.starts_with("ironhub-console-dps="), "{set}");
        assert!(set.contains("Secure; HttpOnly; SameSite=Strict"), "{set}");
        let cookie = set.split(';').next().unwrap().to_owned();
        let page = text(self.call("GET", "/console/dps", Some(&cookie), "").await).await;
        (cookie, field(&page, "csrf"))
    }

    fn owner_key(&self) -> String {
        self.dps
            .settings()
            .policy("provisioningserviceowner")
            .unwrap()
            .primary_key
            .clone()
    }
}

#[tokio::test]
async fn dps_pages_need_a_dps_session() {
    let s = setup().await;
    for uri in [
        "/console/dps",
        "/console/dps/groups",
        "/console/dps/enrollments/x",
    ] {
        let response = s.call("GET", uri, None, "").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(response.headers()[header::LOCATION], "/console/dps/signin");
    }
    // A hub policy's key is no DPS key, and a hub session opens no DPS page.
    let hub_key = s
        .hub
        .settings()
        .policy("iothubowner")
        .unwrap()
        .primary_key
        .clone();
    let refused = s
        .call(
            "POST",
            "/console/dps/signin",
            None,
            &format!("policy=iothubowner&key={}", url_encode(&hub_key)),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let hub_session = s
        .call(
            "POST",
            "/console/signin",
            None,
            &format!("policy=iothubowner&key={}", url_encode(&hub_key)),
        )
        .await;
    let hub_cookie = hub_session.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = s.call("GET", "/console/dps", Some(&hub_cookie), "").await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    // The DPS connection string signs in, and the page carries the console's protections.
    let cs = format!(
        "HostName={HOST};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={}",
        s.owner_key()
    );
    let response = s
        .call(
            "POST",
            "/console/dps/signin",
            None,
            &format!("connection_string={}", url_encode(&cs)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = s.call("GET", "/console/dps", Some(&cookie), "").await;
    assert_eq!(page.headers()[header::X_FRAME_OPTIONS], "DENY");
    let page = text(page).await;
    assert!(page.contains("0ne00000A0A"), "{page}");
    assert!(!page.contains(&s.owner_key()), "the key is masked");

    // The linked hub's allocation weight, on the condition of the ETag shown.
    let csrf = field(&page, "csrf");
    let etag = s.dps.get_linked_hub(HOST).await.unwrap().etag.unwrap();
    let uri = format!("/console/dps/linked-hubs/{HOST}");
    let bad = s
        .call(
            "POST",
            &uri,
            Some(&cookie),
            &format!(
                "csrf={csrf}&allocation_weight=-1&etag={}",
                url_encode(&etag)
            ),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        s.dps.get_linked_hub(HOST).await.unwrap().allocation_weight,
        None
    );
    let saved = s
        .call(
            "POST",
            &uri,
            Some(&cookie),
            &format!(
                "csrf={csrf}&allocation_weight=5&apply_allocation_policy=on&etag={}",
                url_encode(&etag)
            ),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    assert_eq!(
        s.dps.get_linked_hub(HOST).await.unwrap().allocation_weight,
        Some(5)
    );
    let stale = s
        .call(
            "POST",
            &uri,
            Some(&cookie),
            &format!("csrf={csrf}&allocation_weight=9&etag={}", url_encode(&etag)),
        )
        .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        s.dps.get_linked_hub(HOST).await.unwrap().allocation_weight,
        Some(5)
    );
}

#[tokio::test]
async fn groups_and_enrollments_through_the_forms() {
    let s = setup().await;
    let (cookie, csrf) = s.sign_in("provisioningserviceowner", &s.owner_key()).await;
    let post = |uri: &'static str, form: String| {
        let cookie = cookie.clone();
        let s = &s;
        async move { s.call("POST", uri, Some(&cookie), &form).await }
    };
    let base = format!("csrf={csrf}&attestation=symmetricKey&enabled=on");

    // Bad input: a message beside the field, nothing written.
    let bad_id = post("/console/dps/groups", format!("{base}&id=bad+id%21")).await;
    assert_eq!(bad_id.status(), StatusCode::BAD_REQUEST);
    assert!(text(bad_id).await.contains("id=\"id-error\""));
    let bad_twin = post(
        "/console/dps/groups",
        format!("{base}&id=fleet&initial_twin=%7Bnot+json"),
    )
    .await;
    assert_eq!(bad_twin.status(), StatusCode::BAD_REQUEST);
    assert!(text(bad_twin).await.contains("id=\"initial_twin-error\""));
    let bad_key = post(
        "/console/dps/groups",
        format!("{base}&id=fleet&primary_key=not-base64%21"),
    )
    .await;
    assert_eq!(bad_key.status(), StatusCode::BAD_REQUEST);
    let page = text(bad_key).await;
    assert!(page.contains("id=\"primary_key-error\""), "{page}");
    assert!(
        !page.contains("not-base64!"),
        "a refused key is not sent back"
    );
    assert!(s.dps.get::<EnrollmentGroup>("fleet").await.is_err());
    let no_csrf = s
        .call("POST", "/console/dps/groups", Some(&cookie), "id=fleet")
        .await;
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);

    // A group with generated keys and an initial twin.
    let created = post(
        "/console/dps/groups",
        format!(
            "{base}&id=fleet&allocation_policy=hashed&reprovision=reset&iot_edge=on&initial_twin={}",
            url_encode(r#"{"tags": {"site": "a"}, "properties": {"desired": {"fw": "1"}}}"#)
        ),
    )
    .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        created.headers()[header::LOCATION],
        "/console/dps/groups/fleet"
    );
    let group: EnrollmentGroup = s.dps.get("fleet").await.unwrap();
    let settings = &group.settings;
    assert!(settings.iot_edge() && settings.is_enabled());
    assert!(!settings.reprovision_policy.unwrap().migrate_device_data);
    assert_eq!(
        settings
            .initial_twin
            .as_ref()
            .unwrap()
            .tags
            .as_ref()
            .unwrap()["site"],
        "a"
    );
    let key = s
        .dps
        .attestation_mechanism::<EnrollmentGroup>("fleet")
        .await
        .unwrap()
        .symmetric_key
        .unwrap()
        .primary_key
        .unwrap();
    let page = text(
        s.call("GET", "/console/dps/groups/fleet", Some(&cookie), "")
            .await,
    )
    .await;
    assert!(!page.contains(&key), "keys are masked until asked");
    assert!(page.contains("edit-enrollment") && page.contains("delete-enrollment"));
    let shown = text(
        s.call(
            "GET",
            "/console/dps/groups/fleet?keys=show",
            Some(&cookie),
            "",
        )
        .await,
    )
    .await;
    assert!(shown.contains(&key));

    // The device key is the domain's derivation; a bad registration id is refused beside it.
    let derived = text(
        post(
            "/console/dps/groups/fleet/device-key",
            format!("csrf={csrf}&registration_id=dev-1"),
        )
        .await,
    )
    .await;
    let expected = ironhub_auth::derive_device_key(&key, "dev-1").unwrap();
    assert!(derived.contains(&expected), "{derived}");
    let refused = post(
        "/console/dps/groups/fleet/device-key",
        format!("csrf={csrf}&registration_id=bad+id%21"),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(text(refused).await.contains("registration_id-error"));

    // Edit with the page's ETag keeps the keys; a stale ETag changes nothing.
    let etag = field(&page, "etag");
    let edit = |etag: String, status: &'static str| post_edit(&s, &cookie, &csrf, etag, status);
    let saved = edit(etag.clone(), "").await;
    assert_eq!(saved.status(), StatusCode::OK);
    let group: EnrollmentGroup = s.dps.get("fleet").await.unwrap();
    assert!(!group.settings.is_enabled());
    let again = s
        .dps
        .attestation_mechanism::<EnrollmentGroup>("fleet")
        .await
        .unwrap();
    assert_eq!(again.symmetric_key.unwrap().primary_key.unwrap(), key);
    let stale = edit(etag, "on").await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let group: EnrollmentGroup = s.dps.get("fleet").await.unwrap();
    assert!(!group.settings.is_enabled());

    // An individual enrollment with a TPM endorsement key.
    let ek = "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAxsj2gUScTk1UjuioeTlfGYZrrimExB+bScH75adUMRIi2UOMxG1kw4y+9RW/IVoMl4e620VxZad0ARX2gUqVjYO7KPVt3dyKhZS3dkcvfBisBhP1XH9B33VqHG9SHnbnQXdBUaCgKAfxome8UmBKfe+naTsE5fkvjb/do3/dD6l4sGBwFCnKRdln4XpM03zLpoHFao8zOwt8l/uP3qUIxmCYv9A7m69Ms+5/pCkTu/rK4mRDsfhZ0QLfbzVI6zQFOKF/rwsfBtFeWlWtcuJMKlXdD8TXWElTzgh7JS4qhFzreL0c1mI0GCj+Aws0usZh7dLIVPnlgZcBhgy1SSDQMQ==";
    let enrolled = post(
        "/console/dps/enrollments",
        format!(
            "csrf={csrf}&id=tpm-dev&attestation=tpm&enabled=on&endorsement_key={}&device_id=tpm-device",
            url_encode(ek)
        ),
    )
    .await;
    assert_eq!(enrolled.status(), StatusCode::SEE_OTHER);
    let e: IndividualEnrollment = s.dps.get("tpm-dev").await.unwrap();
    assert_eq!(e.device_id.as_deref(), Some("tpm-device"));
    assert_eq!(
        e.settings.attestation.tpm.unwrap().endorsement_key,
        ek.to_owned()
    );
    let page = text(
        s.call("GET", "/console/dps/enrollments", Some(&cookie), "")
            .await,
    )
    .await;
    assert!(page.contains("/console/dps/enrollments/tpm-dev"));

    // Delete.
    let deleted = post(
        "/console/dps/enrollments/tpm-dev/delete",
        format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert!(s.dps.get::<IndividualEnrollment>("tpm-dev").await.is_err());
}

async fn post_edit(s: &Setup, cookie: &str, csrf: &str, etag: String, enabled: &str) -> Response {
    let form = format!(
        "csrf={csrf}&id=ignored&attestation=symmetricKey&enabled={enabled}&etag={}",
        url_encode(&etag)
    );
    // An unchecked box is not sent at all.
    let form = form.replace("&enabled=&", "&");
    s.call("POST", "/console/dps/groups/fleet", Some(cookie), &form)
        .await
}

#[tokio::test]
async fn a_read_only_dps_policy_sees_no_write_controls_and_its_posts_are_refused() {
    let s = setup().await;
    let (owner, owner_csrf) = s.sign_in("provisioningserviceowner", &s.owner_key()).await;
    let created = s
        .call(
            "POST",
            "/console/dps/groups",
            Some(&owner),
            &format!("csrf={owner_csrf}&id=fleet&attestation=symmetricKey&enabled=on"),
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);

    let (cookie, csrf) = s.sign_in("enrollmentread", READER_KEY).await;
    let list = text(
        s.call("GET", "/console/dps/groups", Some(&cookie), "")
            .await,
    )
    .await;
    assert!(list.contains("/console/dps/groups/fleet"));
    assert!(!list.contains("create-enrollment"));
    let page = text(
        s.call("GET", "/console/dps/groups/fleet", Some(&cookie), "")
            .await,
    )
    .await;
    for control in [
        "edit-enrollment",
        "delete-enrollment",
        "device-key-form",
        "show-keys",
        "delete-registration",
    ] {
        assert!(!page.contains(control), "{control} shown to a reader");
    }
    for (uri, form) in [
        (
            "/console/dps/groups",
            format!("csrf={csrf}&id=forged&enabled=on"),
        ),
        ("/console/dps/groups/fleet/delete", format!("csrf={csrf}")),
        (
            "/console/dps/linked-hubs/myhub.example",
            format!("csrf={csrf}&allocation_weight=7"),
        ),
        (
            "/console/dps/groups/fleet",
            format!("csrf={csrf}&attestation=symmetricKey"),
        ),
        (
            "/console/dps/groups/fleet/device-key",
            format!("csrf={csrf}&registration_id=dev-1"),
        ),
    ] {
        let response = s.call("POST", uri, Some(&cookie), &form).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{uri}");
    }
    assert!(s.dps.get::<EnrollmentGroup>("forged").await.is_err());
    let group: EnrollmentGroup = s.dps.get("fleet").await.unwrap();
    assert!(group.settings.is_enabled());
}

#[tokio::test]
async fn hubs_are_linked_and_unlinked_through_the_overview() {
    let s = setup().await;
    let (cookie, csrf) = s.sign_in("provisioningserviceowner", &s.owner_key()).await;
    let page = text(s.call("GET", "/console/dps", Some(&cookie), "").await).await;
    assert!(page.contains("id=\"link-hub-form\""), "{page}");
    assert!(page.contains(&format!("/console/dps/linked-hubs/{HOST}/delete")));
    let link = |cs: &str, weight: &str| {
        format!(
            "csrf={csrf}&connection_string={}&allocation_weight={weight}&apply_allocation_policy=on&location=lab",
            url_encode(cs)
        )
    };
    let hub2 =
        "HostName=hub2.example:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5a2V5";
    let count = |s: &Setup| {
        let dps = s.dps.clone();
        async move { dps.list_linked_hubs().await.unwrap().len() }
    };

    // Refusals beside their field, nothing linked.
    for (form, field, status) in [
        (
            link("not a connection string", ""),
            "connection_string-error",
            StatusCode::BAD_REQUEST,
        ),
        (
            link("HostName=hub2.example;DeviceId=d;SharedAccessKey=a2V5", ""),
            "connection_string-error",
            StatusCode::BAD_REQUEST,
        ),
        (
            link("HostName=hub2.example;SharedAccessKeyName=iothubowner", ""),
            "connection_string-error",
            StatusCode::BAD_REQUEST,
        ),
        (
            link(hub2, "heavy"),
            "allocation_weight-error",
            StatusCode::BAD_REQUEST,
        ),
        (
            link(hub2, "5000"),
            "allocation_weight-error",
            StatusCode::BAD_REQUEST,
        ),
        (
            link(
                &format!("HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5"),
                "",
            ),
            "connection_string-error",
            StatusCode::CONFLICT,
        ),
    ] {
        let response = s
            .call("POST", "/console/dps/linked-hubs", Some(&cookie), &form)
            .await;
        assert_eq!(response.status(), status, "{form}");
        let page = text(response).await;
        assert!(page.contains(&format!("id=\"{field}\"")), "{field}: {page}");
        assert!(!page.contains("a2V5a2V5"), "the key is not echoed");
        assert_eq!(count(&s).await, 1);
    }

    // A hub that does not answer (none is reachable here) is linked, with the page saying so.
    let response = s
        .call(
            "POST",
            "/console/dps/linked-hubs",
            Some(&cookie),
            &link(hub2, "3"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = text(response).await;
    assert!(
        page.contains("hub2.example is linked, but it did not answer"),
        "{page}"
    );
    assert!(page.contains("not measured yet"));
    let linked = s.dps.get_linked_hub("hub2.example").await.unwrap();
    assert_eq!(linked.allocation_weight, Some(3));
    assert_eq!(linked.location.as_deref(), Some("lab"));
    assert_eq!(linked.apply_allocation_policy, Some(true));

    // Unlinking: a confirmation page first, then on the condition of its ETag.
    let uri = "/console/dps/linked-hubs/hub2.example/delete";
    let confirm = s.call("GET", uri, Some(&cookie), "").await;
    assert_eq!(confirm.status(), StatusCode::OK);
    let confirm = text(confirm).await;
    assert!(confirm.contains("id=\"unlink-hub-form\""), "{confirm}");
    let etag = field(&confirm, "etag");
    let stale = s
        .call(
            "POST",
            uri,
            Some(&cookie),
            &format!("csrf={csrf}&etag=%22stale%22"),
        )
        .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(count(&s).await, 2);
    let done = s
        .call(
            "POST",
            uri,
            Some(&cookie),
            &format!("csrf={csrf}&etag={}", url_encode(&etag)),
        )
        .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert!(s.dps.get_linked_hub("hub2.example").await.is_err());
    let missing = s.call("GET", uri, Some(&cookie), "").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // A policy without ServiceConfig sees neither form, and its forged posts are refused.
    let (reader, reader_csrf) = s.sign_in("enrollmentread", READER_KEY).await;
    let page = text(s.call("GET", "/console/dps", Some(&reader), "").await).await;
    assert!(
        !page.contains("link-hub-form") && !page.contains("/delete\""),
        "{page}"
    );
    let forged = s
        .call(
            "POST",
            "/console/dps/linked-hubs",
            Some(&reader),
            &link(hub2, "").replace(&csrf, &reader_csrf),
        )
        .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let forged = s
        .call(
            "POST",
            &format!("/console/dps/linked-hubs/{HOST}/delete"),
            Some(&reader),
            &format!("csrf={reader_csrf}"),
        )
        .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let confirm = s
        .call(
            "GET",
            &format!("/console/dps/linked-hubs/{HOST}/delete"),
            Some(&reader),
            "",
        )
        .await;
    assert_eq!(confirm.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(count(&s).await, 1);
}

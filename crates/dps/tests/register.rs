//! The registration flow end to end in the domain: attestation, operations, allocation to
//! linked hubs (two real in-process hubs), the hub side effects, reprovisioning policies,
//! custom allocation through a webhook, disabled enrollments, X.509 and the poll limit.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{KEY, SCOPE, linked_hub};
use ironhub_auth::sas::generate;
use ironhub_auth::{derive_device_key, unix_now};
use ironhub_dps::attestation::Attested;
use ironhub_dps::model::{
    DeviceRegistration, EnrollmentGroup, IndividualEnrollment, RegistrationOperationStatus,
    RegistrationStatus, Substatus,
};
use ironhub_dps::webhook::WebhookResult;
use ironhub_dps::{
    AllocationWebhook, Dps, DpsError, Limits, LocalHub, Services, StaticConnector,
    default_dps_policies,
};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::credentials::Issuer as IssuingCa;
use ironhub_hub::issuing_cas::IssuingCas;
use ironhub_hub::{Backends, Hub};
use ironhub_store::{DpsSettings, Store};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};
use serde_json::{Value, json};

const HUB_A: &str = "hub-a.example";
const HUB_B: &str = "hub-b.example";

async fn hub(name: &str, dir: &std::path::Path) -> Hub {
    hub_on(name, Arc::new(SqliteStore::open(dir).unwrap()), dir).await
}

/// A hub keeping its devices in `store`.
async fn hub_on(name: &str, store: Arc<dyn Store>, dir: &std::path::Path) -> Hub {
    let backends = Backends {
        store,
        events: Arc::new(SqliteEventLog::open(dir, 2).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    Hub::open(backends, vec![name.into()]).await.unwrap()
}

/// A webhook that records what it was sent and answers from a script.
#[derive(Debug, Default)]
struct FakeWebhook {
    calls: Mutex<Vec<(String, Value)>>,
    answers: Mutex<Vec<WebhookResult>>,
}

#[async_trait]
impl AllocationWebhook for FakeWebhook {
    async fn post(&self, url: &str, body: Vec<u8>, _timeout: Duration) -> WebhookResult {
        let body: Value = serde_json::from_slice(&body).unwrap();
        self.calls.lock().unwrap().push((url.to_owned(), body));
        let mut answers = self.answers.lock().unwrap();
        if answers.len() > 1 {
            answers.remove(0)
        } else {
            answers[0].clone()
        }
    }
}

struct World {
    dps: Dps,
    a: Hub,
    b: Hub,
    webhook: Arc<FakeWebhook>,
    _dirs: Vec<tempfile::TempDir>,
}

async fn world(limits: Limits) -> World {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // Hub A keeps its devices in the DPS's store, as the server's own hub does (a device and
    // its registration record are written together); hub B has a store of its own (the
    // two-step path of a remote hub).
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dirs[0].path()).unwrap());
    let a = hub_on(HUB_A, store.clone(), dirs[1].path()).await;
    let b = hub(HUB_B, dirs[2].path()).await;
    let mut policies = default_dps_policies();
    policies[0].primary_key = KEY.into();
    store
        .dps_settings_or_init(DpsSettings {
            id_scope: SCOPE.into(),
            policies,
            created_time: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let webhook = Arc::new(FakeWebhook::default());
    let connector = StaticConnector::new()
        .with(HUB_A, Arc::new(LocalHub(a.clone())))
        .with(HUB_B, Arc::new(LocalHub(b.clone())));
    let dps = Dps::open(store, vec!["dps.example".into()], None)
        .await
        .unwrap()
        .with_services(Services {
            connector: Arc::new(connector),
            webhook: webhook.clone(),
        })
        .with_limits(limits);
    for name in [HUB_A, HUB_B] {
        dps.put_linked_hub(linked_hub(name), None).await.unwrap();
    }
    World {
        dps,
        a,
        b,
        webhook,
        _dirs: dirs,
    }
}

fn no_poll_limit() -> Limits {
    Limits {
        polls_per_window: 0,
        ..Limits::default()
    }
}

fn token(registration_id: &str, key: &str) -> String {
    generate(
        &format!("{SCOPE}/registrations/{registration_id}"),
        key,
        unix_now() + 3600,
        Some("registration"),
    )
    .unwrap()
}

fn individual(id: &str, extra: Value) -> IndividualEnrollment {
    let mut doc = json!({
        "registrationId": id,
        "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}},
    });
    doc.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(doc).unwrap()
}

async fn attest(dps: &Dps, id: &str, key: &str) -> Attested {
    dps.attest_symmetric_key(SCOPE, id, &token(id, key))
        .await
        .unwrap()
}

/// Registers and polls until the operation ends.
async fn register(
    dps: &Dps,
    attested: Attested,
    payload: Option<Value>,
) -> RegistrationOperationStatus {
    let id = attested.registration_id.clone();
    let request = DeviceRegistration {
        registration_id: Some(id),
        tpm: None,
        payload,
        csr: None,
    };
    register_with(dps, attested, request).await
}

/// Registers with `request` and polls until the operation ends.
async fn register_with(
    dps: &Dps,
    attested: Attested,
    request: DeviceRegistration,
) -> RegistrationOperationStatus {
    let id = attested.registration_id.clone();
    let started = dps
        .register(attested, request, Some("2019-03-31"))
        .await
        .unwrap();
    assert_eq!(started.status, RegistrationStatus::Assigning);
    assert!(started.operation_id.starts_with("4."));
    for _ in 0..200 {
        let op = dps
            .operation_status(&id, &started.operation_id)
            .await
            .unwrap();
        if op.status != RegistrationStatus::Assigning {
            assert_eq!(op.operation_id, started.operation_id);
            return op;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the registration of {id} did not finish");
}

fn state(op: &RegistrationOperationStatus) -> &ironhub_dps::model::DeviceRegistrationState {
    op.registration_state.as_ref().unwrap()
}

#[tokio::test]
async fn an_individual_enrollment_provisions_its_device_with_its_keys_and_initial_twin() {
    let w = world(no_poll_limit()).await;
    let e = individual(
        "reg-1",
        json!({"deviceId": "dev-1", "iotHubHostName": HUB_B, "allocationPolicy": "static",
               "capabilities": {"iotEdge": true},
               "initialTwin": {"tags": {"site": "lab"}, "properties": {"desired": {"fw": "1.0"}}}}),
    );
    w.dps.create_or_update("reg-1", e, None).await.unwrap();
    let op = register(&w.dps, attest(&w.dps, "reg-1", KEY).await, None).await;
    assert_eq!(op.status, RegistrationStatus::Assigned);
    let s = state(&op);
    assert_eq!(s.assigned_hub.as_deref(), Some(HUB_B));
    assert_eq!(s.device_id.as_deref(), Some("dev-1"));
    assert_eq!(s.substatus, Some(Substatus::InitialAssignment));
    assert!(s.etag.is_some() && s.created_date_time_utc.is_some());

    let device = w.b.get_device("dev-1").await.unwrap();
    assert_eq!(
        device.authentication.symmetric_key.primary_key.as_deref(),
        Some(KEY)
    );
    assert!(device.iot_edge);
    assert!(
        w.a.get_device("dev-1").await.is_err(),
        "only the static hub"
    );
    let twin = serde_json::to_value(w.b.get_twin("dev-1").await.unwrap()).unwrap();
    assert_eq!(twin["tags"]["site"], "lab");
    assert_eq!(twin["properties"]["desired"]["fw"], "1.0");

    // The registration record, as the service API shows it.
    let record = w.dps.get_registration("reg-1").await.unwrap();
    assert_eq!(record.assigned_hub.as_deref(), Some(HUB_B));
    assert_eq!(
        w.dps.device_registration_status("reg-1").await.unwrap(),
        record
    );
    // The enrollment shows its registration state.
    let shown: IndividualEnrollment = w.dps.get("reg-1").await.unwrap();
    assert_eq!(
        shown.registration_state.unwrap().status,
        RegistrationStatus::Assigned
    );
}

#[tokio::test]
async fn a_group_device_gets_the_derived_key_and_the_raw_group_key_is_refused() {
    let w = world(no_poll_limit()).await;
    let g: EnrollmentGroup = serde_json::from_value(json!({
        "enrollmentGroupId": "g1",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}},
    }))
    .unwrap();
    w.dps.create_or_update("g1", g, None).await.unwrap();
    let derived = derive_device_key(KEY, "AABBCCDDEEFF").unwrap();
    assert!(
        w.dps
            .attest_symmetric_key(SCOPE, "AABBCCDDEEFF", &token("AABBCCDDEEFF", KEY))
            .await
            .is_err(),
        "the group key itself is never a device key"
    );
    let op = register(&w.dps, attest(&w.dps, "AABBCCDDEEFF", &derived).await, None).await;
    assert_eq!(op.status, RegistrationStatus::Assigned);
    let hub_name = state(&op).assigned_hub.clone().unwrap();
    let hub = if hub_name == HUB_A { &w.a } else { &w.b };
    let device = hub.get_device("AABBCCDDEEFF").await.unwrap();
    assert_eq!(
        device.authentication.symmetric_key.primary_key.as_deref(),
        Some(derived.as_str())
    );
    let listed = w.dps.query_registrations("g1", None, None).await.unwrap();
    assert_eq!(listed.items.len(), 1);
}

#[tokio::test]
async fn a_disabled_enrollment_ends_disabled_and_touches_no_hub() {
    let w = world(no_poll_limit()).await;
    let e = individual("reg-d", json!({"provisioningStatus": "disabled"}));
    w.dps.create_or_update("reg-d", e, None).await.unwrap();
    let op = register(&w.dps, attest(&w.dps, "reg-d", KEY).await, None).await;
    assert_eq!(op.status, RegistrationStatus::Disabled);
    assert_eq!(state(&op).status, RegistrationStatus::Disabled);
    assert!(w.a.get_device("reg-d").await.is_err());
    assert!(w.b.get_device("reg-d").await.is_err());
    let record = w.dps.get_registration("reg-d").await.unwrap();
    assert_eq!(record.status, RegistrationStatus::Disabled);
    assert!(record.assigned_hub.is_none());
}

/// Moves the enrollment to the other hub (static) and registers again.
async fn reprovision(w: &World, policy: Value, to: &str) -> RegistrationOperationStatus {
    let e = individual(
        "reg-r",
        json!({"allocationPolicy": "static", "iotHubHostName": to, "reprovisionPolicy": policy,
               "initialTwin": {"tags": {"initial": true}, "properties": {"desired": {"mode": "initial"}}}}),
    );
    w.dps.create_or_update("reg-r", e, Some("*")).await.unwrap();
    register(&w.dps, attest(&w.dps, "reg-r", KEY).await, None).await
}

async fn first_on_a_with_a_changed_twin(w: &World) {
    let e = individual(
        "reg-r",
        json!({"allocationPolicy": "static", "iotHubHostName": HUB_A,
               "initialTwin": {"tags": {"initial": true}, "properties": {"desired": {"mode": "initial"}}}}),
    );
    w.dps.create_or_update("reg-r", e, None).await.unwrap();
    let op = register(&w.dps, attest(&w.dps, "reg-r", KEY).await, None).await;
    assert_eq!(state(&op).assigned_hub.as_deref(), Some(HUB_A));
    w.a.update_twin(
        "reg-r",
        &json!({"tags": {"changed": 1}, "properties": {"desired": {"mode": "changed"}}}),
        None,
        false,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn reprovision_and_migrate_moves_the_twin_to_the_new_hub() {
    let w = world(no_poll_limit()).await;
    first_on_a_with_a_changed_twin(&w).await;
    let op = reprovision(
        &w,
        json!({"updateHubAssignment": true, "migrateDeviceData": true}),
        HUB_B,
    )
    .await;
    let s = state(&op);
    assert_eq!(s.assigned_hub.as_deref(), Some(HUB_B));
    assert_eq!(s.substatus, Some(Substatus::DeviceDataMigrated));
    assert!(
        w.a.get_device("reg-r").await.is_err(),
        "removed from the old hub"
    );
    let twin = serde_json::to_value(w.b.get_twin("reg-r").await.unwrap()).unwrap();
    assert_eq!(twin["tags"]["changed"], 1);
    assert_eq!(twin["properties"]["desired"]["mode"], "changed");
}

#[tokio::test]
async fn reprovision_and_reset_gives_the_initial_twin_on_the_new_hub() {
    let w = world(no_poll_limit()).await;
    first_on_a_with_a_changed_twin(&w).await;
    let op = reprovision(
        &w,
        json!({"updateHubAssignment": true, "migrateDeviceData": false}),
        HUB_B,
    )
    .await;
    let s = state(&op);
    assert_eq!(s.assigned_hub.as_deref(), Some(HUB_B));
    assert_eq!(s.substatus, Some(Substatus::DeviceDataReset));
    assert!(w.a.get_device("reg-r").await.is_err());
    let twin = serde_json::to_value(w.b.get_twin("reg-r").await.unwrap()).unwrap();
    assert_eq!(twin["tags"]["initial"], true);
    assert!(twin["tags"].get("changed").is_none());
    assert_eq!(twin["properties"]["desired"]["mode"], "initial");
}

#[tokio::test]
async fn never_reprovision_keeps_the_device_where_it_is() {
    let w = world(no_poll_limit()).await;
    first_on_a_with_a_changed_twin(&w).await;
    let op = reprovision(
        &w,
        json!({"updateHubAssignment": false, "migrateDeviceData": false}),
        HUB_B,
    )
    .await;
    let s = state(&op);
    assert_eq!(s.assigned_hub.as_deref(), Some(HUB_A));
    assert_eq!(
        s.substatus,
        Some(Substatus::ReprovisionedToInitialAssignment)
    );
    assert!(w.b.get_device("reg-r").await.is_err());
    let twin = serde_json::to_value(w.a.get_twin("reg-r").await.unwrap()).unwrap();
    assert_eq!(twin["properties"]["desired"]["mode"], "changed");
}

#[tokio::test]
async fn custom_allocation_asks_the_webhook_and_returns_its_payload() {
    let w = world(no_poll_limit()).await;
    *w.webhook.answers.lock().unwrap() = vec![Ok((
        200,
        serde_json::to_vec(
            &json!({"iotHubHostName": HUB_B, "payload": {"welcome": "aboard"},
            "initialTwin": {"tags": {"from": "webhook"}}}),
        )
        .unwrap(),
    ))];
    let e = individual(
        "reg-c",
        json!({"allocationPolicy": "custom", "iotHubs": [HUB_A, HUB_B],
               "customAllocationDefinition": {"webhookUrl": "https://alloc.example/api/f?code=K", "apiVersion": "2021-10-01"}}),
    );
    w.dps.create_or_update("reg-c", e, None).await.unwrap();
    let op = register(
        &w.dps,
        attest(&w.dps, "reg-c", KEY).await,
        Some(json!({"fw": "12.0"})),
    )
    .await;
    assert_eq!(op.status, RegistrationStatus::Assigned, "{op:?}");
    let s = state(&op);
    assert_eq!(s.assigned_hub.as_deref(), Some(HUB_B));
    assert_eq!(s.payload, Some(json!({"welcome": "aboard"})));
    assert_eq!(
        serde_json::to_value(w.b.get_twin("reg-c").await.unwrap()).unwrap()["tags"]["from"],
        "webhook"
    );

    let calls = w.webhook.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (url, body) = &calls[0];
    assert_eq!(url, "https://alloc.example/api/f?code=K");
    assert_eq!(body["individualEnrollment"]["registrationId"], "reg-c");
    assert_eq!(
        body["individualEnrollment"]["attestation"],
        json!({"type": "symmetricKey"}),
        "no keys are sent"
    );
    assert_eq!(body["deviceRuntimeContext"]["registrationId"], "reg-c");
    assert_eq!(body["deviceRuntimeContext"]["symmetricKey"], json!({}));
    assert_eq!(
        body["deviceRuntimeContext"]["payload"],
        json!({"fw": "12.0"})
    );
    assert_eq!(body["linkedHubs"], json!([HUB_A, HUB_B]));
}

#[tokio::test]
async fn custom_allocation_failures_are_reported_with_dps_codes_and_create_nothing() {
    let w = world(no_poll_limit()).await;
    let e = individual(
        "reg-f",
        json!({"allocationPolicy": "custom",
               "customAllocationDefinition": {"webhookUrl": "https://alloc.example/api/f", "apiVersion": "2021-10-01"}}),
    );
    w.dps.create_or_update("reg-f", e, None).await.unwrap();
    for (answer, code) in [
        (
            Ok((400, b"Unrecognized device registration.".to_vec())),
            400_207,
        ),
        (Ok((200, b"{\"iotHubHostName\":\"\"}".to_vec())), 400_208),
        (Ok((401, Vec::new())), 400_209),
        (
            Ok((200, b"{\"iotHubHostName\":\"unlinked.example\"}".to_vec())),
            400_207,
        ),
    ] {
        *w.webhook.answers.lock().unwrap() = vec![answer];
        let op = register(&w.dps, attest(&w.dps, "reg-f", KEY).await, None).await;
        assert_eq!(op.status, RegistrationStatus::Failed);
        assert_eq!(state(&op).error_code, Some(code), "{op:?}");
        assert!(w.a.get_device("reg-f").await.is_err());
        assert!(w.b.get_device("reg-f").await.is_err());
    }
    assert!(matches!(
        w.dps.get_registration("reg-f").await,
        Err(DpsError::RegistrationNotFound(_))
    ));
}

#[tokio::test]
async fn polls_are_limited_per_device() {
    let w = world(Limits::default()).await;
    w.dps
        .create_or_update("reg-p", individual("reg-p", json!({})), None)
        .await
        .unwrap();
    let started = w
        .dps
        .register(
            attest(&w.dps, "reg-p", KEY).await,
            DeviceRegistration::default(),
            None,
        )
        .await
        .unwrap();
    for _ in 0..5 {
        w.dps
            .operation_status("reg-p", &started.operation_id)
            .await
            .unwrap();
    }
    let e = w
        .dps
        .operation_status("reg-p", &started.operation_id)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 429);
    assert_eq!(w.dps.retry_after(Some(&e)), 10);
    // Another device is not affected; an unknown operation is a 404.
    assert_eq!(
        w.dps
            .operation_status("reg-q", "4.x")
            .await
            .unwrap_err()
            .status(),
        404
    );
}

#[tokio::test]
async fn the_body_must_name_the_attested_registration() {
    let w = world(no_poll_limit()).await;
    w.dps
        .create_or_update("reg-1", individual("reg-1", json!({})), None)
        .await
        .unwrap();
    let e = w
        .dps
        .register(
            attest(&w.dps, "reg-1", KEY).await,
            DeviceRegistration {
                registration_id: Some("someone-else".into()),
                ..DeviceRegistration::default()
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(matches!(
        w.dps.get_registration("reg-1").await,
        Err(DpsError::RegistrationNotFound(_))
    ));
}

// ---- X.509 -------------------------------------------------------------------------------

struct Ca {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(cn: &str, parent: Option<&Ca>) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = match parent {
        Some(p) => params.signed_by(&key, &p.issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    Ca {
        cert,
        issuer: Issuer::new(params, key),
    }
}

fn leaf(cn: &str, issuer: Option<&Ca>) -> rcgen::Certificate {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    match issuer {
        Some(i) => params.signed_by(&key, &i.issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    }
}

fn der(certs: &[&rcgen::Certificate]) -> Vec<Vec<u8>> {
    certs.iter().map(|c| c.der().to_vec()).collect()
}

#[tokio::test]
async fn x509_individual_enrollments_match_the_device_certificate() {
    let w = world(no_poll_limit()).await;
    let own = leaf("x509-dev", None);
    let other = leaf("x509-dev", None);
    let e: IndividualEnrollment = serde_json::from_value(json!({
        "registrationId": "x509-dev",
        "attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": own.pem()}}}},
        "iotHubHostName": HUB_A, "allocationPolicy": "static",
    }))
    .unwrap();
    w.dps.create_or_update("x509-dev", e, None).await.unwrap();
    assert_eq!(
        w.dps
            .attest_x509(SCOPE, "x509-dev", &der(&[&other]))
            .await
            .unwrap_err()
            .status(),
        401,
        "another certificate with the same CN"
    );
    assert_eq!(
        w.dps
            .attest_x509(SCOPE, "other-id", &der(&[&own]))
            .await
            .unwrap_err()
            .status(),
        401,
        "the registration id must be the CN"
    );
    let attested = w
        .dps
        .attest_x509(SCOPE, "x509-dev", &der(&[&own]))
        .await
        .unwrap();
    let op = register(&w.dps, attested, None).await;
    assert_eq!(op.status, RegistrationStatus::Assigned);
    let device = w.a.get_device("x509-dev").await.unwrap();
    let (sha1, _) = ironhub_auth::thumbprints(own.der());
    assert_eq!(
        device
            .authentication
            .x509_thumbprint
            .primary_thumbprint
            .as_deref(),
        Some(sha1.as_str())
    );
}

#[tokio::test]
async fn x509_groups_need_the_chain_to_a_verified_ca_through_their_certificate() {
    let w = world(no_poll_limit()).await;
    let root = ca("Fleet Root", None);
    let intermediate = ca("Fleet Intermediate", Some(&root));
    let device = leaf("group-dev-1", Some(&intermediate));
    let g: EnrollmentGroup = serde_json::from_value(json!({
        "enrollmentGroupId": "x509-group",
        "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": intermediate.cert.pem()}}}},
    }))
    .unwrap();
    w.dps.create_or_update("x509-group", g, None).await.unwrap();
    let chain = der(&[&device, &intermediate.cert, &root.cert]);

    // The root is uploaded but not verified: refused.
    w.dps
        .put_certificate("fleet-root", &root.cert.pem(), false, None)
        .await
        .unwrap();
    assert_eq!(
        w.dps
            .attest_x509(SCOPE, "group-dev-1", &chain)
            .await
            .unwrap_err()
            .status(),
        401
    );
    // Proof of possession verifies it.
    let code = w
        .dps
        .generate_verification_code("fleet-root", None)
        .await
        .unwrap()
        .verification_code
        .unwrap();
    let proof = leaf(&code, Some(&root));
    w.dps
        .verify_certificate("fleet-root", &proof.pem(), None)
        .await
        .unwrap();
    // Without the intermediate, the chain does not reach the verified root.
    assert_eq!(
        w.dps
            .attest_x509(SCOPE, "group-dev-1", &der(&[&device]))
            .await
            .unwrap_err()
            .status(),
        401
    );
    let attested = w
        .dps
        .attest_x509(SCOPE, "group-dev-1", &chain)
        .await
        .unwrap();
    let op = register(&w.dps, attested, None).await;
    assert_eq!(op.status, RegistrationStatus::Assigned, "{op:?}");
    assert_eq!(
        w.dps.get_registration("group-dev-1").await.unwrap().status,
        RegistrationStatus::Assigned
    );
    // A device of another CA is not the group's.
    let stranger_ca = ca("Other", None);
    let stranger = leaf("stranger", Some(&stranger_ca));
    assert_eq!(
        w.dps
            .attest_x509(SCOPE, "stranger", &der(&[&stranger, &stranger_ca.cert]))
            .await
            .unwrap_err()
            .status(),
        401
    );
}

/// A real TPM's endorsement and storage root keys (`TPM2B_PUBLIC`, RSA 2048), from swtpm.
const TPM_EK: &str = "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEA6jZTABe2raY/Iit1OwW6gszqnC0QXA82nDCYSQ5HKtHij82nsnsq6avmO1lL7VM7QpMF3rTka43b1duQSFMmqoQ7zFbaQYYsPo6B/GSJns4bVGe8zCzmIblNZTMHBq7M9cAla5+mLAGVV/GlQHcxzjcuNnvNkIaJU9bA8hLobYgAq0NJGTX3QDHjSlN7YFbjSRtsZdB93gELNrFXmMfgR5NgwEg6A0LT5rRDd+c/h2wfp9UBxSLD97YHqwCyKJazqaC4zSKS5KIDkxKMAGsvijxKsCRsSEJekK6KDVXj8SvJhAjUTIH+Z/VDoM/Wc/r9YUAjg5+EGJx0JsKChBob7w==";
const TPM_SRK: &str = "ARoAAQALAAMAcgAAAAYAgABDABAIAAAAAAABAJMqG1wPdcoxKxmeo6vtw9OzUg6Xcewiy5NYQ9s2C+RkJT98/lMRgjjt/hPaeu0scX2NvVwZ9WpSGARqkoYOIoMxyrP6BKOvztWRmHXznLlOrRnICbwyb9HUXhTM5aMs2OYmDZFqFl1EkfmePmWuT4V4BajJqhC2ri1sYQjXQbIrJ93ltlg0TsogIUf9Txg0DqCIA66/zFJ/f5hsL0rn2jspkEI8thFZHFrXDHyKW5HBHmvPYDX1iWn2gfKuUm1DsiZTo4Sq+2E1CjHcSzXnlCHxSUwI9Y/GfvLuLgGnXRrom+FTTDqz8QY//ioT/JMfXgw4qMxSmUVmNEItkpwjVK8=";

fn tpm_keys(ek: &str) -> ironhub_dps::model::TpmAttestation {
    ironhub_dps::model::TpmAttestation {
        endorsement_key: ek.into(),
        storage_root_key: Some(TPM_SRK.into()),
    }
}

#[tokio::test]
async fn a_tpm_enrollment_challenges_its_tpm_and_provisions_it_with_the_sealed_key() {
    use base64::Engine as _;
    let w = world(no_poll_limit()).await;
    let e: IndividualEnrollment = serde_json::from_value(json!({
        "registrationId": "tpm-1", "iotHubHostName": HUB_A, "allocationPolicy": "static",
        "attestation": {"type": "tpm", "tpm": {"endorsementKey": TPM_EK}},
    }))
    .unwrap();
    w.dps.create_or_update("tpm-1", e, None).await.unwrap();

    // Another TPM (the SRK stands in for its EK), or no enrollment: 401, no challenge.
    for (id, ek) in [("tpm-1", TPM_SRK), ("tpm-nobody", TPM_EK)] {
        let refused = w.dps.tpm_challenge(SCOPE, id, &tpm_keys(ek)).await;
        assert!(
            matches!(refused, Err(DpsError::Unauthorized(_))),
            "{refused:?}"
        );
    }
    let bad = w.dps.tpm_challenge(SCOPE, "tpm-1", &tpm_keys("AAAA")).await;
    assert!(matches!(bad, Err(DpsError::BadRequest(_))), "{bad:?}");
    let blob = w
        .dps
        .tpm_challenge(SCOPE, "tpm-1", &tpm_keys(TPM_EK))
        .await
        .unwrap();
    assert!(
        base64::engine::general_purpose::STANDARD
            .decode(&blob)
            .unwrap()
            .len()
            > 600
    );

    // The key inside is the one the device signs with (derived from the owner key and EK).
    let ek = ironhub_dps::tpm::TpmPublic::from_base64(TPM_EK, "ek").unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode(ironhub_dps::tpm::device_key(
        KEY.as_bytes(),
        "tpm-1",
        &ek,
    ));
    assert!(
        w.dps
            .attest_symmetric_key(
                SCOPE,
                "tpm-1",
                &token("tpm-1", &derive_device_key(KEY, "x").unwrap())
            )
            .await
            .is_err()
    );
    let attested = attest(&w.dps, "tpm-1", &key).await;
    let request = DeviceRegistration {
        registration_id: Some("tpm-1".into()),
        tpm: Some(tpm_keys(TPM_EK)),
        ..DeviceRegistration::default()
    };
    let op = register_with(&w.dps, attested, request).await;
    assert_eq!(op.status, RegistrationStatus::Assigned, "{op:?}");
    let sealed = &state(&op).tpm.as_ref().unwrap().authentication_key;
    assert_ne!(sealed, &blob, "sealed again, with fresh seeds");
    let device = w.a.get_device("tpm-1").await.unwrap();
    assert_eq!(
        device.authentication.symmetric_key.primary_key.as_deref(),
        Some(key.as_str())
    );
}

#[tokio::test]
async fn a_csr_gets_a_certificate_and_a_bad_one_starts_nothing() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let w = world(no_poll_limit()).await;
    let cas = IssuingCas::new(IssuingCa::generate("test CA").unwrap());
    let issuer_der = cas.default_ca().ca_der().to_vec();
    let dps = w.dps.clone().with_issuing_cas(Arc::new(cas));
    dps.create_or_update(
        "csr-1",
        individual(
            "csr-1",
            json!({"iotHubHostName": HUB_A, "allocationPolicy": "static"}),
        ),
        None,
    )
    .await
    .unwrap();
    let csr_for = |cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        b64.encode(params.serialize_request(&key).unwrap().der())
    };
    let request = |csr: String| DeviceRegistration {
        registration_id: Some("csr-1".into()),
        csr: Some(csr),
        ..DeviceRegistration::default()
    };

    for bad in [csr_for("someone-else"), "AAAA".into()] {
        let refused = dps
            .register(attest(&dps, "csr-1", KEY).await, request(bad), None)
            .await;
        assert!(
            matches!(refused, Err(DpsError::BadRequest(_))),
            "{refused:?}"
        );
    }
    assert!(
        dps.get_registration("csr-1").await.is_err(),
        "nothing started"
    );
    // Without an issuer, a CSR is refused too.
    let refused = w
        .dps
        .register(
            attest(&w.dps, "csr-1", KEY).await,
            request(csr_for("csr-1")),
            None,
        )
        .await;
    assert!(
        matches!(refused, Err(DpsError::BadRequest(_))),
        "{refused:?}"
    );

    let attested = attest(&dps, "csr-1", KEY).await;
    let op = register_with(&dps, attested, request(csr_for("csr-1"))).await;
    assert_eq!(op.status, RegistrationStatus::Assigned, "{op:?}");
    let chain = state(&op).issued_certificate_chain.clone().unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(b64.decode(&chain[1]).unwrap(), issuer_der);
    let leaf =
        ironhub_auth::x509::CertificateInfo::from_der(&b64.decode(&chain[0]).unwrap()).unwrap();
    assert_eq!(leaf.common_name.as_deref(), Some("csr-1"));
    let device = w.a.get_device("csr-1").await.unwrap();
    assert_eq!(
        device.authentication.kind,
        ironhub_store::AuthType::CertificateAuthority
    );
    assert_eq!(
        device.authentication.certificate_authority_name.as_deref(),
        Some("default"),
        "the hub device records the CA that issued it"
    );
}

fn csr_for(cn: &str) -> String {
    use base64::Engine as _;
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    base64::engine::general_purpose::STANDARD.encode(params.serialize_request(&key).unwrap().der())
}

#[tokio::test]
async fn the_enrollment_names_the_issuing_ca_and_an_unknown_one_is_refused() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let w = world(no_poll_limit()).await;
    let short = IssuingCa::generate("short CA")
        .unwrap()
        .with_validity_days(3);
    let short_der = short.ca_der().to_vec();
    let cas = IssuingCas::new(IssuingCa::generate("default CA").unwrap())
        .with("short", short)
        .unwrap();
    let dps = w.dps.clone().with_issuing_cas(Arc::new(cas));
    let group = |name: &str| -> EnrollmentGroup {
        serde_json::from_value(json!({
            "enrollmentGroupId": "g-ca",
            "attestation": {"type": "symmetricKey",
                "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}},
            "iotHubHostName": HUB_A, "allocationPolicy": "static",
            "clientCertificateIssuancePolicy": {"certificateAuthorityName": name},
        }))
        .unwrap()
    };

    // A name that is no configured CA: 400, nothing stored (on create and on update).
    let refused = dps.create_or_update("g-ca", group("nope"), None).await;
    match refused {
        Err(DpsError::BadRequest(m)) => assert!(m.contains("'nope'"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(
        dps.get::<EnrollmentGroup>("g-ca").await.is_err(),
        "nothing stored"
    );
    let refused = w.dps.create_or_update("g-ca", group("short"), None).await;
    assert!(
        matches!(refused, Err(DpsError::BadRequest(_))),
        "a DPS that issues nothing knows no CA: {refused:?}"
    );

    let created = dps
        .create_or_update("g-ca", group("short"), None)
        .await
        .unwrap();
    assert_eq!(created.settings.certificate_authority_name(), Some("short"));
    let read = dps.get::<EnrollmentGroup>("g-ca").await.unwrap();
    assert_eq!(
        serde_json::to_value(&read).unwrap()["clientCertificateIssuancePolicy"],
        json!({"certificateAuthorityName": "short"}),
        "round-tripped"
    );
    let mut renamed = group("nope");
    renamed.settings.etag = read.settings.etag.clone();
    assert!(dps.create_or_update("g-ca", renamed, None).await.is_err());
    assert_eq!(
        dps.get::<EnrollmentGroup>("g-ca")
            .await
            .unwrap()
            .settings
            .certificate_authority_name(),
        Some("short"),
        "a refused update changes nothing"
    );

    let derived = derive_device_key(KEY, "ca-dev").unwrap();
    let request = DeviceRegistration {
        registration_id: Some("ca-dev".into()),
        csr: Some(csr_for("ca-dev")),
        ..DeviceRegistration::default()
    };
    let op = register_with(&dps, attest(&dps, "ca-dev", &derived).await, request).await;
    assert_eq!(op.status, RegistrationStatus::Assigned, "{op:?}");
    let chain = state(&op).issued_certificate_chain.clone().unwrap();
    assert_eq!(b64.decode(&chain[1]).unwrap(), short_der, "the group's CA");
    let leaf =
        ironhub_auth::x509::CertificateInfo::from_der(&b64.decode(&chain[0]).unwrap()).unwrap();
    let left = leaf.not_after - i64::try_from(unix_now()).unwrap();
    assert!(
        (3 * 86_400 - 120..=3 * 86_400).contains(&left),
        "valid for the CA's 3 days: {left} s left"
    );
    let device = w.a.get_device("ca-dev").await.unwrap();
    assert_eq!(
        device.authentication.certificate_authority_name.as_deref(),
        Some("short")
    );

    // A CA dropped from the configuration: a device of the group sending a CSR is refused
    // with a 400 before anything starts.
    let fewer = w.dps.clone().with_issuing_cas(Arc::new(IssuingCas::new(
        IssuingCa::generate("default CA").unwrap(),
    )));
    let derived = derive_device_key(KEY, "ca-dev-2").unwrap();
    let request = DeviceRegistration {
        registration_id: Some("ca-dev-2".into()),
        csr: Some(csr_for("ca-dev-2")),
        ..DeviceRegistration::default()
    };
    let refused = fewer
        .register(attest(&fewer, "ca-dev-2", &derived).await, request, None)
        .await;
    match refused {
        Err(DpsError::BadRequest(m)) => assert!(m.contains("'short'"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(
        fewer.get_registration("ca-dev-2").await.is_err(),
        "nothing started"
    );
}

/// The hub devices named `id` in any of these cases, on either hub.
async fn devices_named(w: &World, ids: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for hub in [&w.a, &w.b] {
        for id in ids {
            if let Ok(d) = hub.get_device(id).await {
                found.push(d.device_id.clone());
            }
        }
    }
    found
}

#[tokio::test]
async fn registration_ids_differing_only_in_case_are_one_registration() {
    let w = world(no_poll_limit()).await;
    let g: EnrollmentGroup = serde_json::from_value(json!({
        "enrollmentGroupId": "g-case",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}},
    }))
    .unwrap();
    w.dps.create_or_update("g-case", g, None).await.unwrap();
    // The device signs with the key derived over the id exactly as it sends it.
    let ids = ["AABBCC000001", "aabbcc000001", "AaBbCc000001"];
    for id in ids {
        let key = derive_device_key(KEY, id).unwrap();
        let op = register(&w.dps, attest(&w.dps, id, &key).await, None).await;
        assert_eq!(op.status, RegistrationStatus::Assigned, "{id}");
        // The first registration's case names the record and the hub device.
        assert_eq!(state(&op).registration_id, "AABBCC000001");
        assert_eq!(state(&op).device_id.as_deref(), Some("AABBCC000001"));
        assert_eq!(devices_named(&w, &ids).await, ["AABBCC000001"], "{id}");
        // The hub device has the key of the latest registration.
        let hub = if state(&op).assigned_hub.as_deref() == Some(HUB_A) {
            &w.a
        } else {
            &w.b
        };
        let device = hub.get_device("AABBCC000001").await.unwrap();
        assert_eq!(
            device.authentication.symmetric_key.primary_key,
            Some(key.clone())
        );
    }
    let listed = w
        .dps
        .query_registrations("g-case", None, None)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(w.dps.registration_count(None).await.unwrap(), 1);

    // An individual enrollment without a deviceId: the same.
    let e = individual("Reg-Case", json!({}));
    w.dps.create_or_update("Reg-Case", e, None).await.unwrap();
    for id in ["Reg-Case", "reg-case", "REG-CASE"] {
        let op = register(&w.dps, attest(&w.dps, id, KEY).await, None).await;
        assert_eq!(op.status, RegistrationStatus::Assigned, "{id}");
        assert_eq!(state(&op).device_id.as_deref(), Some("Reg-Case"));
    }
    let all = ["Reg-Case", "reg-case", "REG-CASE"];
    assert_eq!(devices_named(&w, &all).await, ["Reg-Case"]);
    assert_eq!(w.dps.registration_count(None).await.unwrap(), 2);
}

#[tokio::test]
async fn concurrent_registrations_differing_in_case_agree_on_one_device() {
    let w = world(no_poll_limit()).await;
    let e = individual(
        "race-1",
        json!({"allocationPolicy": "static", "iotHubHostName": HUB_A}),
    );
    w.dps.create_or_update("race-1", e, None).await.unwrap();
    let (upper, lower) = (
        attest(&w.dps, "RACE-1", KEY).await,
        attest(&w.dps, "race-1", KEY).await,
    );
    // Both start before either is assigned; the second replaces the first's operation.
    let request = |id: &str| DeviceRegistration {
        registration_id: Some(id.to_owned()),
        tpm: None,
        payload: None,
        csr: None,
    };
    let (a, b) = tokio::join!(
        w.dps.register(upper, request("RACE-1"), None),
        w.dps.register(lower, request("race-1"), None)
    );
    let ops = [a.unwrap().operation_id, b.unwrap().operation_id];
    assert_ne!(ops[0], ops[1]);
    // Whichever saved its operation last is the device's operation; the other is gone.
    let mut done = None;
    'poll: for _ in 0..200 {
        for (op_id, id) in ops.iter().zip(["RACE-1", "race-1"]) {
            match w.dps.operation_status(id, op_id).await {
                Ok(op) if op.status != RegistrationStatus::Assigning => {
                    done = Some(op);
                    break 'poll;
                }
                Ok(_) | Err(DpsError::OperationNotFound(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let op = done.expect("the latest registration finishes");
    assert_eq!(op.status, RegistrationStatus::Assigned);
    // Whichever claimed the record first named it, and the device after it.
    let s = state(&op);
    assert_eq!(s.device_id.as_deref(), Some(s.registration_id.as_str()));
    let record = w.dps.get_registration("race-1").await.unwrap();
    assert_eq!(record.status, RegistrationStatus::Assigned);
    let named = devices_named(&w, &["RACE-1", "race-1"]).await;
    assert_eq!(named, std::slice::from_ref(&record.registration_id));
    assert_eq!(w.dps.registration_count(None).await.unwrap(), 1);
}

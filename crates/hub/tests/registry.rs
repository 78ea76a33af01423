//! The registry's rules, through the domain API, on a real (temporary) store.
#![allow(clippy::unwrap_used)]

mod common;

use ironhub_auth::{Credentials, Rights, sas, thumbprints, unix_now};
use ironhub_hub::model::{DeviceSpec, ExportImportDevice};
use ironhub_hub::{AuthMethod, DeviceLogin, Hub, HubError, Principal};
use ironhub_store::{AuthType, DeviceStatus};
use serde_json::json;

fn spec(v: serde_json::Value) -> DeviceSpec {
    serde_json::from_value(v).unwrap()
}

fn bulk(v: serde_json::Value) -> Vec<ExportImportDevice> {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn create_update_conflict_and_delete() {
    let (hub, _dir) = common::temp_hub().await;
    let d = hub
        .put_device("d1", &spec(json!({"deviceId": "d1"})), None)
        .await
        .unwrap();
    assert_eq!(d.authentication.kind, AuthType::Sas);
    let pk = d.authentication.symmetric_key.primary_key.clone().unwrap();
    assert_eq!(pk.len(), 44, "32-byte keys are generated");

    let again = hub
        .put_device("d1", &spec(json!({})), None)
        .await
        .unwrap_err();
    assert_eq!(again.code(), 409_001);

    let stale = hub
        .put_device("d1", &spec(json!({})), Some("\"bogus\""))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), 412_002);

    let upd = hub
        .put_device(
            "d1",
            &spec(json!({"status": "disabled"})),
            Some(&format!("\"{}\"", d.etag)),
        )
        .await
        .unwrap();
    assert_eq!(upd.status, DeviceStatus::Disabled);
    assert_ne!(upd.etag, d.etag);
    assert_eq!(upd.generation_id, d.generation_id);
    assert_eq!(
        upd.authentication.symmetric_key.primary_key.as_deref(),
        Some(pk.as_str()),
        "an update that leaves keys out keeps them"
    );
    assert!(upd.status_updated_time.is_some());

    let missing = hub
        .put_device("nope", &spec(json!({})), Some("*"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), 404_001);

    assert_eq!(
        hub.delete_device("d1", Some(&d.etag))
            .await
            .unwrap_err()
            .code(),
        412_002
    );
    hub.delete_device("d1", Some("\"*\"")).await.unwrap();
    assert_eq!(hub.get_device("d1").await.unwrap_err().code(), 404_001);
    assert_eq!(
        hub.delete_device("d1", None).await.unwrap_err().code(),
        404_001
    );
}

#[tokio::test]
async fn edge_devices_get_a_device_scope() {
    let (hub, _dir) = common::temp_hub().await;
    let e = hub
        .put_device(
            "edge1",
            &spec(json!({"capabilities": {"iotEdge": true}})),
            None,
        )
        .await
        .unwrap();
    let scope = e.device_scope.clone().unwrap();
    assert_eq!(
        scope,
        format!("ms-azure-iot-edge://edge1-{}", e.generation_id)
    );
    let again = hub
        .put_device(
            "edge1",
            &spec(json!({"capabilities": {"iotEdge": true}})),
            Some("*"),
        )
        .await
        .unwrap();
    assert_eq!(
        again.device_scope.as_deref(),
        Some(scope.as_str()),
        "the scope is kept"
    );
    let plain = hub
        .put_device("leaf1", &spec(json!({})), None)
        .await
        .unwrap();
    assert_eq!(plain.device_scope, None);
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let (hub, _dir) = common::temp_hub().await;
    let cases = [
        ("a b", json!({})),
        ("x", json!({"deviceId": "y"})),
        ("x", json!({"status": "sleeping"})),
        ("x", json!({"authentication": {"type": "magic"}})),
        (
            "x",
            json!({"authentication": {"type": "sas", "symmetricKey": {"primaryKey": "short"}}}),
        ),
        ("x", json!({"authentication": {"type": "selfSigned"}})),
        (
            "x",
            json!({"authentication": {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": "abc"}}}),
        ),
    ];
    for (id, body) in cases {
        let e = hub
            .put_device(id, &spec(body.clone()), None)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 400, "{id} {body} -> {e:?}");
    }
    assert_eq!(
        hub.registry_statistics().await.unwrap().total_device_count,
        0
    );
}

#[tokio::test]
async fn x509_devices_keep_normalised_thumbprints() {
    let (hub, _dir) = common::temp_hub().await;
    let tp = "ab".repeat(20);
    let d = hub
        .put_device(
            "x1",
            &spec(json!({"authentication": {"type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": tp, "secondaryThumbprint": null}}})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        d.authentication.x509_thumbprint.primary_thumbprint.unwrap(),
        "AB".repeat(20)
    );
    assert!(d.authentication.symmetric_key.primary_key.is_none());
    let ca = hub
        .put_device(
            "x2",
            &spec(json!({"authentication": {"type": "certificateAuthority"}})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(ca.authentication.kind, AuthType::CertificateAuthority);
}

#[tokio::test]
async fn bulk_is_all_or_nothing() {
    let (hub, _dir) = common::temp_hub().await;
    hub.put_device("taken", &spec(json!({})), None)
        .await
        .unwrap();
    let r = hub
        .bulk(&bulk(json!([
            {"id": "b1", "importMode": "create"},
            {"id": "taken", "importMode": "create"},
        ])))
        .await
        .unwrap();
    assert!(!r.is_successful);
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].device_id, "taken");
    assert_eq!(r.errors[0].error_code, "DeviceAlreadyExists");
    assert!(
        hub.get_device("b1").await.is_err(),
        "nothing of a failed bulk is kept"
    );

    let r = hub
        .bulk(&bulk(json!([
            {"id": "b1", "importMode": "create", "status": "disabled"},
            {"id": "b2", "importMode": "create"},
            {"id": "taken", "importMode": "delete"},
        ])))
        .await
        .unwrap();
    assert!(r.is_successful, "{r:?}");
    assert_eq!(
        hub.get_device("b1").await.unwrap().status,
        DeviceStatus::Disabled
    );
    assert!(hub.get_device("taken").await.is_err());
    let stats = hub.registry_statistics().await.unwrap();
    assert_eq!(
        (stats.total_device_count, stats.disabled_device_count),
        (2, 1)
    );

    let dup = hub
        .bulk(&bulk(json!([{"id": "z"}, {"id": "z"}])))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), 400_011);
    let many: Vec<_> = (0..101).map(|i| json!({"id": format!("m{i}")})).collect();
    assert_eq!(
        hub.bulk(&bulk(json!(many))).await.unwrap_err().status(),
        400
    );
}

#[tokio::test]
async fn service_tokens_need_a_policy_with_the_rights() {
    let (hub, _dir) = common::temp_hub().await;
    let policy = |n: &str| hub.settings().policy(n).unwrap().clone();
    let owner = policy("iothubowner");
    let later = unix_now() + 3600;
    let token = sas::generate(
        "myhub.example",
        &owner.primary_key,
        later,
        Some("iothubowner"),
    )
    .unwrap();
    assert!(matches!(
        hub.authorize_service(Some(&token), Rights::REGISTRY_WRITE),
        Ok(Principal::Policy { .. })
    ));
    let secondary = sas::generate(
        "MyHub.Example",
        &owner.secondary_key,
        later,
        Some("iothubowner"),
    )
    .unwrap();
    hub.authorize_service(Some(&secondary), Rights::REGISTRY_WRITE)
        .unwrap();

    let reader = policy("registryRead");
    let token = sas::generate(
        "myhub.example",
        &reader.primary_key,
        later,
        Some("registryRead"),
    )
    .unwrap();
    hub.authorize_service(Some(&token), Rights::REGISTRY_READ)
        .unwrap();
    let e = hub
        .authorize_service(Some(&token), Rights::REGISTRY_WRITE)
        .unwrap_err();
    assert_eq!(e.code(), 401_002);

    let expired = sas::generate(
        "myhub.example",
        &owner.primary_key,
        unix_now() - 10,
        Some("iothubowner"),
    )
    .unwrap();
    assert!(
        hub.authorize_service(Some(&expired), Rights::REGISTRY_READ)
            .is_err()
    );
    let wrong_key = sas::generate(
        "myhub.example",
        &reader.primary_key,
        later,
        Some("iothubowner"),
    )
    .unwrap();
    assert!(
        hub.authorize_service(Some(&wrong_key), Rights::REGISTRY_READ)
            .is_err()
    );
    let other_hub = sas::generate(
        "other.example",
        &owner.primary_key,
        later,
        Some("iothubowner"),
    )
    .unwrap();
    assert!(
        hub.authorize_service(Some(&other_hub), Rights::REGISTRY_READ)
            .is_err()
    );
    assert!(hub.authorize_service(None, Rights::REGISTRY_READ).is_err());
    assert!(
        hub.authorize_service(Some("Bearer x"), Rights::REGISTRY_READ)
            .is_err()
    );
}

#[tokio::test]
async fn amqp_service_tokens_grant_what_their_resource_covers() {
    let (hub, _dir) = common::temp_hub().await;
    let policy = |n: &str| hub.settings().policy(n).unwrap().clone();
    let service = policy("service");
    let later = unix_now() + 3600;
    let entity = sas::generate(
        "sb://myhub.example/myhub",
        &service.primary_key,
        later,
        Some("service"),
    )
    .unwrap();
    let grant = hub
        .authorize_service_token(&entity, &[Rights::SERVICE_CONNECT])
        .unwrap();
    assert_eq!(grant.expires, later);
    let now = unix_now();
    assert!(hub.grant_covers(&grant, "/myhub/ConsumerGroups/$Default/Partitions/0", now));
    assert!(hub.grant_covers(&grant, "/myhub", now));
    assert!(!hub.grant_covers(&grant, "/other/ConsumerGroups/$Default/Partitions/0", now));
    assert!(!hub.grant_covers(&grant, "/messages/devicebound", now));
    assert!(!hub.grant_covers(&grant, "/myhub", later));

    let whole = sas::generate(
        "myhub.example",
        &service.primary_key,
        later,
        Some("service"),
    )
    .unwrap();
    let grant = hub
        .authorize_service_token(&whole, &[Rights::SERVICE_CONNECT])
        .unwrap();
    assert!(hub.grant_covers(&grant, "/messages/devicebound", now));

    for (resource, key, name) in [
        ("sb://other.example/myhub", &service.primary_key, "service"),
        // registryRead has no ServiceConnect.
        (
            "myhub.example",
            &policy("registryRead").primary_key,
            "registryRead",
        ),
        // Signed with another policy's key.
        (
            "myhub.example",
            &policy("iothubowner").primary_key,
            "service",
        ),
    ] {
        let token = sas::generate(resource, key, later, Some(name)).unwrap();
        let e = hub
            .authorize_service_token(&token, &[Rights::SERVICE_CONNECT])
            .unwrap_err();
        assert_eq!(e.code(), 401_002, "{resource} {name}");
    }
    let expired = sas::generate(
        "myhub.example",
        &service.primary_key,
        now - 10,
        Some("service"),
    )
    .unwrap();
    assert!(
        hub.authorize_service_token(&expired, &[Rights::SERVICE_CONNECT])
            .is_err()
    );
}

#[tokio::test]
async fn device_tokens_are_verified_with_the_devices_keys() {
    let (hub, _dir) = common::temp_hub().await;
    let d = hub
        .put_device("dev1", &spec(json!({})), None)
        .await
        .unwrap();
    let keys = d.authentication.symmetric_key.clone();
    let later = unix_now() + 3600;
    for key in [keys.primary_key.unwrap(), keys.secondary_key.unwrap()] {
        let token = sas::generate("myhub.example/devices/dev1", &key, later, None).unwrap();
        let auth = hub.authenticate_device("dev1", &token).await.unwrap();
        assert_eq!((auth.method, auth.expires), (AuthMethod::Sas, Some(later)));
        assert_eq!(auth.generation_id, d.generation_id);
        // A token for one device does not open another.
        assert!(hub.authenticate_device("dev2", &token).await.is_err());
    }
    let owner = hub.settings().policy("device").unwrap().clone();
    let policy_token = sas::generate(
        "myhub.example/devices/dev1",
        &owner.primary_key,
        later,
        Some("device"),
    )
    .unwrap();
    hub.authenticate_device("dev1", &policy_token)
        .await
        .unwrap();
    let svc = hub.settings().policy("service").unwrap().clone();
    let no_right =
        sas::generate("myhub.example", &svc.primary_key, later, Some("service")).unwrap();
    assert!(hub.authenticate_device("dev1", &no_right).await.is_err());

    hub.put_device("dev1", &spec(json!({"status": "disabled"})), Some("*"))
        .await
        .unwrap();
    let key = hub
        .get_device("dev1")
        .await
        .unwrap()
        .authentication
        .symmetric_key
        .primary_key
        .unwrap();
    let token = sas::generate("myhub.example/devices/dev1", &key, later, None).unwrap();
    let e: HubError = hub.authenticate_device("dev1", &token).await.unwrap_err();
    assert!(e.to_string().contains("disabled"));
}

// A device's login, as MQTT CONNECT and the HTTPS device routes make it (`Hub::authenticate`):
// which credential counts, and the identity it becomes.

const KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleQ==";
const NO_CHAIN: [Vec<u8>; 0] = [];

fn device_token(id: &str) -> String {
    sas::generate(
        &format!("myhub.example/devices/{id}"),
        KEY,
        unix_now() + 3600,
        None,
    )
    .unwrap()
}

fn login<'a>(id: &'a str, credentials: Credentials<'a>) -> DeviceLogin<'a> {
    DeviceLogin {
        device_id: id,
        credentials,
        ..DeviceLogin::default()
    }
}

fn unauthorized(r: Result<ironhub_hub::AuthenticatedDevice, HubError>) -> String {
    match r {
        Err(HubError::Unauthorized(m)) => m,
        other => panic!("not a 401: {other:?}"),
    }
}

#[tokio::test]
async fn a_sas_device_logs_in_with_its_token_and_carries_its_model() {
    let (hub, _dir) = common::temp_hub().await;
    let keys = json!({"type": "sas", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}});
    hub.put_device("d1", &spec(json!({"authentication": keys})), None)
        .await
        .unwrap();
    let token = device_token("d1");
    let mut l = login("d1", Credentials::new(Some(&token), &NO_CHAIN));
    l.model_id = Some("dtmi:example:thermostat;1");
    let device = hub.authenticate(&l).await.unwrap();
    assert_eq!(device.identity.device_id, "d1");
    assert_eq!(device.identity.module_id, None);
    assert_eq!(device.identity.auth, AuthMethod::Sas);
    assert_eq!(
        device.identity.model_id.as_deref(),
        Some("dtmi:example:thermostat;1")
    );
    assert!(device.expires.unwrap() > unix_now());
    assert_eq!(
        device.identity.generation_id,
        hub.get_device("d1").await.unwrap().generation_id
    );

    // Nothing presented, or a blank token and no certificate: 401.
    let m = unauthorized(hub.authenticate(&login("d1", Credentials::default())).await);
    assert!(
        m.contains("neither a SAS token nor a client certificate"),
        "{m}"
    );
    let blank = Credentials::new(Some("  "), &NO_CHAIN);
    unauthorized(hub.authenticate(&login("d1", blank)).await);
    // Another device's token, and the device's token for one of its modules: 401.
    let other = device_token("d2");
    unauthorized(
        hub.authenticate(&login("d1", Credentials::new(Some(&other), &NO_CHAIN)))
            .await,
    );
    let mut module = login("d1", Credentials::new(Some(&token), &NO_CHAIN));
    module.module_id = Some("m1");
    unauthorized(hub.authenticate(&module).await);
}

#[tokio::test]
async fn a_module_logs_in_with_its_own_token_only() {
    let (hub, _dir) = common::temp_hub().await;
    hub.put_device("d1", &spec(json!({})), None).await.unwrap();
    let spec_m = ironhub_hub::model::ModuleSpec::default();
    let m1 = hub.put_module("d1", "m1", &spec_m, None).await.unwrap();
    hub.put_module("d1", "m2", &spec_m, None).await.unwrap();
    let key = m1.authentication.symmetric_key.primary_key.clone().unwrap();
    let later = unix_now() + 3600;
    let token = sas::generate("myhub.example/devices/d1/modules/m1", &key, later, None).unwrap();
    let as_module = |m: &'static str| DeviceLogin {
        device_id: "d1",
        module_id: Some(m),
        credentials: Credentials::new(Some(&token), &NO_CHAIN),
        ..DeviceLogin::default()
    };
    let device = hub.authenticate(&as_module("m1")).await.unwrap();
    assert_eq!(device.identity.module_id.as_deref(), Some("m1"));
    assert_eq!(device.identity.key(), "d1/m1");
    assert_eq!(device.identity.generation_id, m1.generation_id);
    // Another module, or the device itself, with m1's token: 401.
    unauthorized(hub.authenticate(&as_module("m2")).await);
    unauthorized(
        hub.authenticate(&login("d1", Credentials::new(Some(&token), &NO_CHAIN)))
            .await,
    );
    // A deleted module, or a disabled device, cannot log in.
    hub.put_device("d1", &spec(json!({"status": "disabled"})), Some("*"))
        .await
        .unwrap();
    unauthorized(hub.authenticate(&as_module("m1")).await);
    hub.delete_module("d1", "m1", None).await.unwrap();
    unauthorized(hub.authenticate(&as_module("m1")).await);
}

#[tokio::test]
async fn a_certificate_counts_when_there_is_no_token() {
    let (hub, _dir) = common::temp_hub().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["d2".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = cert.der().to_vec();
    let (sha1, _) = thumbprints(&der);
    let auth = json!({"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": sha1}});
    hub.put_device("d2", &spec(json!({"authentication": auth})), None)
        .await
        .unwrap();
    let chain = [der];
    // An empty MQTT password next to the certificate is no token.
    let device = hub
        .authenticate(&login("d2", Credentials::new(Some(""), &chain)))
        .await
        .unwrap();
    assert_eq!(device.identity.auth, AuthMethod::SelfSigned);
    assert_eq!(device.expires, None);
    // A token, when given, is what counts: this device has no keys, so it is refused.
    let token = device_token("d2");
    unauthorized(
        hub.authenticate(&login("d2", Credentials::new(Some(&token), &chain)))
            .await,
    );
}

// Which `sr` a device's token may name (issue 15, hostile cases): host names compared
// case-insensitively, device ids exactly, and a device's own key good for its own resource
// only; policy tokens keep their per-segment prefix rule.

/// Creates `id` and returns its primary key.
async fn device(hub: &Hub, id: &str) -> String {
    let spec = spec(json!({}));
    let d = hub.put_device(id, &spec, None).await.unwrap();
    d.authentication.symmetric_key.primary_key.unwrap()
}

async fn refused(hub: &Hub, id: &str, token: &str) -> String {
    match hub.authenticate_device(id, token).await {
        Err(e @ HubError::Unauthorized(_)) => e.to_string(),
        other => panic!("expected Unauthorized for {token}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_device_key_signs_for_its_own_resource_only() {
    let (hub, _dir) = common::temp_hub().await;
    let key = device(&hub, "Dev1").await;
    let later = unix_now() + 3600;
    let token = |sr: &str| sas::generate(sr, &key, later, None).unwrap();

    // The host in any case, with or without scheme, port or a trailing slash.
    for sr in [
        "myhub.example/devices/Dev1",
        "MYHUB.Example/devices/Dev1",
        "https://myhub.example:8883/devices/Dev1/",
    ] {
        let auth = hub.authenticate_device("Dev1", &token(sr)).await.unwrap();
        assert_eq!(auth.method, AuthMethod::Sas, "{sr}");
    }
    // The device id is exact; a prefix of the resource or a longer one is not this device.
    for sr in [
        "myhub.example/devices/dev1",
        "myhub.example/devices/DEV1",
        "myhub.example",
        "myhub.example/devices",
        "myhub.example/devices/Dev1/modules/m1",
        "other.example/devices/Dev1",
    ] {
        let e = refused(&hub, "Dev1", &token(sr)).await;
        assert!(e.contains("does not cover"), "{sr}: {e}");
    }
    // An id differing only in case is another device, which does not exist.
    let lower = sas::generate("myhub.example/devices/dev1", &key, later, None).unwrap();
    let e = refused(&hub, "dev1", &lower).await;
    assert!(e.contains("no device 'dev1'"), "{e}");
}

#[tokio::test]
async fn policy_tokens_keep_the_prefix_rule_with_exact_ids() {
    let (hub, _dir) = common::temp_hub().await;
    device(&hub, "Dev1").await;
    let later = unix_now() + 3600;
    let policy = hub.settings().policy("device").unwrap().clone();
    let token = |sr: &str| sas::generate(sr, &policy.primary_key, later, Some("device")).unwrap();
    for sr in [
        "myhub.example",
        "MyHub.Example/devices",
        "myhub.example/devices/Dev1",
    ] {
        let auth = hub.authenticate_device("Dev1", &token(sr)).await.unwrap();
        assert_eq!(auth.method, AuthMethod::Policy, "{sr}");
    }
    for sr in ["myhub.example/devices/dev1", "myhub.example/Devices"] {
        refused(&hub, "Dev1", &token(sr)).await;
    }
}

#[tokio::test]
async fn operations_check_policy_rights_and_local_auth() {
    use ironhub_auth::access::{Operation, ServiceAccess};
    let (hub, _dir) = common::temp_hub().await;
    let reader = hub.settings().policy("registryRead").unwrap().clone();
    let token = sas::generate(
        "myhub.example",
        &reader.primary_key,
        unix_now() + 3600,
        Some("registryRead"),
    )
    .unwrap();
    hub.authorize_operation(Some(&token), Operation::DeviceRead, "GET on /devices/d")
        .await
        .unwrap();
    let e = hub
        .authorize_operation(
            Some(&token),
            Operation::DeviceDelete,
            "DELETE on /devices/d",
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), 401_002);
    // No issuer configured: a bearer token is refused, never mistaken for a SAS token.
    let e = hub
        .authorize_operation(
            Some("Bearer a.b.c"),
            Operation::DeviceRead,
            "GET on /devices",
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no OpenID Connect issuer"), "{e}");

    let mut access = ServiceAccess::local(ironhub_auth::oidc::IOT_HUB_AUDIENCE);
    access.local_auth = false;
    let hub = hub.with_service_access(access);
    let e = hub
        .authorize_operation(Some(&token), Operation::DeviceRead, "GET on /devices/d")
        .await
        .unwrap_err();
    assert_eq!(e.code(), 401_002);
    assert!(e.to_string().contains("local authentication"), "{e}");
    // AMQP's claims-based security takes policy tokens too, and is refused the same way.
    assert!(
        hub.authorize_service_token(&token, &[Rights::REGISTRY_READ])
            .is_err()
    );
}

#[tokio::test]
async fn bearer_grants_cover_the_addresses_their_roles_allow() {
    use ironhub_hub::ServiceGrant;
    let (hub, _dir) = common::temp_hub().await;
    let grant = |role: &str| ServiceGrant {
        principal: Principal::Bearer {
            name: "ada".into(),
            roles: vec![role.into()],
        },
        resource: "myhub.example".into(),
        expires: unix_now() + 600,
    };
    let now = unix_now();
    let reader = grant("IoT Hub Data Reader");
    assert!(!hub.grant_covers(&reader, "/messages/devicebound", now));
    assert!(hub.grant_covers(&reader, "/myhub/ConsumerGroups/$Default/Partitions/0", now));
    let contributor = grant("IoT Hub Data Contributor");
    assert!(hub.grant_covers(&contributor, "/messages/devicebound", now));
    assert!(hub.grant_covers(&contributor, "/messages/serviceBound/feedback", now));
    assert!(!hub.grant_covers(&contributor, "/messages/devicebound", now + 601));
    let twins = grant("IoT Hub Twin Contributor");
    assert!(!hub.grant_covers(&twins, "/messages/serviceBound/feedback", now));
}

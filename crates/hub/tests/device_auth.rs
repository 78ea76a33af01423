//! A device's login through the domain, as MQTT CONNECT and the HTTPS device routes make it:
//! which credential counts, and the identity it becomes.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ironhub_auth::sas::generate;
use ironhub_auth::{Credentials, thumbprints, unix_now};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{AuthMethod, Backends, DeviceLogin, Hub, HubError};
use serde_json::json;

const KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleQ==";
const NO_CHAIN: [Vec<u8>; 0] = [];

async fn hub() -> (Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec!["myhub.example".into()])
        .await
        .unwrap();
    (hub, dir)
}

fn spec(v: serde_json::Value) -> DeviceSpec {
    serde_json::from_value(v).unwrap()
}

fn device_token(id: &str) -> String {
    generate(
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
    let (hub, _dir) = hub().await;
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
    // Another device's token, and a module login: 401.
    let other = device_token("d2");
    unauthorized(
        hub.authenticate(&login("d1", Credentials::new(Some(&other), &NO_CHAIN)))
            .await,
    );
    let mut module = login("d1", Credentials::new(Some(&token), &NO_CHAIN));
    module.module_id = Some("m1");
    let m = unauthorized(hub.authenticate(&module).await);
    assert!(m.contains("module"), "{m}");
}

#[tokio::test]
async fn a_certificate_counts_when_there_is_no_token() {
    let (hub, _dir) = hub().await;
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

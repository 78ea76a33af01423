//! Which `sr` a device's token may name (issue 15, hostile cases): host names compared
//! case-insensitively, device ids exactly, and a device's own key good for its own resource
//! only; policy tokens keep their per-segment prefix rule.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ironhub_auth::{sas, unix_now};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{AuthMethod, Backends, Hub, HubError};

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

/// Creates `id` and returns its primary key.
async fn device(hub: &Hub, id: &str) -> String {
    let spec: DeviceSpec = serde_json::from_value(serde_json::json!({})).unwrap();
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
    let (hub, _dir) = hub().await;
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
    let (hub, _dir) = hub().await;
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

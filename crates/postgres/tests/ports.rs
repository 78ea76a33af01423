//! The ports implemented so far, against a real PostgreSQL (see `tests/common`).

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Utc;
use common::test_database;
use ironhub_postgres::PgStore;
use ironhub_store::prelude::*;
use ironhub_store::testkit::certificates::record;
use ironhub_store::testkit::file_notifications::notification;
use ironhub_store::{CertificateScope, WriteConflict};

#[tokio::test]
async fn mqtt_sessions_are_stored_and_discarded() {
    let Some(options) = test_database("sessions").await else {
        return;
    };
    let store = PgStore::open(&options).await.unwrap();
    assert_eq!(store.mqtt_session("dev").await.unwrap(), None);
    store
        .set_mqtt_session("dev", Some(vec!["a/#".into(), "b".into()]))
        .await
        .unwrap();
    store
        .set_mqtt_session("dev", Some(vec!["c".into()]))
        .await
        .unwrap();
    assert_eq!(
        store.mqtt_session("dev").await.unwrap(),
        Some(vec!["c".into()])
    );
    store.set_mqtt_session("dev", None).await.unwrap();
    store.set_mqtt_session("never", None).await.unwrap();
    assert_eq!(store.mqtt_session("dev").await.unwrap(), None);
}

#[tokio::test]
async fn certificates_are_written_compare_and_swap() {
    let Some(options) = test_database("certs").await else {
        return;
    };
    let store = PgStore::open(&options).await.unwrap();
    let hub = CertificateScope::Hub;
    let created = store
        .put_certificate(hub, record("root"), None)
        .await
        .unwrap()
        .unwrap();
    assert!(!created.etag.is_empty());
    assert_eq!(
        store
            .put_certificate(hub, record("root"), None)
            .await
            .unwrap(),
        Err(WriteConflict::AlreadyExists)
    );
    assert_eq!(
        store
            .put_certificate(hub, record("other"), Some("*".into()))
            .await
            .unwrap(),
        Err(WriteConflict::NotFound)
    );
    assert_eq!(
        store
            .put_certificate(hub, record("root"), Some("stale".into()))
            .await
            .unwrap(),
        Err(WriteConflict::EtagMismatch)
    );
    let mut verified = record("root");
    verified.is_verified = true;
    let replaced = store
        .put_certificate(hub, verified, Some(created.etag.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(replaced.etag, created.etag);
    assert_eq!(
        store.get_certificate(hub, "root").await.unwrap(),
        Some(replaced.clone())
    );
    // The scopes are apart.
    assert_eq!(
        store
            .get_certificate(CertificateScope::Dps, "root")
            .await
            .unwrap(),
        None
    );
    store
        .put_certificate(hub, record("Zeta"), None)
        .await
        .unwrap()
        .unwrap();
    store
        .put_certificate(hub, record("alpha"), None)
        .await
        .unwrap()
        .unwrap();
    let names: Vec<String> = store
        .list_certificates(hub)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["Zeta", "alpha", "root"]);
    assert_eq!(
        store
            .delete_certificate(hub, "root", Some(created.etag))
            .await
            .unwrap(),
        Err(WriteConflict::EtagMismatch)
    );
    assert_eq!(
        store
            .delete_certificate(hub, "root", Some(replaced.etag))
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store.delete_certificate(hub, "root", None).await.unwrap(),
        Err(WriteConflict::NotFound)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_name_let_one_win() {
    let Some(options) = test_database("race").await else {
        return;
    };
    let store = PgStore::open(&options).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_certificate(CertificateScope::Dps, record("ca"), None)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(e, WriteConflict::AlreadyExists),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn file_notifications_are_locked_settled_and_dropped() {
    use chrono::TimeDelta;
    use ironhub_store::FileNotificationRules;
    let Some(options) = test_database("files").await else {
        return;
    };
    let store = PgStore::open(&options).await.unwrap();
    let rules = FileNotificationRules {
        lock_duration: TimeDelta::seconds(60),
        max_delivery_count: 2,
    };
    let t0 = Utc::now();
    let ttl = TimeDelta::hours(1);
    store
        .file_notification_enqueue(notification("a", t0), t0 + ttl)
        .await
        .unwrap();
    store
        .file_notification_enqueue(notification("b", t0), t0 + ttl)
        .await
        .unwrap();
    // Oldest first; a locked one is invisible until its lock runs out.
    let a = store
        .file_notification_lock(rules, t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.notification.blob_name.as_str(), a.delivery_count),
        ("a", 1)
    );
    let b = store
        .file_notification_lock(rules, t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.notification.blob_name, "b");
    assert_eq!(store.file_notification_lock(rules, t0).await.unwrap(), None);
    // Completing deletes; abandoning makes it visible again.
    assert!(
        store
            .file_notification_settle(&b.lock_token, true, t0)
            .await
            .unwrap()
    );
    assert!(
        !store
            .file_notification_settle(&b.lock_token, true, t0)
            .await
            .unwrap()
    );
    assert!(
        store
            .file_notification_settle(&a.lock_token, false, t0)
            .await
            .unwrap()
    );
    let again = store
        .file_notification_lock(rules, t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.notification.blob_name.as_str(), again.delivery_count),
        ("a", 2)
    );
    // A lock that ran out is lost; at the maximum delivery count the notification is dropped.
    let later = t0 + TimeDelta::seconds(61);
    assert!(
        !store
            .file_notification_settle(&again.lock_token, true, later)
            .await
            .unwrap()
    );
    assert_eq!(
        store.file_notification_lock(rules, later).await.unwrap(),
        None
    );
    // Expired notifications are never handed out.
    store
        .file_notification_enqueue(notification("c", t0), t0 + ttl)
        .await
        .unwrap();
    assert_eq!(
        store.file_notification_lock(rules, t0 + ttl).await.unwrap(),
        None
    );
}

fn dps_record(id: &str, group: Option<&str>) -> ironhub_store::DpsRecord {
    ironhub_store::DpsRecord {
        id: id.into(),
        group_id: group.map(Into::into),
        etag: String::new(),
        doc: serde_json::json!({ "registrationId": id }),
    }
}

#[tokio::test]
async fn dps_settings_are_set_once() {
    use ironhub_store::DpsSettings;
    let Some(options) = test_database("dps_settings").await else {
        return;
    };
    let store = PgStore::open(&options).await.unwrap();
    assert_eq!(store.dps_settings().await.unwrap(), None);
    let first = DpsSettings {
        id_scope: "0ne00000001".into(),
        policies: vec![],
        created_time: Utc::now(),
    };
    let second = DpsSettings {
        id_scope: "0ne00000002".into(),
        ..first.clone()
    };
    assert_eq!(
        store.dps_settings_or_init(first.clone()).await.unwrap(),
        first
    );
    assert_eq!(store.dps_settings_or_init(second).await.unwrap(), first);
    assert_eq!(store.dps_settings().await.unwrap(), Some(first));
}

#[tokio::test]
async fn dps_records_are_case_insensitive_paged_and_written_all_or_none() {
    use ironhub_store::{DpsCollection::Registrations as R, DpsWrite};
    let Some(options) = test_database("dps_records").await else {
        return;
    };
    let store = PgStore::open(&options).await.unwrap();
    let created = store
        .dps_write(
            R,
            vec![
                DpsWrite::Create(dps_record("Dev-B", Some("G1"))),
                DpsWrite::Create(dps_record("dev-a", Some("g1"))),
                DpsWrite::Create(dps_record("dev-c", None)),
            ],
        )
        .await
        .unwrap()
        .unwrap();
    let b = created[0].clone().unwrap();
    assert_eq!(
        store.dps_get(R, "DEV-b").await.unwrap().unwrap().id,
        "Dev-B"
    );
    // A conflict anywhere writes nothing.
    let failed = store
        .dps_write(
            R,
            vec![
                DpsWrite::Create(dps_record("dev-d", None)),
                DpsWrite::Create(dps_record("DEV-A", None)),
                DpsWrite::Replace {
                    record: dps_record("dev-b", None),
                    if_match: Some("stale".into()),
                },
                DpsWrite::Delete {
                    id: "nobody".into(),
                    if_match: None,
                },
            ],
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        failed,
        vec![
            (1, WriteConflict::AlreadyExists),
            (2, WriteConflict::EtagMismatch),
            (3, WriteConflict::NotFound)
        ]
    );
    assert_eq!(store.dps_get(R, "dev-d").await.unwrap(), None);
    // A replace keeps the id's case and takes a new etag.
    let replaced = store
        .dps_write(
            R,
            vec![DpsWrite::Replace {
                record: dps_record("DEV-B", Some("g1")),
                if_match: Some(b.etag.clone()),
            }],
        )
        .await
        .unwrap()
        .unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(replaced.id, "Dev-B");
    assert_ne!(replaced.etag, b.etag);
    let ids = |records: Vec<ironhub_store::DpsRecord>| -> Vec<String> {
        records.into_iter().map(|r| r.id).collect()
    };
    assert_eq!(
        ids(store.dps_list(R, None, 2, None).await.unwrap()),
        ["dev-a", "Dev-B"]
    );
    assert_eq!(
        ids(store.dps_list(R, Some("DEV-B"), 2, None).await.unwrap()),
        ["dev-c"]
    );
    assert_eq!(
        ids(store.dps_list(R, None, 10, Some("G1")).await.unwrap()),
        ["dev-a", "Dev-B"]
    );
    assert_eq!(store.dps_count(R, None).await.unwrap(), 3);
    assert_eq!(store.dps_count(R, Some("g1")).await.unwrap(), 2);
    let deleted = store
        .dps_write(
            R,
            vec![DpsWrite::Delete {
                id: "dev-b".into(),
                if_match: Some("*".into()),
            }],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted, vec![None]);
    assert_eq!(store.dps_count(R, None).await.unwrap(), 2);
}

#[tokio::test]
async fn devices_are_written_all_or_none_and_keep_their_runtime_fields() {
    use ironhub_store::testkit::device;
    use ironhub_store::{ConnectionState, DeviceStatus, DeviceWrite, RuntimeUpdate};
    let Some(options) = test_database("registry").await else {
        return;
    };
    let store = PgStore::open(&options).await.unwrap();
    let created = store
        .write_devices(vec![
            DeviceWrite::Create(device("b")),
            DeviceWrite::Create(device("a")),
            DeviceWrite::Create(device("B")),
        ])
        .await
        .unwrap()
        .unwrap();
    let a = created[1].clone().unwrap();
    let failed = store
        .write_devices(vec![
            DeviceWrite::Create(device("c")),
            DeviceWrite::Create(device("a")),
            DeviceWrite::Delete {
                id: "a".into(),
                if_match: Some("stale".into()),
            },
        ])
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        failed,
        vec![
            (1, WriteConflict::AlreadyExists),
            (2, WriteConflict::EtagMismatch)
        ]
    );
    assert_eq!(store.get_device("c").await.unwrap(), None);
    // Ids are case-sensitive and ordered byte by byte.
    let ids: Vec<String> = store
        .list_devices(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(ids, ["B", "a", "b"]);
    assert_eq!(store.list_devices(Some("a"), 10).await.unwrap().len(), 1);
    // A runtime update changes no etag; a replace keeps the runtime fields.
    let at = Utc::now();
    let connect = RuntimeUpdate {
        connection_state: Some(ConnectionState::Connected),
        node: Some("node-a".into()),
        at: Some(at),
    };
    assert!(store.update_device_runtime("a", connect).await.unwrap());
    assert!(
        !store
            .update_device_runtime("zz", RuntimeUpdate::default())
            .await
            .unwrap()
    );
    let connected = store.get_device("a").await.unwrap().unwrap();
    assert_eq!(connected.etag, a.etag);
    assert_eq!(connected.connection_node.as_deref(), Some("node-a"));
    let mut disabled = device("a");
    disabled.status = DeviceStatus::Disabled;
    let replaced = store
        .write_devices(vec![DeviceWrite::Replace {
            record: disabled,
            if_match: Some(a.etag.clone()),
        }])
        .await
        .unwrap()
        .unwrap()[0]
        .clone()
        .unwrap();
    assert_ne!(replaced.etag, a.etag);
    assert_eq!(replaced.connection_state, ConnectionState::Connected);
    let counts = store.device_counts().await.unwrap();
    assert_eq!(
        (
            counts.total,
            counts.enabled,
            counts.disabled,
            counts.connected
        ),
        (3, 2, 1, 1)
    );
    // Another node's restart leaves the device connected; its own does not.
    assert_eq!(store.disconnect_node("node-b").await.unwrap(), 0);
    assert_eq!(store.disconnect_node("node-a").await.unwrap(), 1);
    assert_eq!(store.device_counts().await.unwrap().connected, 0);
    // Deleting a device deletes its persistent sessions (its modules' too), not others'.
    for client in ["a", "a/m1", "ab"] {
        store
            .set_mqtt_session(client, Some(vec!["t".into()]))
            .await
            .unwrap();
    }
    store
        .write_devices(vec![DeviceWrite::Delete {
            id: "a".into(),
            if_match: None,
        }])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.get_device("a").await.unwrap(), None);
    assert_eq!(store.mqtt_session("a").await.unwrap(), None);
    assert_eq!(store.mqtt_session("a/m1").await.unwrap(), None);
    assert!(store.mqtt_session("ab").await.unwrap().is_some());
}

#[tokio::test]
async fn settings_endpoint_and_node_heartbeats() {
    use chrono::TimeDelta;
    let Some(options) = test_database("nodes").await else {
        return;
    };
    let store = PgStore::open(&options).await.unwrap();
    assert_eq!(store.hub_settings().await.unwrap(), None);
    assert_eq!(store.endpoint().await.unwrap(), None);
    let t0 = Utc::now();
    store.node_heartbeat("node-b", t0).await.unwrap();
    store.node_heartbeat("node-a", t0).await.unwrap();
    store
        .node_heartbeat("node-c", t0 + TimeDelta::seconds(30))
        .await
        .unwrap();
    assert_eq!(store.expired_nodes(t0).await.unwrap(), ["node-a", "node-b"]);
    store
        .node_heartbeat("node-a", t0 + TimeDelta::seconds(30))
        .await
        .unwrap();
    store.forget_node("node-b").await.unwrap();
    assert!(store.expired_nodes(t0).await.unwrap().is_empty());
}

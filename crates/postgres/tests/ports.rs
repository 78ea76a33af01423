//! The ports implemented so far, against a real PostgreSQL (see `tests/common`).

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Utc;
use common::test_database;
use ironhub_postgres::PgStore;
use ironhub_store::prelude::*;
use ironhub_store::{CertificateRecord, CertificateScope, WriteConflict};

fn record(name: &str) -> CertificateRecord {
    let now = Utc::now();
    CertificateRecord {
        name: name.into(),
        etag: String::new(),
        certificate: "PEM".into(),
        subject: "CN=Root".into(),
        thumbprint: "AB".into(),
        expiry: now,
        is_verified: false,
        verification_code: None,
        created: now,
        updated: now,
    }
}

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

fn notification(blob: &str, at: chrono::DateTime<Utc>) -> ironhub_store::FileNotification {
    ironhub_store::FileNotification {
        device_id: "d1".into(),
        blob_uri: format!("https://acct.blob.core.windows.net/c/{blob}"),
        blob_name: blob.into(),
        last_updated_time: Some(at),
        blob_size_in_bytes: Some(5),
        enqueued_time_utc: at,
    }
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

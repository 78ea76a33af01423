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

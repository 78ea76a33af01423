//! What the testkit (`tests/testkit.rs`) does not cover, against a real PostgreSQL (see
//! `tests/common`).

#![allow(clippy::unwrap_used)]

mod common;

use common::test_database;
use ironhub_postgres::PgStore;
use ironhub_store::prelude::*;
use ironhub_store::testkit::certificates::record;
use ironhub_store::{CertificateScope, ConfigurationWrite, WriteConflict};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_of_one_configuration_let_one_win() {
    let Some(options) = test_database("config_race").await else {
        return;
    };
    let store = PgStore::open(&options).await.unwrap();
    // Eight nodes create the same id, then eight replace it on the etag they all read.
    let race = async |write: ConfigurationWrite| {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (store, write) = (store.clone(), write.clone());
            tasks.push(tokio::spawn(async move {
                store.write_configuration(write).await.unwrap()
            }));
        }
        let mut won = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(record) => won.push(record.unwrap()),
                Err(e) => assert!(
                    matches!(
                        e,
                        WriteConflict::AlreadyExists | WriteConflict::EtagMismatch
                    ),
                    "{e:?}"
                ),
            }
        }
        assert_eq!(won.len(), 1, "exactly one write wins");
        won.remove(0)
    };
    let doc = serde_json::json!({"id": "c", "priority": 1});
    let created = race(ConfigurationWrite::Create {
        id: "c".into(),
        doc: doc.clone(),
    })
    .await;
    let replaced = race(ConfigurationWrite::Replace {
        id: "c".into(),
        doc,
        if_match: created.etag.clone(),
    })
    .await;
    assert_ne!(replaced.etag, created.etag);
    assert_eq!(store.get_configuration("c").await.unwrap(), Some(replaced));
}

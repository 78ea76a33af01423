//! What the testkit (`tests/testkit.rs`) does not cover, against a real PostgreSQL (see
//! `tests/common`).

#![allow(clippy::unwrap_used)]

mod common;

use common::test_database;
use ironhub_postgres::PgStore;
use ironhub_store::prelude::*;
use ironhub_store::testkit::certificates::record;
use ironhub_store::{CertificateScope, WriteConflict};

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

//! Device twins and cloud-to-device queues on a real PostgreSQL (see `tests/common`): two nodes
//! (two stores, two pools on one database) racing; the testkit cases run in `testkit.rs`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use common::test_database;
use ironhub_postgres::{PgOptions, PgStore};
use ironhub_store::prelude::*;
use ironhub_store::testkit::{self, create_device, rules};
use ironhub_store::{AckMode, TwinRecord, WriteConflict};

/// Two nodes of one hub: two stores, each with its own pool, on one database.
async fn two_nodes(options: &PgOptions) -> (Arc<PgStore>, Arc<PgStore>) {
    let a = PgStore::open(options).await.unwrap();
    let b = PgStore::open(options).await.unwrap();
    (Arc::new(a), Arc::new(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_patching_one_twin_on_one_etag_let_one_win() {
    let Some(options) = test_database("twin_race").await else {
        return;
    };
    let (a, b) = two_nodes(&options).await;
    create_device(&a, "d").await;
    let mut etag = String::new();
    for round in 0..20 {
        let write = |store: Arc<PgStore>, node: &str| {
            let mut twin = TwinRecord {
                device_id: "d".into(),
                version: round,
                ..TwinRecord::default()
            };
            twin.desired.insert("node".into(), node.into());
            let if_match = Some(etag.clone());
            tokio::spawn(async move { store.put_twin(twin, if_match).await.unwrap() })
        };
        let (x, y) = (write(a.clone(), "a"), write(b.clone(), "b"));
        let outcomes = [x.await.unwrap(), y.await.unwrap()];
        let won: Vec<&TwinRecord> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {outcomes:?}");
        assert!(outcomes.contains(&Err(WriteConflict::EtagMismatch)));
        // The winner's write is the one stored, seen alike by both nodes.
        let stored = b.get_twin("d").await.unwrap().unwrap();
        assert_eq!(&stored, won[0]);
        assert_eq!(a.get_twin("d").await.unwrap().unwrap(), stored);
        etag = stored.etag;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_receiving_from_one_queue_never_share_a_message() {
    let Some(options) = test_database("c2d_race").await else {
        return;
    };
    let (a, b) = two_nodes(&options).await;
    create_device(&a, "d").await;
    let mut rules = rules();
    rules.max_depth = 50;
    let now = Utc::now();
    // One message, both nodes asking at once: exactly one gets it.
    for round in 0..10 {
        let message = testkit::c2d::message(
            "d",
            &format!("one-{round}"),
            AckMode::None,
            now + TimeDelta::hours(1),
        );
        a.c2d_enqueue(message, rules, now).await.unwrap().unwrap();
        let lock = |store: Arc<PgStore>, node: &'static str| {
            tokio::spawn(async move { store.c2d_lock_next("d", node, rules, now).await.unwrap() })
        };
        let (x, y) = (lock(a.clone(), "node-a"), lock(b.clone(), "node-b"));
        let got: Vec<_> = [x.await.unwrap(), y.await.unwrap()]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(got.len(), 1, "round {round}: {got:?}");
        let node = got[0].lock_node.clone().unwrap();
        let store = if node == "node-a" { &a } else { &b };
        let token = got[0].lock_token.clone().unwrap();
        store
            .c2d_settle("d", &token, ironhub_store::C2dSettle::Complete, rules, now)
            .await
            .unwrap()
            .unwrap();
    }
    // A full queue drained by both nodes at once: every message delivered once.
    let mut sent = BTreeSet::new();
    for i in 0..40 {
        let message = testkit::c2d::message(
            "d",
            &format!("many-{i}"),
            AckMode::None,
            now + TimeDelta::hours(1),
        );
        let stored = b.c2d_enqueue(message, rules, now).await.unwrap().unwrap();
        sent.insert(stored.sequence_number);
    }
    let drain = |store: Arc<PgStore>, node: &'static str| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(m) = store.c2d_lock_next("d", node, rules, now).await.unwrap() {
                got.push(m.sequence_number);
            }
            got
        })
    };
    let (x, y) = (drain(a.clone(), "node-a"), drain(b.clone(), "node-b"));
    let (x, y) = (x.await.unwrap(), y.await.unwrap());
    let delivered: BTreeSet<u64> = x.iter().chain(&y).copied().collect();
    assert_eq!(
        delivered.len(),
        x.len() + y.len(),
        "delivered twice: {x:?} {y:?}"
    );
    assert_eq!(delivered, sent);
}

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

/// The scan's conditions narrow in the database, typed as the query language compares:
/// equality and `IN` by containment, ranges on numbers or strings (by code point) only, and
/// the containment index serves equality.
#[tokio::test]
async fn scan_conditions_narrow_in_the_database() {
    use ironhub_store::{ScanCondition, ScanOp, TwinField, TwinScan};
    use serde_json::json;
    let Some(options) = test_database("scan").await else {
        return;
    };
    let store = Arc::new(PgStore::open(&options).await.unwrap());
    let fleet = [
        ("d1", json!({"v": "0", "s": {"it's": 1}})),
        ("d2", json!({"v": 0, "s": {"it's": 2}})),
        ("d3", json!({"v": 2.5})),
        ("d4", json!({"v": "B"})),
        ("d5", json!({"v": "a"})),
        ("d6", json!({"v": true})),
        ("d7", json!({"v": null})),
    ];
    for (id, reported) in &fleet {
        create_device(&store, id).await;
        let twin = TwinRecord {
            device_id: (*id).into(),
            reported: reported.as_object().cloned().unwrap(),
            ..TwinRecord::default()
        };
        store.put_twin(twin, None).await.unwrap().unwrap();
    }
    create_device(&store, "d8").await;
    let v = || TwinField::Reported(vec!["v".into()]);
    let scan = |field: TwinField, op: ScanOp, values: Vec<serde_json::Value>| {
        let store = store.clone();
        async move {
            let request = TwinScan {
                after: None,
                limit: 100,
                conditions: vec![ScanCondition { field, op, values }],
            };
            let rows = store.scan_twins(&request).await.unwrap();
            rows.into_iter()
                .map(|(d, _)| d.device_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(scan(v(), ScanOp::Eq, vec![json!("0")]).await, ["d1"]);
    assert_eq!(scan(v(), ScanOp::Eq, vec![json!(0)]).await, ["d2"]);
    assert_eq!(scan(v(), ScanOp::Eq, vec![json!(0.0)]).await, ["d2"]);
    assert_eq!(
        scan(v(), ScanOp::In, vec![json!(2.5), json!("a"), json!(false)]).await,
        ["d3", "d5"]
    );
    assert_eq!(scan(v(), ScanOp::Ge, vec![json!(0)]).await, ["d2", "d3"]);
    assert_eq!(scan(v(), ScanOp::Lt, vec![json!(1)]).await, ["d2"]);
    // "B" < "a" < "b" by code point, whatever the database's collation.
    assert_eq!(scan(v(), ScanOp::Gt, vec![json!("B")]).await, ["d5"]);
    assert_eq!(
        scan(v(), ScanOp::Lt, vec![json!("b")]).await,
        ["d1", "d4", "d5"]
    );
    let nested = TwinField::Reported(vec!["s".into(), "it's".into()]);
    assert_eq!(scan(nested, ScanOp::Eq, vec![json!(2)]).await, ["d2"]);
    assert_eq!(
        scan(TwinField::DeviceId, ScanOp::Ge, vec![json!("d7")]).await,
        ["d7", "d8"]
    );
    // A boolean range is the caller's to check: every device comes back.
    assert_eq!(scan(v(), ScanOp::Gt, vec![json!(false)]).await.len(), 8);

    let pool = ironhub_postgres::connect(&options).await.unwrap();
    let client = pool.get().await.unwrap();
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            "EXPLAIN SELECT device_id FROM twins WHERE doc @> '{\"reported\": {\"v\": 0}}'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter().any(|l| l.contains("twins_by_containment")),
        "{plan:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sending_at_once_never_overfill_a_queue() {
    use ironhub_store::C2dRefusal;
    let Some(options) = test_database("c2d_depth").await else {
        return;
    };
    let (a, b) = two_nodes(&options).await;
    create_device(&a, "d").await;
    let mut rules = rules();
    rules.max_depth = 5;
    let now = Utc::now();
    let sends: Vec<_> = (0..12)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let message = testkit::c2d::message(
                "d",
                &format!("m{i}"),
                AckMode::None,
                now + TimeDelta::hours(1),
            );
            tokio::spawn(async move { store.c2d_enqueue(message, rules, now).await.unwrap() })
        })
        .collect();
    let mut accepted = 0;
    for send in sends {
        match send.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(refusal) => assert_eq!(refusal, C2dRefusal::QueueFull),
        }
    }
    assert_eq!(accepted, 5);
    let device = b.get_device("d").await.unwrap().unwrap();
    assert_eq!(device.cloud_to_device_message_count, 5);
}

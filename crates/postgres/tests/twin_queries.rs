//! The twin query push-downs of PostgreSQL (`aggregate_twins`, `top_twins`) give the SQLite
//! engine's answers over one fleet of mixed types, request after request; where an engine
//! declines, the caller computes the answer itself, so only answers both give are compared.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use serde_json::{Value, json};

use common::test_database;
use ironhub_embedded::SqliteStore;
use ironhub_postgres::PgStore;
use ironhub_store::prelude::*;
use ironhub_store::testkit::create_device;
use ironhub_store::{
    AggregateOp, ScanCondition, ScanOp, TwinAggregate, TwinField, TwinRecord, TwinTop,
};

/// A value from a small, deterministic pseudo-random sequence.
struct Seq(u64);

impl Seq {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    /// A property value of one of the language's types, or missing.
    fn value(&mut self) -> Option<Value> {
        Some(match self.next(12) {
            0 => return None,
            1 => Value::Null,
            2 => json!(self.next(2) == 1),
            3 | 4 => json!(self.next(5)),
            5 => json!(self.next(5) as f64),
            6 => json!(self.next(50) as f64 / 4.0 - 3.0),
            7 | 8 => json!(["a", "B", "b", "0", "é"][self.next(5) as usize]),
            9 => json!(-(self.next(3) as i64)),
            10 => json!([self.next(2)]),
            _ => json!({ "n": self.next(2) }),
        })
    }
}

fn section(seq: &mut Seq, names: &[&str]) -> serde_json::Map<String, Value> {
    names
        .iter()
        .filter_map(|n| seq.value().map(|v| ((*n).to_owned(), v)))
        .collect()
}

fn fields() -> Vec<TwinField> {
    vec![
        TwinField::Reported(vec!["t".into()]),
        TwinField::Tags(vec!["floor".into()]),
        TwinField::Desired(vec!["mode".into()]),
        TwinField::DeviceId,
    ]
}

fn conditions() -> Vec<Vec<ScanCondition>> {
    let c = |field: TwinField, op, values: Vec<Value>| ScanCondition { field, op, values };
    let t = || TwinField::Reported(vec!["t".into()]);
    vec![
        vec![],
        vec![c(t(), ScanOp::Ge, vec![json!(1)])],
        vec![c(t(), ScanOp::Lt, vec![json!("b")])],
        vec![c(t(), ScanOp::Eq, vec![json!("0")])],
        vec![c(t(), ScanOp::In, vec![json!(0), json!(2.0), json!(true)])],
        vec![
            c(
                TwinField::Tags(vec!["floor".into()]),
                ScanOp::Le,
                vec![json!(2)],
            ),
            c(TwinField::DeviceId, ScanOp::Gt, vec![json!("d10")]),
        ],
        vec![c(
            TwinField::DeviceId,
            ScanOp::In,
            vec![json!("d03"), json!("d07"), json!("d42"), json!("zz")],
        )],
    ]
}

#[tokio::test]
async fn aggregates_and_first_twins_equal_the_sqlite_engines() {
    let Some(options) = test_database("queries").await else {
        return;
    };
    let pg = Arc::new(PgStore::open(&options).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let mut seq = Seq(7);
    for i in 0..60 {
        let id = format!("d{i:02}");
        create_device(&pg, &id).await;
        create_device(&sqlite, &id).await;
        if i % 9 == 4 {
            continue; // no twin at all
        }
        let twin = TwinRecord {
            device_id: id,
            reported: section(&mut seq, &["t", "u"]),
            tags: section(&mut seq, &["floor"]),
            desired: section(&mut seq, &["mode"]),
            ..TwinRecord::default()
        };
        pg.put_twin(twin.clone(), None).await.unwrap().unwrap();
        sqlite.put_twin(twin, None).await.unwrap().unwrap();
    }
    let (mut compared, mut declined) = (0, Vec::new());
    let t = || Some(TwinField::Reported(vec!["t".into()]));
    for conditions in conditions() {
        for group_by in fields().into_iter().map(|f| vec![f]).chain([vec![]]) {
            for aggregates in [
                vec![(AggregateOp::Count, None)],
                vec![
                    (AggregateOp::Sum, t()),
                    (AggregateOp::Avg, t()),
                    (AggregateOp::Min, t()),
                    (AggregateOp::Max, t()),
                    (AggregateOp::Count, None),
                ],
            ] {
                let request = TwinAggregate {
                    conditions: conditions.clone(),
                    group_by: group_by.clone(),
                    aggregates,
                };
                let theirs = sqlite.aggregate_twins(&request).await.unwrap();
                match pg.aggregate_twins(&request).await.unwrap() {
                    Some(ours) => {
                        if let Some(theirs) = theirs {
                            assert_eq!(ours, theirs, "{request:?}");
                            compared += 1;
                        }
                    }
                    None => declined.push(theirs.is_some()),
                }
            }
        }
        for order_by in fields().into_iter().take(3) {
            for descending in [false, true] {
                for limit in [1, 7, 100] {
                    let request = TwinTop {
                        conditions: conditions.clone(),
                        order_by: order_by.clone(),
                        descending,
                        limit,
                    };
                    let theirs = sqlite.top_twins(&request).await.unwrap();
                    match pg.top_twins(&request).await.unwrap() {
                        Some(ours) => {
                            // Each device with its twin's documents (etags are each engine's).
                            let rows = |rows: Vec<ironhub_store::DeviceTwin>| {
                                rows.into_iter()
                                    .map(|(d, t)| {
                                        (d.device_id, t.map(|t| (t.reported, t.tags, t.desired)))
                                    })
                                    .collect::<Vec<_>>()
                            };
                            if let Some(theirs) = theirs {
                                assert_eq!(rows(ours), rows(theirs), "{request:?}");
                                compared += 1;
                            }
                        }
                        None => declined.push(theirs.is_some()),
                    }
                }
            }
        }
    }
    let only_ours = declined.iter().filter(|theirs| **theirs).count();
    eprintln!(
        "compared {compared} answers; PostgreSQL declined {} ({only_ours} that SQLite gave)",
        declined.len()
    );
    assert!(compared > 100, "compared only {compared}");
}

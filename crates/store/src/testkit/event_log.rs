//! Cases of the event log port. Each case gets a factory of new, empty logs with the
//! partition count it asks for.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::{EventLog, NewEvent, PartitionBounds, Retention, StartPosition};

fn ev(device: &str, body: &str) -> NewEvent {
    NewEvent {
        device_id: device.into(),
        module_id: Some("m".into()),
        system_properties: [("message-id".to_owned(), "m1".to_owned())].into(),
        application_properties: [
            ("k".to_owned(), Some("v".to_owned())),
            ("n".to_owned(), None),
        ]
        .into(),
        body: body.as_bytes().to_vec(),
    }
}

/// A device's events go to its partition, numbered 0, 1, 2, … in order; concurrent appends
/// get unique numbers without gaps; events read back as appended.
pub async fn appends_are_numbered_in_order_without_gaps<K>(
    make: impl Fn(u32) -> (Arc<dyn EventLog>, K),
) {
    let (log, _keep) = make(4);
    assert_eq!(log.partition_count(), 4);
    let mut seqs = Vec::new();
    let mut p = 0;
    for i in 0..10 {
        let e = log.append(ev("dev1", &format!("m{i}"))).await.unwrap();
        assert_eq!(e.partition, crate::eventlog::partition_for("dev1", 4));
        seqs.push(e.sequence_number);
        p = e.partition;
    }
    assert_eq!(
        seqs,
        (0..10).collect::<Vec<_>>(),
        "one device's events keep their order"
    );
    let tasks: Vec<_> = (10..20)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(ev("dev1", &format!("m{i}"))).await })
        })
        .collect();
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap().sequence_number);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());
    let read = log.read(p, 5, 3).await.unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(read[0].sequence_number, 5);
    assert_eq!(read[0].event, ev("dev1", "m5"));
    assert_eq!(
        log.bounds(p).await.unwrap(),
        PartitionBounds { first: 0, next: 20 }
    );
    assert!(log.read(p, 20, 10).await.unwrap().is_empty());
    assert!(log.read(4, 0, 1).await.is_err(), "there is no partition 4");
}

/// `append_batch` appends in the order given, each device's events after what it had, while
/// other appends run beside it; the events come back as stored.
pub async fn appends_of_many_keep_their_order<K>(make: impl Fn(u32) -> (Arc<dyn EventLog>, K)) {
    let (log, _keep) = make(2);
    log.append(ev("dev1", "first")).await.unwrap();
    let other = {
        let log = log.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                log.append(ev("dev2", &format!("o{i}"))).await.unwrap();
            }
        })
    };
    let mut bodies = Vec::new();
    for round in 0..5 {
        let batch: Vec<NewEvent> = (0..7)
            .map(|i| ev("dev1", &format!("r{round}m{i}")))
            .collect();
        let appended = log.append_batch(batch.clone()).await.unwrap();
        assert_eq!(
            appended.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
            batch,
            "returned in the order given"
        );
        bodies.extend(batch.into_iter().map(|e| e.body));
    }
    other.await.unwrap();
    assert!(log.append_batch(Vec::new()).await.unwrap().is_empty());
    let p = crate::eventlog::partition_for("dev1", 2);
    let read: Vec<Vec<u8>> = log
        .read(p, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.device_id == "dev1")
        .map(|e| e.event.body)
        .collect();
    assert_eq!(read[0], b"first");
    assert_eq!(
        read[1..],
        bodies[..],
        "one device's events in the order sent"
    );
}

/// Readers start at the oldest event, at the next one, at a sequence number or at a time;
/// waiting ends when an event arrives or the timeout passes.
pub async fn readers_start_where_they_ask_and_wait_for_events<K>(
    make: impl Fn(u32) -> (Arc<dyn EventLog>, K),
) {
    let (log, _keep) = make(2);
    let first = log.append(ev("a", "1")).await.unwrap();
    let p = first.partition;
    assert_eq!(log.resolve(p, StartPosition::Earliest).await.unwrap(), 0);
    assert_eq!(log.resolve(p, StartPosition::Latest).await.unwrap(), 1);
    assert_eq!(log.resolve(p, StartPosition::Sequence(0)).await.unwrap(), 0);
    let later = Utc::now() + chrono::Duration::seconds(60);
    assert_eq!(
        log.resolve(p, StartPosition::EnqueuedTime(later))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        log.resolve(p, StartPosition::EnqueuedTime(first.enqueued_time))
            .await
            .unwrap(),
        0
    );
    assert!(!log.wait_for(p, 1, Duration::from_millis(20)).await);
    assert!(log.wait_for(p, 0, Duration::from_millis(20)).await);
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move { log.wait_for(p, 1, Duration::from_secs(10)).await })
    };
    log.append(ev("a", "2")).await.unwrap();
    assert!(waiter.await.unwrap());
}

/// `$Default` always exists; groups are created and deleted with their checkpoints.
pub async fn consumer_groups_keep_checkpoints<K>(make: impl Fn(u32) -> (Arc<dyn EventLog>, K)) {
    let (log, _keep) = make(2);
    assert_eq!(log.consumer_groups().await.unwrap(), ["$Default"]);
    assert!(log.create_consumer_group("cg1").await.unwrap());
    assert!(!log.create_consumer_group("cg1").await.unwrap());
    assert_eq!(log.consumer_groups().await.unwrap(), ["$Default", "cg1"]);
    assert_eq!(log.checkpoint("cg1", 1).await.unwrap(), None);
    log.set_checkpoint("cg1", 1, 2).await.unwrap();
    log.set_checkpoint("cg1", 1, 3).await.unwrap();
    assert_eq!(log.checkpoint("cg1", 1).await.unwrap(), Some(3));
    assert_eq!(log.checkpoint("cg1", 0).await.unwrap(), None);
    assert!(log.delete_consumer_group("cg1").await.unwrap());
    assert_eq!(log.checkpoint("cg1", 1).await.unwrap(), None);
    assert!(!log.delete_consumer_group("cg1").await.unwrap());
    assert!(!log.delete_consumer_group("$Default").await.unwrap());
}

/// Retention by size keeps the newest events; once retention empties a partition, its
/// numbering still continues.
pub async fn retention_keeps_the_newest_and_numbering_continues<K>(
    make: impl Fn(u32) -> (Arc<dyn EventLog>, K),
) {
    let (log, _keep) = make(1);
    for i in 0..10 {
        log.append(ev("d", &format!("{i:0>10}"))).await.unwrap();
    }
    let dropped = log
        .enforce_retention(Retention {
            max_age: chrono::Duration::days(1),
            max_bytes_per_partition: 35,
        })
        .await
        .unwrap();
    assert_eq!(dropped, 7);
    assert_eq!(
        log.bounds(0).await.unwrap(),
        PartitionBounds { first: 7, next: 10 }
    );
    assert_eq!(log.resolve(0, StartPosition::Sequence(2)).await.unwrap(), 7);
    log.enforce_retention(Retention {
        max_age: chrono::Duration::zero() - chrono::Duration::seconds(1),
        max_bytes_per_partition: 1 << 30,
    })
    .await
    .unwrap();
    assert_eq!(log.append(ev("d", "x")).await.unwrap().sequence_number, 10);
}

/// An imported event keeps its enqueued time (to the millisecond) and properties, takes the
/// log's next sequence number in its device's partition, reads back so, and positions by
/// enqueued time count its own time (a move imports into a new log, then appends follow).
pub async fn imports_keep_enqueued_times<K>(make: impl Fn(u32) -> (Arc<dyn EventLog>, K)) {
    let (log, _keep) = make(2);
    let then = chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
    let old = crate::Event {
        partition: 99,
        sequence_number: 12_345,
        enqueued_time: then,
        event: ev("dev1", "old"),
    };
    let imported = log.import(old.clone()).await.unwrap();
    let p = crate::eventlog::partition_for("dev1", 2);
    assert_eq!((imported.partition, imported.sequence_number), (p, 0));
    assert_eq!(imported.enqueued_time, then);
    let appended = log.append(ev("dev1", "new")).await.unwrap();
    assert_eq!(appended.sequence_number, 1);
    let read = log.read(p, 0, 2).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].enqueued_time, then);
    assert_eq!(read[0].event, old.event);
    assert!(read[1].enqueued_time > then);
    let at = |t| log.resolve(p, StartPosition::EnqueuedTime(t));
    assert_eq!(at(then).await.unwrap(), 0);
    let later = then + chrono::TimeDelta::milliseconds(1);
    assert_eq!(at(later).await.unwrap(), 1);
}

/// A batch is appended in order, each event to its device's partition, numbered after the
/// events before it, and returned as stored.
pub async fn batches_append_in_order<K>(make: impl Fn(u32) -> (Arc<dyn EventLog>, K)) {
    let (log, _keep) = make(4);
    let p = crate::eventlog::partition_for("dev1", 4);
    log.append(ev("dev1", "before")).await.unwrap();
    let batch: Vec<NewEvent> = (0..5).map(|i| ev("dev1", &format!("b{i}"))).collect();
    let appended = log.append_batch(batch.clone()).await.unwrap();
    assert_eq!(
        appended
            .iter()
            .map(|e| (e.partition, e.sequence_number))
            .collect::<Vec<_>>(),
        (1..6).map(|s| (p, s)).collect::<Vec<_>>()
    );
    let read = log.read(p, 0, 10).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        std::iter::once(ev("dev1", "before"))
            .chain(batch)
            .collect::<Vec<_>>()
    );
    assert_eq!(read[1..], appended[..]);
}

/// A batch whose append fails partway (`fail_at(guard, Some((partition, sequence)))` makes
/// the engine fail when it stores that event, `None` heals it) leaves none of its events
/// readable, and the numbering goes on as if it had never been tried: an atomic engine's.
pub async fn a_batch_failing_partway_appends_nothing<K>(
    make: impl Fn(u32) -> (Arc<dyn EventLog>, K),
    fail_at: impl Fn(&K, Option<(u32, u64)>),
) {
    let (log, keep) = make(2);
    assert!(log.atomic_batches());
    let p = crate::eventlog::partition_for("dev1", 2);
    for i in 0..2 {
        log.append(ev("dev1", &format!("single{i}"))).await.unwrap();
    }
    fail_at(&keep, Some((p, 4)));
    let batch: Vec<NewEvent> = (0..4).map(|i| ev("dev1", &format!("b{i}"))).collect();
    assert!(log.append_batch(batch.clone()).await.is_err());
    let read = log.read(p, 0, 10).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.sequence_number).collect::<Vec<_>>(),
        [0, 1],
        "nothing of the failed batch is readable"
    );
    assert_eq!(
        log.bounds(p).await.unwrap(),
        PartitionBounds { first: 0, next: 2 }
    );
    fail_at(&keep, None);
    let appended = log.append_batch(batch).await.unwrap();
    assert_eq!(
        appended
            .iter()
            .map(|e| e.sequence_number)
            .collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
    assert_eq!(log.read(p, 0, 10).await.unwrap().len(), 6);
}

//! Exclusive (epoch) readers of a partition, on two nodes of one hub sharing a store and a
//! bus fabric, as the nodes of a deployment share PostgreSQL and NATS.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};

/// Two nodes of one hub.
async fn two_nodes() -> (Hub, Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let events = Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap());
    let a = LocalBus::with_node("a");
    let b = a.join("b");
    let open = |bus: LocalBus| {
        Hub::open(
            Backends {
                store: store.clone(),
                events: events.clone(),
                bus: Arc::new(bus),
            },
            vec!["myhub.example".into()],
        )
    };
    let first = open(a).await.unwrap();
    let second = open(b).await.unwrap();
    (first, second, dir)
}

/// Bounds a wait that must end.
async fn soon<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn a_higher_epoch_on_another_node_takes_over_and_a_lower_one_is_refused() {
    let (a, b, _dir) = two_nodes().await;
    let mut first = a
        .hold_partition("eh", "$Default", 0, Some(1))
        .await
        .unwrap()
        .unwrap();
    // Without epoch: refused on either node while an epoch reader holds.
    assert!(
        b.hold_partition("eh", "$default", 0, None)
            .await
            .unwrap()
            .is_err()
    );
    assert!(
        a.hold_partition("eh", "$Default", 0, None)
            .await
            .unwrap()
            .is_err()
    );
    // Another partition and another group are free.
    b.hold_partition("eh", "$Default", 1, None)
        .await
        .unwrap()
        .unwrap();
    b.hold_partition("eh", "other", 0, None)
        .await
        .unwrap()
        .unwrap();

    let second = tokio::spawn(async move {
        let hold = b
            .hold_partition("EH", "$Default", 0, Some(2))
            .await
            .unwrap();
        (b, hold)
    });
    let lost = soon(first.lost()).await;
    assert!(lost.0.contains("epoch 2"), "{lost}");
    let (b, second) = soon(second).await.unwrap();
    let mut second = second.unwrap();

    // A lower epoch is refused by the holder, which stays.
    let asking = a.clone();
    let lower = tokio::spawn(async move {
        asking
            .hold_partition("eh", "$Default", 0, Some(1))
            .await
            .unwrap()
    });
    let refused = tokio::select! {
        refused = lower => refused.unwrap().unwrap_err(),
        lost = second.lost() => panic!("the holder yielded to a lower epoch: {lost}"),
    };
    assert!(refused.0.contains("higher epoch 2"), "{refused}");

    // An equal epoch takes over, as on Event Hubs.
    let asking = a.clone();
    let equal = tokio::spawn(async move {
        asking
            .hold_partition("eh", "$Default", 0, Some(2))
            .await
            .unwrap()
    });
    soon(second.lost()).await;
    let third = soon(equal).await.unwrap().unwrap();

    // Once the holder is gone the partition is free again, for any reader.
    third.release().await;
    b.hold_partition("eh", "$Default", 0, None)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_epoch_reader_disconnects_readers_without_epoch_on_every_node() {
    let (a, b, _dir) = two_nodes().await;
    let mut here = a
        .hold_partition("eh", "$Default", 3, None)
        .await
        .unwrap()
        .unwrap();
    let mut there = b
        .hold_partition("eh", "$Default", 3, None)
        .await
        .unwrap()
        .unwrap();
    let _epoch = a
        .hold_partition("eh", "$Default", 3, Some(0))
        .await
        .unwrap()
        .unwrap();
    for lost in [soon(here.lost()).await, soon(there.lost()).await] {
        assert!(lost.0.contains("without epoch"), "{lost}");
    }
}

#[tokio::test]
async fn readers_racing_for_a_free_partition_leave_the_highest_epoch_holding() {
    let (a, b, _dir) = two_nodes().await;
    for round in 0..10 {
        let partition = round % 4;
        let (low, high) = tokio::join!(
            a.hold_partition("eh", "$Default", partition, Some(1)),
            b.hold_partition("eh", "$Default", partition, Some(2)),
        );
        let high = high.unwrap().expect("the higher epoch always holds");
        match low.unwrap() {
            // Second: refused by the holder.
            Err(refused) => assert!(refused.0.contains("higher epoch 2"), "{refused}"),
            // First: displaced by it.
            Ok(mut low) => {
                let lost = soon(low.lost()).await;
                assert!(lost.0.contains("epoch 2"), "{lost}");
            }
        }
        let later = a
            .hold_partition("eh", "$Default", partition, Some(1))
            .await
            .unwrap();
        assert!(later.unwrap_err().0.contains("higher epoch 2"));
        high.release().await;
    }
}

#[tokio::test]
async fn readers_racing_with_one_epoch_leave_exactly_one_holding() {
    let (a, b, _dir) = two_nodes().await;
    for round in 0..10 {
        let partition = round % 4;
        let (first, second) = tokio::join!(
            a.hold_partition("eh", "$Default", partition, Some(3)),
            b.hold_partition("eh", "$Default", partition, Some(3)),
        );
        // An equal epoch displaces: both are granted, one after the other, and the earlier
        // one is told.
        let (mut first, mut second) = (first.unwrap().unwrap(), second.unwrap().unwrap());
        let mut holder = tokio::select! {
            lost = first.lost() => {
                assert!(lost.0.contains("epoch 3"), "{lost}");
                second
            }
            lost = second.lost() => {
                assert!(lost.0.contains("epoch 3"), "{lost}");
                first
            }
            () = tokio::time::sleep(Duration::from_secs(5)) => panic!("neither was displaced"),
        };
        // The other one still holds: readers without epoch are refused, and the next equal
        // epoch displaces it in turn.
        assert!(
            b.hold_partition("eh", "$Default", partition, None)
                .await
                .unwrap()
                .is_err()
        );
        let next = a
            .hold_partition("eh", "$Default", partition, Some(3))
            .await
            .unwrap()
            .unwrap();
        soon(holder.lost()).await;
        next.release().await;
    }
}

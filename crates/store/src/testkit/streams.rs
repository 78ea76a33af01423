//! Cases of the named event streams port and of the routing document.

use std::sync::Arc;

use crate::{EventStreams, NewEvent, Store, WriteConflict};

fn ev(device: &str) -> NewEvent {
    NewEvent {
        device_id: device.into(),
        module_id: None,
        system_properties: [("message-id".to_owned(), "m1".to_owned())].into(),
        application_properties: [("k".to_owned(), Some("v".to_owned()))].into(),
        body: b"{}".to_vec(),
    }
}

/// A stream is created once with its partition count, holds its own events and consumer
/// groups apart from other streams, is listed, reopened as it was, and deleted with its events.
pub async fn streams_are_separate_logs_created_once(streams: Arc<dyn EventStreams>) {
    assert!(streams.stream("hot").await.unwrap().is_none());
    let hot = streams.open_stream("hot", 2).await.unwrap();
    assert_eq!(hot.partition_count(), 2);
    let cold = streams.open_stream("cold", 3).await.unwrap();
    let e = hot.append(ev("d1")).await.unwrap();
    assert_eq!(e.sequence_number, 0);
    assert!(hot.create_consumer_group("g").await.unwrap());
    let again = streams.open_stream("hot", 8).await.unwrap();
    assert_eq!(
        again.partition_count(),
        2,
        "an existing stream keeps its partitions"
    );
    assert_eq!(again.bounds(e.partition).await.unwrap().next, 1);
    assert_eq!(
        again.consumer_groups().await.unwrap(),
        vec!["$Default".to_owned(), "g".to_owned()]
    );
    for p in 0..3 {
        assert_eq!(
            cold.bounds(p).await.unwrap().next,
            0,
            "streams do not share events"
        );
    }
    assert_eq!(
        streams.list_streams().await.unwrap(),
        vec!["cold".to_owned(), "hot".to_owned()]
    );
    assert!(streams.delete_stream("hot").await.unwrap());
    assert!(!streams.delete_stream("hot").await.unwrap());
    assert!(streams.stream("hot").await.unwrap().is_none());
    let fresh = streams.open_stream("hot", 1).await.unwrap();
    assert_eq!(
        fresh.partition_count(),
        1,
        "a deleted stream leaves nothing behind"
    );
    assert_eq!(fresh.bounds(0).await.unwrap().next, 0);
    assert!(
        streams.open_stream("a/b", 1).await.is_err(),
        "names are checked"
    );
}

/// The routing document is written compare-and-swap and read back as written.
pub async fn routing_is_written_compare_and_swap(
    store: Arc<dyn Store>,
    _clock: Arc<crate::ManualClock>,
) {
    assert!(store.routing().await.unwrap().is_none());
    assert!(matches!(
        store
            .put_routing(serde_json::json!({}), Some("x".into()))
            .await
            .unwrap(),
        Err(WriteConflict::NotFound)
    ));
    let first = store
        .put_routing(serde_json::json!({"routes": []}), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.routing().await.unwrap().unwrap(), first);
    assert!(matches!(
        store
            .put_routing(serde_json::json!({"routes": [1]}), Some("stale".into()))
            .await
            .unwrap(),
        Err(WriteConflict::EtagMismatch)
    ));
    let second = store
        .put_routing(serde_json::json!({"routes": [2]}), Some(first.etag.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(second.etag, first.etag);
    let third = store
        .put_routing(serde_json::json!({"routes": [3]}), Some("*".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.routing().await.unwrap().unwrap(), third);
}

/// The hub's and the DPS instance's network rules are two documents, each written
/// compare-and-swap.
pub async fn network_rules_are_kept_per_scope(
    store: Arc<dyn Store>,
    _clock: Arc<crate::ManualClock>,
) {
    use crate::NetworkScope;
    assert!(
        store
            .network_rules(NetworkScope::Hub)
            .await
            .unwrap()
            .is_none()
    );
    let hub = store
        .put_network_rules(NetworkScope::Hub, serde_json::json!({"a": 1}), None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .network_rules(NetworkScope::Dps)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store
            .put_network_rules(
                NetworkScope::Dps,
                serde_json::json!({}),
                Some(hub.etag.clone())
            )
            .await
            .unwrap(),
        Err(WriteConflict::NotFound)
    ));
    assert!(matches!(
        store
            .put_network_rules(
                NetworkScope::Hub,
                serde_json::json!({}),
                Some("stale".into())
            )
            .await
            .unwrap(),
        Err(WriteConflict::EtagMismatch)
    ));
    let dps = store
        .put_network_rules(
            NetworkScope::Dps,
            serde_json::json!({"b": 2}),
            Some("*".into()),
        )
        .await
        .unwrap()
        .unwrap();
    assert_ne!(dps.etag, hub.etag);
    assert_eq!(
        store
            .network_rules(NetworkScope::Hub)
            .await
            .unwrap()
            .unwrap(),
        hub
    );
    assert_eq!(
        store
            .network_rules(NetworkScope::Dps)
            .await
            .unwrap()
            .unwrap()
            .doc,
        serde_json::json!({"b": 2})
    );
}

//! Cases of the configurations port.

use std::sync::Arc;

use serde_json::json;

use crate::{ConfigurationWrite, Store, WriteConflict};

/// Configurations are created once, replaced and deleted compare-and-swap, and listed in id
/// order; an etag is never reused.
pub async fn configurations_are_written_compare_and_swap(
    store: Arc<dyn Store>,
    _clock: Arc<crate::ManualClock>,
) {
    assert!(store.get_configuration("b").await.unwrap().is_none());
    let create = |id: &str, n: i64| ConfigurationWrite::Create {
        id: id.into(),
        doc: json!({"id": id, "priority": n}),
    };
    let b = store
        .write_configuration(create("b", 1))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        store.write_configuration(create("b", 2)).await.unwrap(),
        Err(WriteConflict::AlreadyExists)
    );
    store
        .write_configuration(create("a", 3))
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<_> = store
        .list_configurations()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    let replace = |tag: &str| ConfigurationWrite::Replace {
        id: "b".into(),
        doc: json!({"id": "b", "priority": 9}),
        if_match: tag.into(),
    };
    assert_eq!(
        store.write_configuration(replace("stale")).await.unwrap(),
        Err(WriteConflict::EtagMismatch)
    );
    let b2 = store
        .write_configuration(replace(&b.etag))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_ne!(b2.etag, b.etag);
    assert_eq!(
        store.get_configuration("b").await.unwrap(),
        Some(b2.clone())
    );
    let delete = |id: &str, tag: &str| ConfigurationWrite::Delete {
        id: id.into(),
        if_match: tag.into(),
    };
    assert_eq!(
        store
            .write_configuration(delete("b", &b.etag))
            .await
            .unwrap(),
        Err(WriteConflict::EtagMismatch)
    );
    assert_eq!(
        store.write_configuration(delete("zz", "*")).await.unwrap(),
        Err(WriteConflict::NotFound)
    );
    assert_eq!(
        store.write_configuration(delete("b", "*")).await.unwrap(),
        Ok(None)
    );
    assert!(store.get_configuration("b").await.unwrap().is_none());
    // Created again, it gets an etag never seen before.
    let b3 = store
        .write_configuration(create("b", 1))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(b3.etag != b.etag && b3.etag != b2.etag);
}

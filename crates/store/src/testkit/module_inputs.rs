//! Cases of the module input queue port.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, Utc};

use super::create_device;
use super::modules::module;
use crate::{DeviceWrite, InputMessage, ManualClock, ModuleWrite, Store};

/// A message for input `input` with body `body`.
pub fn input(input: &str, body: &str) -> InputMessage {
    InputMessage {
        input: input.into(),
        system: BTreeMap::from([("message-id".to_owned(), format!("m-{body}"))]),
        application: BTreeMap::from([
            ("k".to_owned(), Some("v".to_owned())),
            ("flag".to_owned(), None),
        ]),
        body: body.as_bytes().to_vec(),
    }
}

/// A queue needs its module; messages come back whole, oldest first, after a sequence number,
/// at most `max`; removal is once; expired messages are not pending and are expired away.
pub async fn module_input_queues_keep_order_until_removed_or_expired(
    store: Arc<dyn Store>,
    _clock: Arc<ManualClock>,
) {
    let now = Utc::now();
    let later = now + Duration::seconds(60);
    assert_eq!(
        store
            .input_enqueue("d", "m", &input("i", "x"), later)
            .await
            .unwrap(),
        None,
        "no device, no module"
    );
    create_device(&store, "d").await;
    assert_eq!(
        store
            .input_enqueue("d", "m", &input("i", "x"), later)
            .await
            .unwrap(),
        None
    );
    store
        .write_module(ModuleWrite::Create(module("d", "m")))
        .await
        .unwrap()
        .unwrap();
    store
        .write_module(ModuleWrite::Create(module("d", "other")))
        .await
        .unwrap()
        .unwrap();
    let a = store
        .input_enqueue("d", "m", &input("i1", "a"), later)
        .await
        .unwrap()
        .unwrap();
    let soon = now + Duration::seconds(1);
    let b = store
        .input_enqueue("d", "m", &input("i2", "b"), soon)
        .await
        .unwrap()
        .unwrap();
    let c = store
        .input_enqueue("d", "m", &input("i1", "c"), later)
        .await
        .unwrap()
        .unwrap();
    let o = store
        .input_enqueue("d", "other", &input("i1", "o"), later)
        .await
        .unwrap()
        .unwrap();
    assert!(a < b && b < c && c < o);
    let all = store.input_pending("d", "m", 0, 10, now).await.unwrap();
    let seqs: Vec<u64> = all.iter().map(|q| q.sequence_number).collect();
    assert_eq!(seqs, vec![a, b, c]);
    assert_eq!(all[0].message, input("i1", "a"), "properties and body kept");
    assert_eq!(
        all[0].expiry_time.timestamp_millis(),
        later.timestamp_millis()
    );
    let after_a = store.input_pending("d", "m", a, 1, now).await.unwrap();
    assert_eq!(after_a.len(), 1);
    assert_eq!(after_a[0].sequence_number, b);
    // Past `b`'s expiry it is no longer pending, and expiring removes it alone.
    let past = now + Duration::seconds(2);
    let live = store.input_pending("d", "m", 0, 10, past).await.unwrap();
    assert_eq!(
        live.iter().map(|q| q.sequence_number).collect::<Vec<_>>(),
        vec![a, c]
    );
    assert_eq!(store.input_expire(past).await.unwrap(), 1);
    assert!(store.input_remove("d", "m", a).await.unwrap());
    assert!(
        !store.input_remove("d", "m", a).await.unwrap(),
        "removed once"
    );
    assert!(
        !store.input_remove("d", "other", c).await.unwrap(),
        "another module's"
    );
    let left = store.input_pending("d", "m", 0, 10, now).await.unwrap();
    assert_eq!(
        left.iter().map(|q| q.sequence_number).collect::<Vec<_>>(),
        vec![c]
    );
    // A queue goes with its module, and with its device.
    store
        .write_module(ModuleWrite::Delete {
            device_id: "d".into(),
            module_id: "m".into(),
            if_match: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .input_pending("d", "m", 0, 10, now)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .write_devices(vec![DeviceWrite::Delete {
            id: "d".into(),
            if_match: None,
        }])
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .input_pending("d", "other", 0, 10, now)
            .await
            .unwrap()
            .is_empty()
    );
}

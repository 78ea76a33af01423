//! Cases of the cloud-to-device queue port: depth, locks, delivery counts, settling, which
//! removals write feedback, and feedback batches.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::{DeviceState, NODE, OTHER_NODE, create_device, rules};
use crate::{AckMode, C2dMessage, C2dRefusal, C2dSettle, Clock as _, FeedbackStatus, ManualClock};

/// A message for `device_id`, with no lock, expiring at `expiry`.
pub fn message(device_id: &str, id: &str, ack: AckMode, expiry: DateTime<Utc>) -> C2dMessage {
    C2dMessage {
        device_id: device_id.into(),
        device_generation_id: "g1".into(),
        message_id: id.into(),
        correlation_id: Some(format!("c-{id}")),
        user_id: None,
        to: format!("/devices/{device_id}/messages/deviceBound"),
        content_type: None,
        content_encoding: None,
        expiry_time: expiry,
        ack,
        properties: vec![("z".into(), "1".into()), ("a".into(), "2".into())],
        body: id.as_bytes().to_vec(),
        enqueued_time: Utc::now(),
        sequence_number: 0,
        delivery_count: 0,
        lock_token: None,
        locked_until: None,
        lock_node: None,
    }
}

/// Offers a message to `device`'s queue, expiring `ttl` seconds from now.
async fn offer(
    store: &Arc<dyn DeviceState>,
    clock: &ManualClock,
    device: &str,
    id: &str,
    ack: AckMode,
    ttl: i64,
) -> Result<C2dMessage, C2dRefusal> {
    let now = clock.now();
    let message = message(device, id, ack, now + TimeDelta::seconds(ttl));
    store.c2d_enqueue(message, rules(), now).await.unwrap()
}

/// Queues a message for the device `d`.
async fn send(
    store: &Arc<dyn DeviceState>,
    clock: &ManualClock,
    id: &str,
    ack: AckMode,
    ttl: i64,
) -> C2dMessage {
    offer(store, clock, "d", id, ack, ttl).await.unwrap()
}

/// Asserts that the feedback waiting is exactly `expected` (message id, status), in order.
async fn assert_feedback(
    store: &Arc<dyn DeviceState>,
    clock: &ManualClock,
    expected: &[(&str, FeedbackStatus)],
) {
    let feedback = drain_feedback(store, clock).await;
    let expected: Vec<_> = expected
        .iter()
        .map(|(id, s)| ((*id).to_owned(), *s))
        .collect();
    assert_eq!(feedback, expected);
}

/// The original message ids of a feedback batch.
fn batch_ids(batch: &crate::FeedbackBatch) -> Vec<&str> {
    batch
        .records
        .iter()
        .map(|r| r.original_message_id.as_str())
        .collect()
}

/// Locks the device's next message for `node` (see [`crate::C2dStore::c2d_lock_next`]).
async fn lock_next(
    store: &Arc<dyn DeviceState>,
    device: &str,
    node: &str,
    now: DateTime<Utc>,
) -> Option<C2dMessage> {
    store
        .c2d_lock_next(device, node, rules(), now)
        .await
        .unwrap()
}

/// Settles the message locked under `token` (see [`crate::C2dStore::c2d_settle`]).
async fn settle_lock(
    store: &Arc<dyn DeviceState>,
    device: &str,
    token: &str,
    how: C2dSettle,
    now: DateTime<Utc>,
) -> Option<C2dMessage> {
    store
        .c2d_settle(device, token, how, rules(), now)
        .await
        .unwrap()
}

/// Every feedback record waiting, as (message id, status), completing the batches.
async fn drain_feedback(
    store: &Arc<dyn DeviceState>,
    clock: &ManualClock,
) -> Vec<(String, FeedbackStatus)> {
    let mut all = Vec::new();
    while let Some(batch) = store.feedback_lock(rules(), clock.now()).await.unwrap() {
        all.extend(
            batch
                .records
                .iter()
                .map(|r| (r.original_message_id.clone(), r.status_code)),
        );
        assert!(
            store
                .feedback_settle(&batch.lock_token, true)
                .await
                .unwrap()
        );
    }
    all
}

/// A message needs an existing device and a queue with fewer than `max_depth` live messages;
/// expired messages leave room; the stored message has a sequence number that grows.
pub async fn enqueue_needs_the_device_and_room_in_its_queue(
    store: Arc<dyn DeviceState>,
    clock: Arc<ManualClock>,
) {
    let refused = offer(&store, &clock, "d", "m0", AckMode::None, 60).await;
    assert_eq!(refused, Err(C2dRefusal::DeviceNotFound));
    create_device(&store, "d").await;
    let first = send(&store, &clock, "m1", AckMode::None, 10).await;
    let second = send(&store, &clock, "m2", AckMode::None, 60).await;
    assert!(second.sequence_number > first.sequence_number);
    assert_eq!(second.delivery_count, 0);
    assert_eq!(second.lock_token, None);
    send(&store, &clock, "m3", AckMode::None, 60).await;
    let full = offer(&store, &clock, "d", "m4", AckMode::None, 60).await;
    assert_eq!(full, Err(C2dRefusal::QueueFull));
    clock.advance(TimeDelta::seconds(10));
    send(&store, &clock, "m5", AckMode::None, 60).await;
    assert_eq!(
        store
            .get_device("d")
            .await
            .unwrap()
            .unwrap()
            .cloud_to_device_message_count,
        3
    );
}

/// The oldest visible message is locked under a new token and its delivery counted; a locked
/// message is not delivered again while its lock holds; settling needs the device's token.
pub async fn messages_are_locked_oldest_first_once_at_a_time(
    store: Arc<dyn DeviceState>,
    clock: Arc<ManualClock>,
) {
    create_device(&store, "d").await;
    create_device(&store, "other").await;
    let first = send(&store, &clock, "m1", AckMode::None, 60).await;
    send(&store, &clock, "m2", AckMode::None, 60).await;
    let now = clock.now();
    let got = lock_next(&store, "d", NODE, now).await.unwrap();
    assert_eq!(got.message_id, "m1");
    assert_eq!(got.sequence_number, first.sequence_number);
    assert_eq!(got.body, b"m1");
    assert_eq!(got.properties, first.properties);
    assert_eq!(got.correlation_id.as_deref(), Some("c-m1"));
    assert_eq!(got.delivery_count, 1);
    assert_eq!(got.locked_until, Some(now + rules().lock_duration));
    let token = got.lock_token.clone().unwrap();
    let next = lock_next(&store, "d", NODE, now).await.unwrap();
    assert_eq!(next.message_id, "m2");
    assert_ne!(next.lock_token.as_deref(), Some(token.as_str()));
    assert_eq!(lock_next(&store, "d", NODE, now).await, None);
    assert_eq!(lock_next(&store, "other", NODE, now).await, None);
    let wrong_device = settle_lock(&store, "other", &token, C2dSettle::Complete, now).await;
    assert_eq!(wrong_device, None);
    let done = settle_lock(&store, "d", &token, C2dSettle::Complete, now).await;
    assert_eq!(done.map(|m| m.message_id), Some("m1".to_owned()));
    let twice = settle_lock(&store, "d", &token, C2dSettle::Complete, now).await;
    assert_eq!(twice, None, "a settled message is gone");
}

/// A message whose lock ran out is visible again, relocked under a new token with its
/// delivery counted; the old token no longer settles it. Abandoning unlocks at once but keeps
/// the count.
pub async fn an_expired_lock_redelivers_and_counts_the_delivery(
    store: Arc<dyn DeviceState>,
    clock: Arc<ManualClock>,
) {
    create_device(&store, "d").await;
    send(&store, &clock, "m1", AckMode::None, 3600).await;
    let first = lock_next(&store, "d", NODE, clock.now()).await.unwrap();
    clock.advance(rules().lock_duration);
    let second = lock_next(&store, "d", NODE, clock.now()).await.unwrap();
    assert_eq!(second.message_id, "m1");
    assert_eq!(second.delivery_count, 2);
    assert_ne!(second.lock_token, first.lock_token);
    let stale = settle_lock(
        &store,
        "d",
        first.lock_token.as_deref().unwrap(),
        C2dSettle::Complete,
        clock.now(),
    )
    .await;
    assert_eq!(stale, None);
    let abandoned = settle_lock(
        &store,
        "d",
        second.lock_token.as_deref().unwrap(),
        C2dSettle::Abandon,
        clock.now(),
    )
    .await;
    assert_eq!(abandoned.map(|m| m.delivery_count), Some(2));
    assert_eq!(
        store
            .get_device("d")
            .await
            .unwrap()
            .unwrap()
            .cloud_to_device_message_count,
        1,
        "an abandoned message stays in its queue"
    );
}

/// Complete writes `Success`, reject `Rejected`, abandon nothing; each only when the
/// message's `ack` asks for it.
pub async fn settling_writes_the_feedback_the_ack_asks_for(
    store: Arc<dyn DeviceState>,
    clock: Arc<ManualClock>,
) {
    create_device(&store, "d").await;
    let cases = [
        ("full-ok", AckMode::Full, C2dSettle::Complete),
        ("positive-ok", AckMode::Positive, C2dSettle::Complete),
        ("negative-ok", AckMode::Negative, C2dSettle::Complete),
        ("negative-no", AckMode::Negative, C2dSettle::Reject),
        ("positive-no", AckMode::Positive, C2dSettle::Reject),
        ("full-later", AckMode::Full, C2dSettle::Abandon),
    ];
    for (id, ack, settle) in cases {
        send(&store, &clock, id, ack, 3600).await;
        let m = lock_next(&store, "d", NODE, clock.now()).await.unwrap();
        assert_eq!(m.message_id, id);
        settle_lock(
            &store,
            "d",
            m.lock_token.as_deref().unwrap(),
            settle,
            clock.now(),
        )
        .await
        .unwrap();
        if settle == C2dSettle::Abandon {
            let again = lock_next(&store, "d", NODE, clock.now()).await.unwrap();
            assert_eq!(
                again.message_id, id,
                "an abandoned message is visible again"
            );
            settle_lock(
                &store,
                "d",
                again.lock_token.as_deref().unwrap(),
                C2dSettle::Complete,
                clock.now(),
            )
            .await
            .unwrap();
        }
    }
    assert_feedback(
        &store,
        &clock,
        &[
            ("full-ok", FeedbackStatus::Success),
            ("positive-ok", FeedbackStatus::Success),
            ("negative-no", FeedbackStatus::Rejected),
            ("full-later", FeedbackStatus::Success),
        ],
    )
    .await;
}

/// Expired messages leave as `Expired` (on the next lock or the hub-wide sweep); a message
/// locked `max_delivery_count` times leaves as `DeliveryCountExceeded` once visible again.
pub async fn worn_out_and_expired_messages_are_dead_lettered(
    store: Arc<dyn DeviceState>,
    clock: Arc<ManualClock>,
) {
    create_device(&store, "d").await;
    create_device(&store, "e").await;
    send(&store, &clock, "short", AckMode::Negative, 5).await;
    send(&store, &clock, "worn", AckMode::Full, 3600).await;
    offer(&store, &clock, "e", "elsewhere", AckMode::Full, 5)
        .await
        .unwrap();
    let first = lock_next(&store, "d", NODE, clock.now()).await.unwrap();
    assert_eq!(first.message_id, "short");
    clock.advance(TimeDelta::seconds(5));
    for delivery in 1..=rules().max_delivery_count {
        let m = lock_next(&store, "d", NODE, clock.now()).await.unwrap();
        assert_eq!(
            (m.message_id.as_str(), m.delivery_count),
            ("worn", delivery)
        );
        settle_lock(
            &store,
            "d",
            m.lock_token.as_deref().unwrap(),
            C2dSettle::Abandon,
            clock.now(),
        )
        .await
        .unwrap();
    }
    assert_eq!(lock_next(&store, "d", NODE, clock.now()).await, None);
    assert_eq!(
        store.c2d_expire(rules(), clock.now()).await.unwrap(),
        1,
        "only `e`'s is left"
    );
    assert_eq!(store.c2d_expire(rules(), clock.now()).await.unwrap(), 0);
    assert_feedback(
        &store,
        &clock,
        &[
            ("short", FeedbackStatus::Expired),
            ("worn", FeedbackStatus::DeliveryCountExceeded),
            ("elsewhere", FeedbackStatus::Expired),
        ],
    )
    .await;
}

/// A purge removes every message, locked or not (`Purged`, or `Expired` for those already
/// expired), and counts the purged ones.
pub async fn purge_empties_the_queue_with_feedback(
    store: Arc<dyn DeviceState>,
    clock: Arc<ManualClock>,
) {
    create_device(&store, "d").await;
    send(&store, &clock, "old", AckMode::Full, 5).await;
    send(&store, &clock, "locked", AckMode::Negative, 3600).await;
    send(&store, &clock, "quiet", AckMode::Positive, 3600).await;
    clock.advance(TimeDelta::seconds(5));
    lock_next(&store, "d", NODE, clock.now()).await.unwrap();
    assert_eq!(store.c2d_purge("d", rules(), clock.now()).await.unwrap(), 2);
    assert_eq!(lock_next(&store, "d", NODE, clock.now()).await, None);
    assert_eq!(store.c2d_purge("d", rules(), clock.now()).await.unwrap(), 0);
    assert_feedback(
        &store,
        &clock,
        &[
            ("old", FeedbackStatus::Expired),
            ("locked", FeedbackStatus::Purged),
        ],
    )
    .await;
}

/// A lock records the node that took it; releasing a node's locks makes its messages visible
/// again, their deliveries still counted, and leaves other nodes' locks alone.
pub async fn released_locks_make_messages_visible(
    store: Arc<dyn DeviceState>,
    clock: Arc<ManualClock>,
) {
    create_device(&store, "d").await;
    create_device(&store, "e").await;
    send(&store, &clock, "m1", AckMode::None, 3600).await;
    let now = clock.now();
    offer(&store, &clock, "e", "theirs", AckMode::None, 60)
        .await
        .unwrap();
    let mine = lock_next(&store, "d", NODE, now).await.unwrap();
    assert_eq!(mine.lock_node.as_deref(), Some(NODE));
    let theirs = lock_next(&store, "e", OTHER_NODE, now).await.unwrap();
    assert_eq!(theirs.lock_node.as_deref(), Some(OTHER_NODE));
    assert_eq!(store.c2d_release_locks(NODE).await.unwrap(), 1);
    let again = lock_next(&store, "d", NODE, now).await.unwrap();
    assert_eq!(again.delivery_count, 2);
    assert_eq!(
        lock_next(&store, "e", NODE, now).await,
        None,
        "the other node's delivery stays locked"
    );
    let settled = settle_lock(
        &store,
        "e",
        theirs.lock_token.as_deref().unwrap(),
        C2dSettle::Complete,
        now,
    )
    .await;
    assert!(settled.is_some(), "and its connection can still settle it");
    assert_eq!(store.c2d_release_locks(NODE).await.unwrap(), 1);
    assert_eq!(store.c2d_release_locks(NODE).await.unwrap(), 0);
    // m1, delivered twice, is dead-lettered; m2 is locked and abandoned.
    send(&store, &clock, "m2", AckMode::None, 3600).await;
    let abandoned = lock_next(&store, "d", OTHER_NODE, now).await.unwrap();
    settle_lock(
        &store,
        "d",
        abandoned.lock_token.as_deref().unwrap(),
        C2dSettle::Abandon,
        now,
    )
    .await
    .unwrap();
    assert_eq!(
        store.c2d_release_locks(OTHER_NODE).await.unwrap(),
        0,
        "an abandoned message holds no lock"
    );
}

/// Feedback comes in batches of at most `feedback_batch`, oldest first, under one lock: a
/// completed batch is gone, an abandoned or lock-expired one comes back with its delivery
/// counted; feedback older than its time to live is dropped.
pub async fn feedback_is_received_in_locked_batches(
    store: Arc<dyn DeviceState>,
    clock: Arc<ManualClock>,
) {
    create_device(&store, "d").await;
    for id in ["f1", "f2", "f3"] {
        send(&store, &clock, id, AckMode::Full, 3600).await;
        let m = lock_next(&store, "d", NODE, clock.now()).await.unwrap();
        settle_lock(
            &store,
            "d",
            m.lock_token.as_deref().unwrap(),
            C2dSettle::Complete,
            clock.now(),
        )
        .await
        .unwrap();
        clock.advance(TimeDelta::seconds(1));
    }
    let first = store
        .feedback_lock(rules(), clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch_ids(&first), ["f1", "f2"]);
    assert_eq!(first.delivery_count, 1);
    assert_eq!(first.records[0].device_id, "d");
    assert_eq!(first.records[0].device_generation_id, "g1");
    assert_eq!(first.records[0].status_code, FeedbackStatus::Success);
    let second = store
        .feedback_lock(rules(), clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch_ids(&second), ["f3"]);
    assert!(first.enqueued_time < second.enqueued_time);
    assert_eq!(
        store.feedback_lock(rules(), clock.now()).await.unwrap(),
        None
    );
    assert!(
        store
            .feedback_settle(&second.lock_token, false)
            .await
            .unwrap()
    );
    let again = store
        .feedback_lock(rules(), clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.records, second.records);
    assert_eq!(again.delivery_count, 2);
    clock.advance(rules().feedback_lock_duration);
    let relocked = store
        .feedback_lock(rules(), clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        relocked.records, first.records,
        "a batch whose lock ran out comes back"
    );
    assert!(
        store
            .feedback_settle(&relocked.lock_token, true)
            .await
            .unwrap()
    );
    assert!(
        !store
            .feedback_settle(&relocked.lock_token, true)
            .await
            .unwrap()
    );
    assert!(
        !store
            .feedback_settle(&first.lock_token, true)
            .await
            .unwrap()
    );
    clock.advance(rules().feedback_ttl);
    assert_eq!(
        store.feedback_lock(rules(), clock.now()).await.unwrap(),
        None,
        "expired feedback is dropped"
    );
}

/// `c2d_queue` reads a device's whole queue as stored (locks included), oldest first;
/// `c2d_import` appends a message as it was (ids, times, properties, delivery count kept, no
/// lock, past a full queue) to an existing device only.
pub async fn queues_read_back_and_import_as_they_were(
    store: Arc<dyn DeviceState>,
    clock: Arc<ManualClock>,
) {
    create_device(&store, "d").await;
    create_device(&store, "e").await;
    let now = clock.now();
    send(&store, &clock, "m1", AckMode::Full, 3600).await;
    send(&store, &clock, "m2", AckMode::None, 3600).await;
    let locked = lock_next(&store, "d", NODE, now).await.unwrap();
    let queue = store.c2d_queue("d").await.unwrap();
    let ids: Vec<_> = queue.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert_eq!(queue[0].lock_token, locked.lock_token);
    assert_eq!(queue[0].delivery_count, 1);
    assert!(store.c2d_queue("nobody").await.unwrap().is_empty());

    let mut old = queue[0].clone();
    old.device_id = "e".into();
    let imported = store.c2d_import(old.clone()).await.unwrap().unwrap();
    assert_eq!(imported.delivery_count, 1);
    assert_eq!(imported.lock_token, None);
    let read = store.c2d_queue("e").await.unwrap();
    assert_eq!(read.len(), 1);
    let mut expected = old.clone();
    crate::c2d_rules::unlock(&mut expected);
    expected.sequence_number = read[0].sequence_number;
    assert_eq!(read[0], expected, "kept as it was, unlocked");
    let again = lock_next(&store, "e", NODE, now).await.unwrap();
    assert_eq!(again.message_id, "m1");
    assert_eq!(again.delivery_count, 2, "its deliveries still count");
    // Past the depth rule, which applies to new messages only.
    for i in 0..rules().max_depth + 1 {
        let mut m = old.clone();
        m.message_id = format!("x{i}");
        assert!(store.c2d_import(m).await.unwrap().is_ok());
    }
    old.device_id = "nobody".into();
    assert_eq!(
        store.c2d_import(old).await.unwrap(),
        Err(C2dRefusal::DeviceNotFound)
    );
}

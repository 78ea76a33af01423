//! Cases of the file upload notification port: order, locks, delivery counts, settling,
//! expiry.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::{
    Clock as _, FileNotification, FileNotificationRules, FileNotificationStore,
    LockedFileNotification, ManualClock,
};

/// The rules the cases use: a notification is received at most twice, locked for a minute.
pub fn rules() -> FileNotificationRules {
    FileNotificationRules {
        lock_duration: TimeDelta::seconds(60),
        max_delivery_count: 2,
    }
}

/// How long the cases' notifications wait to be received.
const TTL: TimeDelta = TimeDelta::hours(1);

/// The notification of device `d1`'s upload of `blob`, enqueued at `at`.
pub fn notification(blob: &str, at: DateTime<Utc>) -> FileNotification {
    FileNotification {
        device_id: "d1".into(),
        blob_uri: format!("https://acct.blob.core.windows.net/c/{blob}"),
        blob_name: blob.into(),
        last_updated_time: Some(at),
        blob_size_in_bytes: Some(5),
        enqueued_time_utc: at,
    }
}

/// Queues the notification of `blob`, now by `clock`, expiring an hour later.
async fn enqueue(store: &Arc<dyn FileNotificationStore>, clock: &ManualClock, blob: &str) {
    let now = clock.now();
    store
        .file_notification_enqueue(notification(blob, now), now + TTL)
        .await
        .unwrap();
}

/// Locks the oldest visible notification, now by `clock`.
async fn lock(
    store: &Arc<dyn FileNotificationStore>,
    clock: &ManualClock,
) -> Option<LockedFileNotification> {
    store
        .file_notification_lock(rules(), clock.now())
        .await
        .unwrap()
}

/// Completes (`true`) or abandons the notification locked under `token`, now by `clock`.
async fn settle(
    store: &Arc<dyn FileNotificationStore>,
    clock: &ManualClock,
    token: &str,
    complete: bool,
) -> bool {
    store
        .file_notification_settle(token, complete, clock.now())
        .await
        .unwrap()
}

/// The blob name and delivery count of a received notification.
fn seen(locked: &LockedFileNotification) -> (&str, u32) {
    (
        locked.notification.blob_name.as_str(),
        locked.delivery_count,
    )
}

/// The oldest visible notification is locked under a new token, as it was enqueued, with its
/// delivery counted; a locked one is not handed out again while its lock holds; completing
/// removes it, once.
pub async fn notifications_are_locked_oldest_first_once_at_a_time(
    store: Arc<dyn FileNotificationStore>,
    clock: Arc<ManualClock>,
) {
    assert_eq!(lock(&store, &clock).await, None, "an empty queue");
    let enqueued = clock.now();
    for blob in ["d1/a", "d1/b"] {
        enqueue(&store, &clock, blob).await;
    }
    let a = lock(&store, &clock).await.unwrap();
    assert_eq!(seen(&a), ("d1/a", 1));
    assert_eq!(a.notification, notification("d1/a", enqueued));
    let b = lock(&store, &clock).await.unwrap();
    assert_eq!(seen(&b), ("d1/b", 1));
    assert_ne!(a.lock_token, b.lock_token);
    assert_eq!(lock(&store, &clock).await, None, "both are locked");
    assert!(settle(&store, &clock, &b.lock_token, true).await);
    assert!(
        !settle(&store, &clock, &b.lock_token, true).await,
        "a completed notification is gone"
    );
    assert!(!settle(&store, &clock, "no-such-token", false).await);
    assert!(settle(&store, &clock, &a.lock_token, true).await);
    assert_eq!(lock(&store, &clock).await, None);
}

/// A notification whose lock ran out is visible again and relocked under a new token with
/// its delivery counted; the old token settles nothing any more. Abandoning unlocks at once
/// and keeps the count.
pub async fn an_expired_lock_redelivers_and_loses_the_old_token(
    store: Arc<dyn FileNotificationStore>,
    clock: Arc<ManualClock>,
) {
    enqueue(&store, &clock, "d1/a").await;
    enqueue(&store, &clock, "d1/b").await;
    let a = lock(&store, &clock).await.unwrap();
    clock.advance(rules().lock_duration + TimeDelta::seconds(1));
    let again = lock(&store, &clock).await.unwrap();
    assert_eq!(seen(&again), ("d1/a", 2));
    assert_ne!(again.lock_token, a.lock_token);
    assert!(!settle(&store, &clock, &a.lock_token, true).await);
    assert!(!settle(&store, &clock, &a.lock_token, false).await);
    let b = lock(&store, &clock).await.unwrap();
    assert_eq!(seen(&b), ("d1/b", 1));
    assert!(settle(&store, &clock, &b.lock_token, false).await);
    let b_again = lock(&store, &clock).await.unwrap();
    assert_eq!(
        seen(&b_again),
        ("d1/b", 2),
        "an abandoned one is visible at once"
    );
    // A lock that ran out settles nothing, neither complete nor abandon.
    clock.advance(rules().lock_duration);
    assert!(!settle(&store, &clock, &b_again.lock_token, true).await);
    assert!(!settle(&store, &clock, &again.lock_token, false).await);
}

/// A notification received `max_delivery_count` times and visible again is dropped; one
/// never completed is dropped when its time to live runs out, received or not.
pub async fn worn_out_and_expired_notifications_are_dropped(
    store: Arc<dyn FileNotificationStore>,
    clock: Arc<ManualClock>,
) {
    enqueue(&store, &clock, "d1/a").await;
    enqueue(&store, &clock, "d1/b").await;
    for delivery in 1..=2 {
        let a = lock(&store, &clock).await.unwrap();
        assert_eq!(seen(&a), ("d1/a", delivery));
        assert!(settle(&store, &clock, &a.lock_token, false).await);
    }
    let b = lock(&store, &clock).await.unwrap();
    assert_eq!(seen(&b), ("d1/b", 1), "d1/a was received twice: dropped");
    assert!(settle(&store, &clock, &b.lock_token, false).await);
    clock.advance(TimeDelta::minutes(30));
    enqueue(&store, &clock, "d1/c").await;
    clock.advance(TimeDelta::minutes(30));
    let c = lock(&store, &clock).await.unwrap();
    assert_eq!(seen(&c), ("d1/c", 1), "d1/b expired after its hour");
    clock.advance(TimeDelta::minutes(30));
    assert_eq!(
        lock(&store, &clock).await,
        None,
        "d1/c expired, locked or not"
    );
    assert!(!settle(&store, &clock, &c.lock_token, true).await);
}

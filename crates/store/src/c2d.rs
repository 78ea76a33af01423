//! The cloud-to-device queue port: each device's queue of messages and the hub's feedback.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{C2dMessage, C2dRefusal, C2dRules, C2dSettle, FeedbackBatch, Result};

/// Cloud-to-device queues and their feedback records.
#[async_trait]
pub trait C2dStore: Send + Sync {
    // Cloud-to-device queues. Every operation that removes a message from a queue writes, in
    // the same transaction, a feedback record when the message's `ack` wants one
    // ([`AckMode::wants`]), so feedback is never lost nor duplicated. `now` is passed in so
    // that every node applies the same clock rules and tests can move time.

    /// Appends a message (its `sequence_number` assigned) to the queue of an existing device
    /// holding fewer than `rules.max_depth` live (unexpired) messages.
    async fn c2d_enqueue(
        &self,
        message: C2dMessage,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<C2dMessage, C2dRefusal>>;
    /// Every message of the device's queue, live or expired, locked or not, oldest first, as
    /// stored (to copy a hub: `ironhub migrate --from`).
    async fn c2d_queue(&self, device_id: &str) -> Result<Vec<C2dMessage>>;
    /// Appends a message read from another hub's queue as it was: its message id, enqueued
    /// and expiry times, properties and delivery count kept, without a lock (the connection
    /// that held one is gone) and without the depth check; only its `sequence_number` is new.
    async fn c2d_import(
        &self,
        message: C2dMessage,
    ) -> Result<std::result::Result<C2dMessage, C2dRefusal>>;
    /// Dead-letters the device's expired messages (`Expired`) and those already locked
    /// `max_delivery_count` times and visible again (`DeliveryCountExceeded`), then locks the
    /// oldest visible message for `lock_duration` under a new lock token held by `node`,
    /// counting a delivery.
    async fn c2d_lock_next(
        &self,
        device_id: &str,
        node: &str,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<Option<C2dMessage>>;
    /// Settles the message locked under `lock_token` for `device_id`. `None` when no message
    /// of the device holds that lock (settled already, relocked, expired or purged).
    async fn c2d_settle(
        &self,
        device_id: &str,
        lock_token: &str,
        settle: C2dSettle,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<Option<C2dMessage>>;
    /// Removes every message of the device's queue (`Purged`); returns how many.
    async fn c2d_purge(&self, device_id: &str, rules: C2dRules, now: DateTime<Utc>) -> Result<u64>;
    /// Dead-letters expired messages of every queue and deletes expired feedback; returns
    /// how many messages expired.
    async fn c2d_expire(&self, rules: C2dRules, now: DateTime<Utc>) -> Result<u64>;
    /// Makes the cloud-to-device messages locked by `node` (or by no recorded node) visible
    /// again, their deliveries still counted. A node calls it at start: none of its own
    /// connections that held a lock is still open, so nobody will settle those messages;
    /// other nodes' deliveries stay locked. Returns how many it released.
    async fn c2d_release_locks(&self, node: &str) -> Result<u64>;
    /// Locks up to `rules.feedback_batch` unlocked (or lock-expired) feedback records, oldest
    /// first, under one new lock token.
    async fn feedback_lock(
        &self,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<Option<FeedbackBatch>>;
    /// Completes (deletes) or abandons (unlocks) the batch locked under `lock_token`; `false`
    /// when no record holds that lock.
    async fn feedback_settle(&self, lock_token: &str, complete: bool) -> Result<bool>;
}

//! The seams that carry all shared state (see `DESIGN.md`): the [`Store`] trait, with its
//! embedded implementation on SQLite ([`SqliteStore`]).
//!
//! Writes are compare-and-swap on the record's etag, so that several server nodes can share
//! one store without a lock held across requests.

pub mod bus;
mod dps_records;
pub mod eventlog;
mod file_notifications;
mod records;
mod sqlite;
mod sqlite_dps;
mod sqlite_eventlog;
mod sqlite_files;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use bus::{Attachment, BusError, BusMessage, DeviceBus, LocalBus, MethodResponse};
pub use dps_records::*;
pub use eventlog::{Event, EventLog, NewEvent, PartitionBounds, Retention, StartPosition};
pub use file_notifications::{
    FileNotification, FileNotificationRules, FileNotificationStore, LockedFileNotification,
};
pub use records::*;
pub use sqlite::SqliteStore;
pub use sqlite_eventlog::SqliteEventLog;

/// A failure of the storage engine itself (never a client's mistake).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Engine(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("no ironhub data in {0}: start `ironhub serve --data-dir {0}` once first")]
    NotInitialised(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The outcome of an atomic batch: either every write was applied (with the records as stored,
/// `None` for deletes), or none was, with the reason for each write that failed.
pub type BatchResult = std::result::Result<Vec<Option<DeviceRecord>>, Vec<(usize, WriteConflict)>>;

/// Durable state shared by every node of a hub. Every acknowledged write survives a crash.
#[async_trait]
pub trait Store: FileNotificationStore + Send + Sync + std::fmt::Debug + 'static {
    /// The hub's settings; created from `init` on the very first call and never replaced.
    async fn hub_settings_or_init(&self, init: HubSettings) -> Result<HubSettings>;
    /// The hub's settings, if the hub was ever started.
    async fn hub_settings(&self) -> Result<Option<HubSettings>>;
    /// Records where the server listens (see [`Endpoint`]).
    async fn set_endpoint(&self, endpoint: &Endpoint) -> Result<()>;
    /// Where the server last listened.
    async fn endpoint(&self) -> Result<Option<Endpoint>>;

    /// One device, by its exact (case-sensitive) id.
    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>>;
    /// Devices ordered by id, after `after`, at most `limit`.
    async fn list_devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<DeviceRecord>>;
    /// Total, enabled and disabled devices.
    async fn device_counts(&self) -> Result<DeviceCounts>;
    /// Changes a device's runtime fields without changing its etag; false if there is no such
    /// device.
    async fn update_device_runtime(&self, id: &str, update: RuntimeUpdate) -> Result<bool>;
    /// Marks every device disconnected. A single-node server calls it at start, when no
    /// connection of before can still be open; returns how many devices were connected.
    async fn disconnect_all(&self) -> Result<u64>;
    /// A device's twin, if one was ever written (a device without one has an empty twin).
    async fn get_twin(&self, device_id: &str) -> Result<Option<TwinRecord>>;
    /// Writes a twin, if its device exists and (with `if_match`) the stored twin's etag is that
    /// one (no stored twin matches `""`). Assigns a new etag.
    async fn put_twin(
        &self,
        twin: TwinRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<TwinRecord, WriteConflict>>;

    /// The subscriptions of a persistent MQTT session (clean session 0), by client id.
    async fn mqtt_session(&self, client_id: &str) -> Result<Option<Vec<String>>>;
    /// Stores (`Some`) or discards (`None`) a persistent MQTT session.
    async fn set_mqtt_session(
        &self,
        client_id: &str,
        subscriptions: Option<Vec<String>>,
    ) -> Result<()>;
    /// Applies all writes atomically, or none. The store assigns each written record a new
    /// etag, unique for the lifetime of the store. Deleting a device deletes its twin, its
    /// persistent MQTT sessions and its cloud-to-device queue.
    async fn write_devices(&self, writes: Vec<DeviceWrite>) -> Result<BatchResult>;

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
    /// Dead-letters the device's expired messages (`Expired`) and those already locked
    /// `max_delivery_count` times and visible again (`DeliveryCountExceeded`), then locks the
    /// oldest visible message for `lock_duration` under a new lock token, counting a delivery.
    async fn c2d_lock_next(
        &self,
        device_id: &str,
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
    /// Makes every locked cloud-to-device message visible again (its delivery still counts). A
    /// single-node server calls it at start: no connection that held a lock is still open, so
    /// nobody will settle those messages. Returns how many were locked.
    async fn c2d_release_locks(&self) -> Result<u64>;
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
    /// One CA certificate of `scope`, by its exact name.
    async fn get_certificate(
        &self,
        scope: CertificateScope,
        name: &str,
    ) -> Result<Option<CertificateRecord>>;
    /// Every CA certificate of `scope`, ordered by name.
    async fn list_certificates(&self, scope: CertificateScope) -> Result<Vec<CertificateRecord>>;
    /// Writes a CA certificate: without `if_match` only if the name is free (else
    /// [`WriteConflict::AlreadyExists`]); with it, only if one exists (else `NotFound`) whose
    /// etag is that one or the tag is `*` (else `EtagMismatch`). Assigns a new etag.
    async fn put_certificate(
        &self,
        scope: CertificateScope,
        record: CertificateRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<CertificateRecord, WriteConflict>>;
    /// Deletes a CA certificate; with `if_match`, only if its etag is that one (or `*`).
    async fn delete_certificate(
        &self,
        scope: CertificateScope,
        name: &str,
        if_match: Option<String>,
    ) -> Result<std::result::Result<(), WriteConflict>>;

    // Device Provisioning Service. Ids are compared, looked up and ordered ASCII
    // case-insensitively (registration and group ids are case-insensitive, seed 004 L6212);
    // a record keeps the case it was created with.

    /// The DPS instance's settings; created from `init` on the very first call and never
    /// replaced (the ID scope is immutable).
    async fn dps_settings_or_init(&self, init: DpsSettings) -> Result<DpsSettings>;
    /// The DPS instance's settings, if the server was ever started.
    async fn dps_settings(&self) -> Result<Option<DpsSettings>>;
    /// One record of `collection`, by id in any case.
    async fn dps_get(&self, collection: DpsCollection, id: &str) -> Result<Option<DpsRecord>>;
    /// Records of `collection` ordered by lower-cased id, after `after` (in any case), at most
    /// `limit`; with `group`, only those whose `group_id` is that one (in any case).
    async fn dps_list(
        &self,
        collection: DpsCollection,
        after: Option<&str>,
        limit: usize,
        group: Option<&str>,
    ) -> Result<Vec<DpsRecord>>;
    /// How many records `collection` holds (with `group`, only that group's).
    async fn dps_count(&self, collection: DpsCollection, group: Option<&str>) -> Result<u64>;
    /// Applies all writes to `collection` atomically, or none, like [`Store::write_devices`].
    /// Every written record gets a new etag from the same never-reused counter. Writes to
    /// [`DpsCollection::Operations`] are runtime state: they may be kept only until a power cut
    /// (as connection state is), everything else as durably as any acknowledged write.
    async fn dps_write(
        &self,
        collection: DpsCollection,
        writes: Vec<DpsWrite>,
    ) -> Result<DpsBatchResult>;
}

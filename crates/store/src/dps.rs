//! The Device Provisioning Service port: its settings and its collections of records.

use async_trait::async_trait;

use crate::{DpsBatchResult, DpsCollection, DpsRecord, DpsSettings, DpsWrite, Result};

/// The DPS instance's settings and records.
#[async_trait]
pub trait DpsStore: Send + Sync {
    // Device Provisioning Service. Ids are compared, looked up and ordered ASCII
    // case-insensitively (registration and group ids are case-insensitive: Azure docs, IoT Hub
    // Device Provisioning Service (DPS) terminology, 'Enrollment group');
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
    /// Applies all writes to `collection` atomically, or none, like [`crate::RegistryStore::write_devices`].
    /// Every written record gets a new etag from the same never-reused counter. Writes to
    /// [`DpsCollection::Operations`] are runtime state: they may be kept only until a power cut
    /// (as connection state is), everything else as durably as any acknowledged write.
    async fn dps_write(
        &self,
        collection: DpsCollection,
        writes: Vec<DpsWrite>,
    ) -> Result<DpsBatchResult>;
    /// [`DpsStore::dps_write`] of records that stand in for work under way and that nothing
    /// was acknowledged on (a registration record claimed while its device is assigned): an
    /// engine may keep them as it keeps operations, until a power cut; a later durable write
    /// must not be kept without them. The default writes them as durably as any record.
    async fn dps_write_provisional(
        &self,
        collection: DpsCollection,
        writes: Vec<DpsWrite>,
    ) -> Result<DpsBatchResult> {
        self.dps_write(collection, writes).await
    }
}

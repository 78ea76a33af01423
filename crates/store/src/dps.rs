//! The Device Provisioning Service port: its settings and its collections of records.

use async_trait::async_trait;

use crate::{
    DeviceWrite, DpsBatchResult, DpsCollection, DpsRecord, DpsSettings, DpsWrite, JointResult,
    RegistrationBegun, Result, StoreError,
};

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
    /// Writes a device of the hub (by the rules of [`crate::RegistryStore::write_devices`]) and
    /// one record of `collection` (by those of [`DpsStore::dps_write`]) in one transaction:
    /// both, or neither when either write conflicts. DPS uses it to create a device on the
    /// server's own hub together with its registration record, so that neither is ever seen
    /// without the other, with one durable commit.
    async fn dps_write_with_device(
        &self,
        device: DeviceWrite,
        collection: DpsCollection,
        write: DpsWrite,
    ) -> Result<JointResult>;
    /// Starts a device's registration in one transaction: writes `operation` as the device's
    /// operation (creating it, or replacing whatever operation it had: the newer registration
    /// wins) and, when the device has no registration record under its id in any case, creates
    /// `claim` as that record, so that registrations whose ids differ only in case agree on one
    /// record. Both are kept as operations are (until a power cut): nothing was acknowledged on
    /// the claim, and the later durable write of the registration's outcome carries it.
    ///
    /// The default does it in several calls (not atomically); engines override it.
    async fn dps_begin_registration(
        &self,
        operation: DpsRecord,
        claim: DpsRecord,
    ) -> Result<RegistrationBegun> {
        let mut written = None;
        for _ in 0..3 {
            let write = match self
                .dps_get(DpsCollection::Operations, &operation.id)
                .await?
            {
                None => DpsWrite::Create(operation.clone()),
                Some(_) => DpsWrite::Replace {
                    record: operation.clone(),
                    if_match: None,
                },
            };
            if let Ok(mut done) = self
                .dps_write(DpsCollection::Operations, vec![write])
                .await?
            {
                written = done.pop().flatten();
                break;
            }
        }
        let operation = written.ok_or_else(|| {
            StoreError::Engine("the operation kept changing while it was written".into())
        })?;
        for _ in 0..3 {
            if let Some(found) = self
                .dps_get(DpsCollection::Registrations, &claim.id)
                .await?
            {
                return Ok(RegistrationBegun {
                    operation,
                    registration: found,
                    claimed: false,
                });
            }
            let create = DpsWrite::Create(claim.clone());
            if let Ok(mut done) = self
                .dps_write(DpsCollection::Registrations, vec![create])
                .await?
                && let Some(registration) = done.pop().flatten()
            {
                return Ok(RegistrationBegun {
                    operation,
                    registration,
                    claimed: true,
                });
            }
        }
        Err(StoreError::Engine(
            "the registration kept changing while it was claimed".into(),
        ))
    }
}

//! The port for module identities: each belongs to one device and goes with it.

use async_trait::async_trait;

use crate::{ModuleRecord, ModuleWrite, Result, WriteConflict};

/// Module identities, written compare-and-swap on their etag. Deleting a device (see
/// [`crate::RegistryStore::write_devices`]) deletes its modules.
#[async_trait]
pub trait ModuleStore: Send + Sync {
    /// One module, by its device's and its own exact (case-sensitive) ids.
    async fn get_module(&self, device_id: &str, module_id: &str) -> Result<Option<ModuleRecord>>;
    /// A device's modules ordered by module id (none for a device that does not exist).
    async fn list_modules(&self, device_id: &str) -> Result<Vec<ModuleRecord>>;
    /// Applies one write; the store assigns a written record a new etag, unique for the
    /// lifetime of the store. Returns the record as stored (`None` for a delete).
    async fn write_module(
        &self,
        write: ModuleWrite,
    ) -> Result<std::result::Result<Option<ModuleRecord>, WriteConflict>>;
}

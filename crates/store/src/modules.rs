//! The port for module identities and their twins: each belongs to one device and goes
//! with it.

use async_trait::async_trait;

use crate::{
    DeviceRecord, ModuleRecord, ModuleWrite, Result, RuntimeUpdate, TwinRecord, WriteConflict,
};

/// A module with its device and its twin (`None`: never written).
pub type ModuleTwin = (DeviceRecord, ModuleRecord, Option<TwinRecord>);

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
    /// Changes a module's runtime fields (connection state, last activity) by the device's
    /// rule ([`RuntimeUpdate::apply_to_module`]) without changing its etag; false if there is
    /// no such module.
    async fn update_module_runtime(
        &self,
        device_id: &str,
        module_id: &str,
        update: RuntimeUpdate,
    ) -> Result<bool>;
    /// A module's twin, if one was ever written (`twin.device_id` is the module's device).
    async fn get_module_twin(&self, device_id: &str, module_id: &str)
    -> Result<Option<TwinRecord>>;
    /// Writes a module's twin, if the module exists and (with `if_match`) the stored twin's
    /// etag is that one (no stored twin matches `""`). Assigns a new etag. The twin goes with
    /// its module.
    async fn put_module_twin(
        &self,
        module_id: &str,
        twin: TwinRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<TwinRecord, WriteConflict>>;
    /// Every device's modules in (device id, module id) order, each with its device and its
    /// twin, at most `limit`: after `after`'s device, or after `after`'s module on its device
    /// when it names one. `None` when this engine does not scan modules (the default): the
    /// caller then lists each device's modules and reads their twins one by one.
    async fn scan_module_twins(
        &self,
        after: Option<(&str, Option<&str>)>,
        limit: usize,
    ) -> Result<Option<Vec<ModuleTwin>>> {
        let _ = (after, limit);
        Ok(None)
    }
}

//! The device twin port.

use async_trait::async_trait;

use crate::{Result, TwinRecord, WriteConflict};

/// Device twins, written compare-and-swap on their etag.
#[async_trait]
pub trait TwinStore: Send + Sync {
    /// A device's twin, if one was ever written (a device without one has an empty twin).
    async fn get_twin(&self, device_id: &str) -> Result<Option<TwinRecord>>;
    /// Writes a twin, if its device exists and (with `if_match`) the stored twin's etag is that
    /// one (no stored twin matches `""`). Assigns a new etag.
    async fn put_twin(
        &self,
        twin: TwinRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<TwinRecord, WriteConflict>>;
}

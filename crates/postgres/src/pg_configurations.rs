//! Configurations on PostgreSQL: not supported yet. Every call fails with a clear engine
//! error (the client sees a 500 naming the server's log), so a hub on PostgreSQL never
//! pretends to keep a configuration it does not.

use async_trait::async_trait;
use ironhub_store::{
    ConfigurationRecord, ConfigurationStore, ConfigurationWrite, Result, StoreError, WriteConflict,
};

use crate::PgStore;

fn not_supported() -> StoreError {
    StoreError::Engine(
        "configurations and IoT Edge deployments are not supported on the PostgreSQL store yet"
            .into(),
    )
}

#[async_trait]
impl ConfigurationStore for PgStore {
    async fn get_configuration(&self, _id: &str) -> Result<Option<ConfigurationRecord>> {
        Err(not_supported())
    }

    async fn list_configurations(&self) -> Result<Vec<ConfigurationRecord>> {
        Err(not_supported())
    }

    async fn write_configuration(
        &self,
        _write: ConfigurationWrite,
    ) -> Result<std::result::Result<Option<ConfigurationRecord>, WriteConflict>> {
        Err(not_supported())
    }
}

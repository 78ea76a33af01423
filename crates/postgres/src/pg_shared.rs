//! Settings the nodes of one hub share beyond the ports (its TLS identity, say): JSON values
//! in `meta` under `shared.{key}`, created by the first node and read by the others.

use ironhub_store::Result;

use crate::PgStore;
use crate::store::{meta, meta_or_init};

fn shared_key(key: &str) -> String {
    format!("shared.{key}")
}

impl PgStore {
    /// The shared setting `key`; `init` is stored when there is none yet, and of nodes racing
    /// to store theirs the first one's wins: every caller gets the stored value.
    pub async fn shared_setting_or_init<T>(&self, key: &str, init: T) -> Result<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        meta_or_init(&self.client().await?, &shared_key(key), init).await
    }

    /// The shared setting `key`, if a node stored it.
    pub async fn shared_setting<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>> {
        meta(&self.client().await?, &shared_key(key)).await
    }
}

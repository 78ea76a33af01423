//! The port of automatic device management: IoT Hub's configurations and IoT Edge
//! deployments (`/configurations/{id}`), each one JSON document with its etag, written
//! compare-and-swap so every node applies the same set. The domain (`hub::configurations`)
//! validates them and keeps the server-owned fields; the store keeps them as JSON.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Result, WriteConflict};

/// One configuration as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigurationRecord {
    /// The configuration's id (IoT Hub's ids are lower case, so they compare exactly).
    pub id: String,
    /// The configuration as the domain wrote it (IoT Hub's `Configuration` without `etag`).
    pub doc: serde_json::Value,
    /// Changes on every write; never reused.
    pub etag: String,
}

/// A write of one configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigurationWrite {
    /// Creates it ([`WriteConflict::AlreadyExists`] when the id is taken).
    Create { id: String, doc: serde_json::Value },
    /// Replaces it, if it exists ([`WriteConflict::NotFound`]) and its etag is `if_match` or
    /// `if_match` is `*` ([`WriteConflict::EtagMismatch`]).
    Replace {
        id: String,
        doc: serde_json::Value,
        if_match: String,
    },
    /// Deletes it, on the same conditions as a replace.
    Delete { id: String, if_match: String },
}

/// The hub's configurations.
#[async_trait]
pub trait ConfigurationStore: Send + Sync {
    /// One configuration by its exact id.
    async fn get_configuration(&self, id: &str) -> Result<Option<ConfigurationRecord>>;
    /// Every configuration, in id order (IoT Hub keeps at most a few hundred).
    async fn list_configurations(&self) -> Result<Vec<ConfigurationRecord>>;
    /// Applies one write, compare-and-swap; assigns a written record a new etag, unique for
    /// the lifetime of the store. Returns the record as stored (`None` for a delete).
    async fn write_configuration(
        &self,
        write: ConfigurationWrite,
    ) -> Result<std::result::Result<Option<ConfigurationRecord>, WriteConflict>>;
}

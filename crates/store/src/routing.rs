//! The message routing port: the hub's routing document (IoT Hub's `properties.routing`:
//! endpoints, routes, fallback route, enrichments), one per hub, written compare-and-swap so
//! every node applies the same configuration. The domain (`hub::routing`) validates it; the
//! store keeps it as JSON.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Result, WriteConflict};

/// The routing document as stored, with its etag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingRecord {
    /// The document, already validated by the domain.
    pub doc: serde_json::Value,
    /// Changes on every write; never reused.
    pub etag: String,
}

/// The hub's routing document.
#[async_trait]
pub trait RoutingStore: Send + Sync {
    /// The routing document, if one was ever written.
    async fn routing(&self) -> Result<Option<RoutingRecord>>;
    /// Replaces the routing document; with `if_match`, only if the stored etag is that one
    /// or the tag is `*` (else [`WriteConflict::EtagMismatch`], and `NotFound` when there is
    /// none yet and the tag is not `*`). Assigns a new etag.
    async fn put_routing(
        &self,
        doc: serde_json::Value,
        if_match: Option<String>,
    ) -> Result<std::result::Result<RoutingRecord, WriteConflict>>;
}

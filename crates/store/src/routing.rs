//! The message routing port: the hub's routing document (IoT Hub's `properties.routing`:
//! endpoints, routes, fallback route, enrichments), one per hub, written compare-and-swap so
//! every node applies the same configuration. The domain (`hub::routing`) validates it; the
//! store keeps it as JSON. Beside it, what the nodes delivering to external endpoints share:
//! which node runs each endpoint's pump (a lease with an expiry, so exactly one does and
//! another takes over when it dies) and each endpoint's health as that pump last saw it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use ironhub_wire::hub::{EndpointHealth, EndpointHealthStatus};

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

    /// Takes or renews for `node` the lease on delivering to `endpoint` (names are
    /// case-insensitive) until `until`: granted when nobody holds it, when `node` holds it, or
    /// when the holder's lease ran out by `now`; refused while another node's lease runs.
    /// Compare-and-swap: of nodes asking together, exactly one gets it.
    async fn lease_endpoint(
        &self,
        endpoint: &str,
        node: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Gives up `node`'s lease on `endpoint`, if it holds it (another node may take it at once).
    async fn release_endpoint(&self, endpoint: &str, node: &str) -> Result<()>;
    /// Records an endpoint's health (by `endpoint_id`, case-insensitive), replacing the last.
    async fn put_endpoint_health(&self, health: EndpointHealth) -> Result<()>;
    /// Every endpoint health recorded, in the order of the endpoints' lower-case names.
    async fn endpoint_health(&self) -> Result<Vec<EndpointHealth>>;
}

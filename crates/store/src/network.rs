//! The network rules port: the IP filter rules and public network access of the hub and of
//! the DPS instance, one JSON document each, written compare-and-swap so every node applies
//! the same rules. The domain (`hub::network`) validates and evaluates them; the store keeps
//! them as JSON.

use async_trait::async_trait;

use crate::{Result, RoutingRecord, WriteConflict};

/// Whose rules: the hub's or the DPS instance's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkScope {
    Hub,
    Dps,
}

impl NetworkScope {
    /// A short name for keys and logs (`hub`, `dps`).
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkScope::Hub => "hub",
            NetworkScope::Dps => "dps",
        }
    }
}

/// A stored network rules document and its etag (the same shape as the routing document's).
pub type NetworkRulesRecord = RoutingRecord;

/// The network rules of the hub and of the DPS instance.
#[async_trait]
pub trait NetworkRulesStore: Send + Sync {
    /// The rules of `scope`, if any were ever written.
    async fn network_rules(&self, scope: NetworkScope) -> Result<Option<NetworkRulesRecord>>;
    /// Replaces the rules of `scope`, compare-and-swap on `if_match` exactly as
    /// [`crate::RoutingStore::put_routing`] does. Assigns a new etag.
    async fn put_network_rules(
        &self,
        scope: NetworkScope,
        doc: serde_json::Value,
        if_match: Option<String>,
    ) -> Result<std::result::Result<NetworkRulesRecord, WriteConflict>>;
}

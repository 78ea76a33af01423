//! The network rules of the hub and of the DPS instance on PostgreSQL: a row of `documents`
//! each (`network.hub`, `network.dps`), written compare-and-swap as the routing document is.

use async_trait::async_trait;
use ironhub_store::{NetworkRulesRecord, NetworkRulesStore, NetworkScope, Result, WriteConflict};

use crate::PgStore;

/// The `documents` key of a scope's rules.
fn key(scope: NetworkScope) -> String {
    format!("network.{}", scope.as_str())
}

#[async_trait]
impl NetworkRulesStore for PgStore {
    async fn network_rules(&self, scope: NetworkScope) -> Result<Option<NetworkRulesRecord>> {
        self.document(&key(scope)).await
    }

    async fn put_network_rules(
        &self,
        scope: NetworkScope,
        doc: serde_json::Value,
        if_match: Option<String>,
    ) -> Result<std::result::Result<NetworkRulesRecord, WriteConflict>> {
        self.put_document(&key(scope), doc, if_match).await
    }
}

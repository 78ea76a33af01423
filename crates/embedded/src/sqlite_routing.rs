//! The routing document and the network rules of the SQLite store: each one row of the `meta`
//! table, with its etag, written compare-and-swap. Endpoint leases and health are rows of `meta`
//! too (`endpoint_lease.{name}`, `endpoint_health.{name}`, names lower-cased), written on the
//! runtime connection: renewed every second, they need not cost an fsync each, and a lease lost
//! to a power cut only lets another node take the endpoint over.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ironhub_store::{
    EndpointHealth, NetworkRulesStore, NetworkScope, RoutingRecord, RoutingStore, WriteConflict,
};
use rusqlite::TransactionBehavior;
use serde::{Deserialize, Serialize};

use crate::rows::millis;
use crate::sqlite::{SqliteStore, get_meta, meta_with_prefix, next_etag, set_meta, tag_matches};

type StoreResult<T> = ironhub_store::Result<T>;

const KEY: &str = "routing";
const LEASE: &str = "endpoint_lease.";
const HEALTH: &str = "endpoint_health.";

/// Who delivers to an endpoint, and until when (Unix milliseconds).
#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    node: String,
    until: i64,
}

/// The `meta` key of a scope's network rules.
fn network_key(scope: NetworkScope) -> String {
    format!("network.{}", scope.as_str())
}

impl SqliteStore {
    /// Replaces the document under `key`, compare-and-swap on `if_match`.
    async fn put_document(
        &self,
        key: String,
        doc: serde_json::Value,
        if_match: Option<String>,
    ) -> StoreResult<Result<RoutingRecord, WriteConflict>> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<RoutingRecord> = get_meta(&tx, &key)?;
            match (&current, if_match.as_deref()) {
                (None, Some(tag)) if tag != "*" => return Ok(Err(WriteConflict::NotFound)),
                (Some(c), Some(tag)) if !tag_matches(&c.etag, tag) => {
                    return Ok(Err(WriteConflict::EtagMismatch));
                }
                _ => {}
            }
            let record = RoutingRecord {
                doc,
                etag: next_etag(&tx)?,
            };
            set_meta(&tx, &key, &record)?;
            tx.commit()?;
            Ok(Ok(record))
        })
        .await
    }
}

#[async_trait]
impl RoutingStore for SqliteStore {
    async fn routing(&self) -> StoreResult<Option<RoutingRecord>> {
        self.read(|conn| get_meta(conn, KEY)).await
    }

    async fn put_routing(
        &self,
        doc: serde_json::Value,
        if_match: Option<String>,
    ) -> StoreResult<Result<RoutingRecord, WriteConflict>> {
        self.put_document(KEY.to_owned(), doc, if_match).await
    }

    async fn lease_endpoint(
        &self,
        endpoint: &str,
        node: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let key = format!("{LEASE}{}", endpoint.to_ascii_lowercase());
        let node = node.to_owned();
        self.with_runtime(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<Lease> = get_meta(&tx, &key)?;
            if current.is_some_and(|l| l.node != node && l.until > millis(now)) {
                return Ok(false);
            }
            set_meta(
                &tx,
                &key,
                &Lease {
                    node,
                    until: millis(until),
                },
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn release_endpoint(&self, endpoint: &str, node: &str) -> StoreResult<()> {
        let key = format!("{LEASE}{}", endpoint.to_ascii_lowercase());
        let node = node.to_owned();
        self.with_runtime(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<Lease> = get_meta(&tx, &key)?;
            if current.is_some_and(|l| l.node == node) {
                tx.execute("DELETE FROM meta WHERE key = ?1", [&key])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn put_endpoint_health(&self, health: EndpointHealth) -> StoreResult<()> {
        let key = format!("{HEALTH}{}", health.endpoint_id.to_ascii_lowercase());
        self.with_runtime(move |conn| set_meta(conn, &key, &health))
            .await
    }

    async fn endpoint_health(&self) -> StoreResult<Vec<EndpointHealth>> {
        self.with_runtime(move |conn| meta_with_prefix(conn, HEALTH))
            .await
    }
}

#[async_trait]
impl NetworkRulesStore for SqliteStore {
    async fn network_rules(&self, scope: NetworkScope) -> StoreResult<Option<RoutingRecord>> {
        let key = network_key(scope);
        self.read(move |conn| get_meta(conn, &key)).await
    }

    async fn put_network_rules(
        &self,
        scope: NetworkScope,
        doc: serde_json::Value,
        if_match: Option<String>,
    ) -> StoreResult<Result<RoutingRecord, WriteConflict>> {
        self.put_document(network_key(scope), doc, if_match).await
    }
}

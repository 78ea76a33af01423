//! The routing document and the network rules of the SQLite store: each one row of the
//! `meta` table, with its etag, written compare-and-swap.

use async_trait::async_trait;
use ironhub_store::{NetworkRulesStore, NetworkScope, RoutingRecord, RoutingStore, WriteConflict};
use rusqlite::TransactionBehavior;

use crate::sqlite::{SqliteStore, get_meta, next_etag, set_meta, tag_matches};

type StoreResult<T> = ironhub_store::Result<T>;

const KEY: &str = "routing";

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
        self.with(|conn| get_meta(conn, KEY)).await
    }

    async fn put_routing(
        &self,
        doc: serde_json::Value,
        if_match: Option<String>,
    ) -> StoreResult<Result<RoutingRecord, WriteConflict>> {
        self.put_document(KEY.to_owned(), doc, if_match).await
    }
}

#[async_trait]
impl NetworkRulesStore for SqliteStore {
    async fn network_rules(&self, scope: NetworkScope) -> StoreResult<Option<RoutingRecord>> {
        let key = network_key(scope);
        self.with(move |conn| get_meta(conn, &key)).await
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

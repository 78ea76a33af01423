//! The routing document of the SQLite store: one row of the `meta` table, with its etag.

use async_trait::async_trait;
use ironhub_store::{RoutingRecord, RoutingStore, WriteConflict};
use rusqlite::TransactionBehavior;

use crate::sqlite::{SqliteStore, get_meta, next_etag, set_meta, tag_matches};

type StoreResult<T> = ironhub_store::Result<T>;

const KEY: &str = "routing";

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
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<RoutingRecord> = get_meta(&tx, KEY)?;
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
            set_meta(&tx, KEY, &record)?;
            tx.commit()?;
            Ok(Ok(record))
        })
        .await
    }
}

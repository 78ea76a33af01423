//! Configurations of the SQLite store: rows of the `meta` table keyed `configuration.{id}`
//! (a hub holds at most a few hundred), each with its etag, written compare-and-swap in one
//! transaction.

use async_trait::async_trait;
use ironhub_store::{ConfigurationRecord, ConfigurationStore, ConfigurationWrite, WriteConflict};
use rusqlite::TransactionBehavior;

use crate::sqlite::{SqliteStore, get_meta, meta_with_prefix, next_etag, set_meta, tag_matches};

type StoreResult<T> = ironhub_store::Result<T>;

const PREFIX: &str = "configuration.";

fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

#[async_trait]
impl ConfigurationStore for SqliteStore {
    async fn get_configuration(&self, id: &str) -> StoreResult<Option<ConfigurationRecord>> {
        let key = key(id);
        self.with(move |conn| get_meta(conn, &key)).await
    }

    async fn list_configurations(&self) -> StoreResult<Vec<ConfigurationRecord>> {
        self.with(move |conn| meta_with_prefix(conn, PREFIX)).await
    }

    async fn write_configuration(
        &self,
        write: ConfigurationWrite,
    ) -> StoreResult<Result<Option<ConfigurationRecord>, WriteConflict>> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (id, doc, if_match) = match write {
                ConfigurationWrite::Create { id, doc } => (id, Some(doc), None),
                ConfigurationWrite::Replace { id, doc, if_match } => {
                    (id, Some(doc), Some(if_match))
                }
                ConfigurationWrite::Delete { id, if_match } => (id, None, Some(if_match)),
            };
            let key = key(&id);
            let current: Option<ConfigurationRecord> = get_meta(&tx, &key)?;
            match (&current, &if_match) {
                (Some(_), None) => return Ok(Err(WriteConflict::AlreadyExists)),
                (None, Some(_)) => return Ok(Err(WriteConflict::NotFound)),
                (Some(c), Some(tag)) if !tag_matches(&c.etag, tag) => {
                    return Ok(Err(WriteConflict::EtagMismatch));
                }
                _ => {}
            }
            let Some(doc) = doc else {
                tx.execute("DELETE FROM meta WHERE key = ?1", [&key])?;
                tx.commit()?;
                return Ok(Ok(None));
            };
            let record = ConfigurationRecord {
                id,
                doc,
                etag: next_etag(&tx)?,
            };
            set_meta(&tx, &key, &record)?;
            tx.commit()?;
            Ok(Ok(Some(record)))
        })
        .await
    }
}

//! Configurations and IoT Edge deployments on PostgreSQL: rows of `configurations`, one JSON
//! document per id with its etag, written compare-and-swap in one transaction (the row is
//! locked while the condition is checked, and a concurrent create of the same id inserts
//! nothing), as the embedded engine writes them.

use async_trait::async_trait;
use ironhub_store::{
    ConfigurationRecord, ConfigurationStore, ConfigurationWrite, Result, WriteConflict,
};

use crate::PgStore;
use crate::store::{corrupt, db, next_etag, tag_matches};

fn record(row: &tokio_postgres::Row) -> Result<ConfigurationRecord> {
    Ok(ConfigurationRecord {
        id: row.get(0),
        doc: serde_json::from_str(row.get::<_, &str>(1)).map_err(corrupt)?,
        etag: row.get(2),
    })
}

#[async_trait]
impl ConfigurationStore for PgStore {
    async fn get_configuration(&self, id: &str) -> Result<Option<ConfigurationRecord>> {
        self.client()
            .await?
            .query_opt(
                "SELECT id, doc::text, etag FROM configurations WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(db)?
            .as_ref()
            .map(record)
            .transpose()
    }

    async fn list_configurations(&self) -> Result<Vec<ConfigurationRecord>> {
        self.client()
            .await?
            .query(
                "SELECT id, doc::text, etag FROM configurations ORDER BY id",
                &[],
            )
            .await
            .map_err(db)?
            .iter()
            .map(record)
            .collect()
    }

    async fn write_configuration(
        &self,
        write: ConfigurationWrite,
    ) -> Result<std::result::Result<Option<ConfigurationRecord>, WriteConflict>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let (id, doc, if_match) = match write {
            ConfigurationWrite::Create { id, doc } => (id, Some(doc), None),
            ConfigurationWrite::Replace { id, doc, if_match } => (id, Some(doc), Some(if_match)),
            ConfigurationWrite::Delete { id, if_match } => (id, None, Some(if_match)),
        };
        if let Some(tag) = &if_match {
            let current: Option<String> = tx
                .query_opt(
                    "SELECT etag FROM configurations WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(db)?
                .map(|row| row.get(0));
            match current {
                None => return Ok(Err(WriteConflict::NotFound)),
                Some(etag) if !tag_matches(&etag, tag) => {
                    return Ok(Err(WriteConflict::EtagMismatch));
                }
                Some(_) => {}
            }
        }
        let Some(doc) = doc else {
            tx.execute("DELETE FROM configurations WHERE id = $1", &[&id])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Ok(Ok(None));
        };
        let text = serde_json::to_string(&doc).map_err(corrupt)?;
        let record = ConfigurationRecord {
            id,
            doc,
            etag: next_etag(&tx).await?,
        };
        if if_match.is_none() {
            // Only a free id: a concurrent create of the same id waits and inserts nothing.
            let inserted = tx
                .execute(
                    "INSERT INTO configurations (id, etag, doc) VALUES ($1, $2, $3::text::jsonb)
                     ON CONFLICT (id) DO NOTHING",
                    &[&record.id, &record.etag, &text],
                )
                .await
                .map_err(db)?;
            if inserted == 0 {
                return Ok(Err(WriteConflict::AlreadyExists));
            }
        } else {
            tx.execute(
                "UPDATE configurations SET etag = $2, doc = $3::text::jsonb WHERE id = $1",
                &[&record.id, &record.etag, &text],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(Ok(Some(record)))
    }
}

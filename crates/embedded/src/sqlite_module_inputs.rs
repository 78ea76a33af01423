//! Module input queues in the SQLite store: one row per message, the body in its own column,
//! the rest as a JSON document; `seq` orders a module's messages.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ironhub_store::{InputMessage, ModuleInputStore, QueuedInput};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::rows::{from_millis, millis};
use crate::sqlite::SqliteStore;

#[async_trait]
impl ModuleInputStore for SqliteStore {
    async fn input_enqueue(
        &self,
        device_id: &str,
        module_id: &str,
        message: &InputMessage,
        expiry_time: DateTime<Utc>,
    ) -> ironhub_store::Result<Option<u64>> {
        let (device_id, module_id) = (device_id.to_owned(), module_id.to_owned());
        let doc = serde_json::to_string(&InputMessage {
            body: Vec::new(),
            ..message.clone()
        });
        let body = message.body.clone();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let exists = tx
                .prepare_cached("SELECT 1 FROM modules WHERE device_id = ?1 AND module_id = ?2")?
                .query_row([&device_id, &module_id], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok(None);
            }
            tx.prepare_cached(
                "INSERT INTO module_inputs (device_id, module_id, expiry, doc, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                device_id,
                module_id,
                millis(expiry_time),
                doc?,
                body
            ])?;
            let seq = u64::try_from(tx.last_insert_rowid()).unwrap_or_default();
            tx.commit()?;
            Ok(Some(seq))
        })
        .await
    }

    async fn input_pending(
        &self,
        device_id: &str,
        module_id: &str,
        after: u64,
        max: usize,
        now: DateTime<Utc>,
    ) -> ironhub_store::Result<Vec<QueuedInput>> {
        let (device_id, module_id) = (device_id.to_owned(), module_id.to_owned());
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, expiry, doc, body FROM module_inputs
                 WHERE device_id = ?1 AND module_id = ?2 AND seq > ?3 AND expiry > ?4
                 ORDER BY seq LIMIT ?5",
            )?;
            let rows = stmt
                .query_map(
                    params![device_id, module_id, after, millis(now), max],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Vec<u8>>(3)?,
                        ))
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(seq, expiry, doc, body)| {
                    let mut message: InputMessage = serde_json::from_str(&doc)?;
                    message.body = body;
                    Ok(QueuedInput {
                        sequence_number: u64::try_from(seq).unwrap_or_default(),
                        expiry_time: from_millis(expiry),
                        message,
                    })
                })
                .collect()
        })
        .await
    }

    async fn input_remove(
        &self,
        device_id: &str,
        module_id: &str,
        sequence_number: u64,
    ) -> ironhub_store::Result<bool> {
        let (device_id, module_id) = (device_id.to_owned(), module_id.to_owned());
        let seq = i64::try_from(sequence_number).unwrap_or(i64::MAX);
        self.with(move |conn| {
            let removed = conn
                .prepare_cached(
                    "DELETE FROM module_inputs WHERE seq = ?1 AND device_id = ?2 AND module_id = ?3",
                )?
                .execute(params![seq, device_id, module_id])?;
            Ok(removed > 0)
        })
        .await
    }

    async fn input_expire(&self, now: DateTime<Utc>) -> ironhub_store::Result<u64> {
        self.with(move |conn| {
            let removed = conn
                .prepare_cached("DELETE FROM module_inputs WHERE expiry <= ?1")?
                .execute([millis(now)])?;
            Ok(u64::try_from(removed).unwrap_or_default())
        })
        .await
    }
}

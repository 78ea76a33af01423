//! Module input queues on PostgreSQL: one row per message, the body in its own column, the
//! rest as a JSON document; `seq` orders a module's messages, and a foreign key removes a
//! module's queue with it. Times are Unix milliseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ironhub_store::{InputMessage, ModuleInputStore, QueuedInput, Result};

use crate::PgStore;
use crate::store::{corrupt, db};

#[async_trait]
impl ModuleInputStore for PgStore {
    async fn input_enqueue(
        &self,
        device_id: &str,
        module_id: &str,
        message: &InputMessage,
        expiry_time: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        let doc = serde_json::to_string(&InputMessage {
            body: Vec::new(),
            ..message.clone()
        })
        .map_err(corrupt)?;
        let client = self.client().await?;
        // Inserted only beside an existing module (the foreign key holds it there).
        let row = client
            .query_opt(
                "INSERT INTO module_inputs (device_id, module_id, expiry, doc, body)
                 SELECT device_id, module_id, $3, $4::text::jsonb, $5 FROM modules
                 WHERE device_id = $1 AND module_id = $2
                 RETURNING seq",
                &[
                    &device_id,
                    &module_id,
                    &expiry_time.timestamp_millis(),
                    &doc,
                    &message.body,
                ],
            )
            .await
            .map_err(db)?;
        Ok(row.map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or_default()))
    }

    async fn input_pending(
        &self,
        device_id: &str,
        module_id: &str,
        after: u64,
        max: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<QueuedInput>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT seq, expiry, doc::text, body FROM module_inputs
                 WHERE device_id = $1 AND module_id = $2 AND seq > $3 AND expiry > $4
                 ORDER BY seq LIMIT $5",
                &[
                    &device_id,
                    &module_id,
                    &after,
                    &now.timestamp_millis(),
                    &max,
                ],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| {
                let mut message: InputMessage =
                    serde_json::from_str(row.get::<_, &str>(2)).map_err(corrupt)?;
                message.body = row.get(3);
                Ok(QueuedInput {
                    sequence_number: u64::try_from(row.get::<_, i64>(0)).unwrap_or_default(),
                    expiry_time: DateTime::from_timestamp_millis(row.get(1)).unwrap_or_default(),
                    message,
                })
            })
            .collect()
    }

    async fn input_remove(
        &self,
        device_id: &str,
        module_id: &str,
        sequence_number: u64,
    ) -> Result<bool> {
        let seq = i64::try_from(sequence_number).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let removed = client
            .execute(
                "DELETE FROM module_inputs WHERE seq = $1 AND device_id = $2 AND module_id = $3",
                &[&seq, &device_id, &module_id],
            )
            .await
            .map_err(db)?;
        Ok(removed > 0)
    }

    async fn input_expire(&self, now: DateTime<Utc>) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM module_inputs WHERE expiry <= $1",
                &[&now.timestamp_millis()],
            )
            .await
            .map_err(db)
    }
}

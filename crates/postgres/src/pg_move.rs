//! The move port on PostgreSQL: persistent MQTT sessions by client id, and the feedback and
//! file upload notification queues (the same columns: `enqueued`, `expiry`, `delivery_count`,
//! `lock_token`, `locked_until`, `doc`) by `seq`. Times are Unix milliseconds.

use async_trait::async_trait;
use chrono::DateTime;
use ironhub_store::{MoveStore, QueuedDoc, Result, ServiceQueue};

use crate::PgStore;
use crate::store::{corrupt, db};

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn time(ms: i64) -> DateTime<chrono::Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[async_trait]
impl MoveStore for PgStore {
    async fn mqtt_sessions_page(
        &self,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, Vec<String>)>> {
        let after = after.unwrap_or_default();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT client_id, doc::text FROM mqtt_sessions WHERE client_id COLLATE \"C\" > $1
                 ORDER BY client_id COLLATE \"C\" LIMIT $2",
                &[&after, &limit(n)],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let subscriptions = serde_json::from_str(r.get::<_, &str>(1)).map_err(corrupt)?;
                Ok((r.get::<_, String>(0), subscriptions))
            })
            .collect()
    }

    async fn queue_page(
        &self,
        queue: ServiceQueue,
        after: Option<i64>,
        n: usize,
    ) -> Result<Vec<QueuedDoc>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT seq, enqueued, expiry, delivery_count, doc::text FROM {} WHERE seq > $1
                     ORDER BY seq LIMIT $2",
                    queue.table()
                ),
                &[&after.unwrap_or(0), &limit(n)],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(QueuedDoc {
                    position: r.get(0),
                    enqueued: time(r.get(1)),
                    expiry: time(r.get(2)),
                    delivery_count: u32::try_from(r.get::<_, i32>(3)).unwrap_or_default(),
                    doc: serde_json::from_str(r.get::<_, &str>(4)).map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn queue_import(&self, queue: ServiceQueue, records: Vec<QueuedDoc>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let insert = format!(
            "INSERT INTO {} (enqueued, expiry, delivery_count, doc)
             VALUES ($1, $2, $3, $4::text::jsonb)",
            queue.table()
        );
        for r in &records {
            let doc = serde_json::to_string(&r.doc).map_err(corrupt)?;
            let count = i32::try_from(r.delivery_count).unwrap_or(i32::MAX);
            tx.execute(
                &insert,
                &[
                    &r.enqueued.timestamp_millis(),
                    &r.expiry.timestamp_millis(),
                    &count,
                    &doc,
                ],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}

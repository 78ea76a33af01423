//! The move port of the SQLite store: persistent MQTT sessions by client id, and the
//! feedback and file upload notification queues (the same columns: `enqueued`, `expiry`,
//! `delivery_count`, `lock_token`, `locked_until`, `doc`) by `seq`.

use async_trait::async_trait;
use ironhub_store::{MoveStore, QueuedDoc, ServiceQueue};
use rusqlite::{TransactionBehavior, params};

use crate::rows::{from_millis, millis};
use crate::sqlite::SqliteStore;

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl MoveStore for SqliteStore {
    async fn mqtt_sessions_page(
        &self,
        after: Option<&str>,
        n: usize,
    ) -> ironhub_store::Result<Vec<(String, Vec<String>)>> {
        let after = after.unwrap_or_default().to_owned();
        self.with(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT client_id, doc FROM mqtt_sessions WHERE client_id > ?1
                 ORDER BY client_id LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![after, limit(n)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut sessions = Vec::with_capacity(rows.len());
            for (id, doc) in rows {
                sessions.push((id, serde_json::from_str(&doc)?));
            }
            Ok(sessions)
        })
        .await
    }

    async fn queue_page(
        &self,
        queue: ServiceQueue,
        after: Option<i64>,
        n: usize,
    ) -> ironhub_store::Result<Vec<QueuedDoc>> {
        self.with(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT seq, enqueued, expiry, delivery_count, doc FROM {} WHERE seq > ?1
                 ORDER BY seq LIMIT ?2",
                queue.table()
            ))?;
            let rows = stmt
                .query_map(params![after.unwrap_or(0), limit(n)], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut docs = Vec::with_capacity(rows.len());
            for (position, enqueued, expiry, delivery_count, doc) in rows {
                docs.push(QueuedDoc {
                    position,
                    enqueued: from_millis(enqueued),
                    expiry: from_millis(expiry),
                    delivery_count,
                    doc: serde_json::from_str(&doc)?,
                });
            }
            Ok(docs)
        })
        .await
    }

    async fn queue_import(
        &self,
        queue: ServiceQueue,
        records: Vec<QueuedDoc>,
    ) -> ironhub_store::Result<()> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare(&format!(
                    "INSERT INTO {} (enqueued, expiry, delivery_count, doc) VALUES (?1, ?2, ?3, ?4)",
                    queue.table()
                ))?;
                for r in &records {
                    stmt.execute(params![
                        millis(r.enqueued),
                        millis(r.expiry),
                        r.delivery_count,
                        serde_json::to_string(&r.doc)?
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

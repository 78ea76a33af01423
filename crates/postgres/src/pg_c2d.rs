//! Cloud-to-device queues and feedback on PostgreSQL. The rules are the ports' own
//! ([`c2d_rules`]); this file reads a queue, asks them, and applies their decision in one
//! transaction, as the embedded engine does. Several nodes share the queues: every operation
//! locks the message rows it reads (`FOR UPDATE`, in sequence order, so two operations never
//! deadlock on one queue), so a node that locks a device's next message waits for another
//! doing the same and then sees that message locked: one message is never delivered to two
//! nodes, and a removal writes its feedback once. An enqueue locks the device's row, so
//! concurrent senders never overfill a queue. Times are Unix milliseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use ironhub_store::{
    C2dMessage, C2dRefusal, C2dRules, C2dSettle, C2dStore, FeedbackBatch, FeedbackStatus, Result,
    c2d_rules,
};

use crate::PgStore;
use crate::store::{corrupt, db, lock_device};

type Tx<'a> = deadpool_postgres::Transaction<'a>;

const MESSAGE_COLUMNS: &str =
    "seq, doc::text, body, delivery_count, lock_token, locked_until, lock_node";

/// A time stored as milliseconds (the epoch for an impossible one).
fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn to_message(row: &tokio_postgres::Row) -> Result<C2dMessage> {
    let mut m: C2dMessage = serde_json::from_str(row.get::<_, &str>(1)).map_err(corrupt)?;
    m.sequence_number = u64::try_from(row.get::<_, i64>(0)).unwrap_or_default();
    m.body = row.get(2);
    m.delivery_count = u32::try_from(row.get::<_, i32>(3)).unwrap_or_default();
    m.lock_token = row.get(4);
    m.locked_until = row.get::<_, Option<i64>>(5).map(from_millis);
    m.lock_node = row.get(6);
    Ok(m)
}

fn seq(message: &C2dMessage) -> i64 {
    i64::try_from(message.sequence_number).unwrap_or(i64::MAX)
}

/// The messages a condition selects, oldest first, locked until the transaction ends.
async fn lock_messages(
    tx: &Tx<'_>,
    condition: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<C2dMessage>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM c2d_messages WHERE {condition} ORDER BY seq FOR UPDATE"
    );
    let rows = tx.query(&sql, params).await.map_err(db)?;
    rows.iter().map(to_message).collect()
}

/// A device's whole queue, locked (bounded by the queue depth, plus what expired unnoticed).
async fn queue(tx: &Tx<'_>, device_id: &str) -> Result<Vec<C2dMessage>> {
    lock_messages(tx, "device_id = $1", &[&device_id]).await
}

/// Appends `message` to its device's queue with `delivery_count` deliveries and no lock;
/// returns it as stored.
async fn insert_message(
    tx: &Tx<'_>,
    mut message: C2dMessage,
    delivery_count: u32,
) -> Result<C2dMessage> {
    let doc = serde_json::to_string(&message).map_err(corrupt)?;
    let count = i32::try_from(delivery_count).unwrap_or(i32::MAX);
    let seq: i64 = tx
        .query_one(
            "INSERT INTO c2d_messages (device_id, expiry, doc, body, delivery_count)
             VALUES ($1, $2, $3::text::jsonb, $4, $5) RETURNING seq",
            &[
                &message.device_id,
                &message.expiry_time.timestamp_millis(),
                &doc,
                &message.body,
                &count,
            ],
        )
        .await
        .map_err(db)?
        .get(0);
    message.sequence_number = u64::try_from(seq).unwrap_or_default();
    message.delivery_count = delivery_count;
    c2d_rules::unlock(&mut message);
    Ok(message)
}

/// Removes a message from its queue, writing the feedback its `ack` asks for.
async fn remove_message(
    tx: &Tx<'_>,
    message: &C2dMessage,
    status: FeedbackStatus,
    rules: C2dRules,
    now: DateTime<Utc>,
) -> Result<()> {
    let removed = tx
        .execute("DELETE FROM c2d_messages WHERE seq = $1", &[&seq(message)])
        .await
        .map_err(db)?;
    if removed == 0 {
        return Ok(());
    }
    if let Some(record) = c2d_rules::feedback(message, status, now) {
        let doc = serde_json::to_string(&record).map_err(corrupt)?;
        tx.execute(
            "INSERT INTO c2d_feedback (enqueued, expiry, doc) VALUES ($1, $2, $3::text::jsonb)",
            &[
                &now.timestamp_millis(),
                &c2d_rules::feedback_expiry(rules, now).timestamp_millis(),
                &doc,
            ],
        )
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Applies planned removals to the messages of `queue` they name.
async fn remove_planned(
    tx: &Tx<'_>,
    queue: &[C2dMessage],
    removals: &[(u64, FeedbackStatus)],
    rules: C2dRules,
    now: DateTime<Utc>,
) -> Result<()> {
    for (m, status) in c2d_rules::planned(queue, removals) {
        remove_message(tx, m, status, rules, now).await?;
    }
    Ok(())
}

/// Stores a message's lock fields as the rules set them.
async fn store_lock(tx: &Tx<'_>, message: &C2dMessage) -> Result<()> {
    tx.execute(
        "UPDATE c2d_messages SET lock_token = $1, locked_until = $2, delivery_count = $3,
         lock_node = $4 WHERE seq = $5",
        &[
            &message.lock_token,
            &message.locked_until.map(|t| t.timestamp_millis()),
            &i32::try_from(message.delivery_count).unwrap_or(i32::MAX),
            &message.lock_node,
            &seq(message),
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl C2dStore for PgStore {
    async fn c2d_enqueue(
        &self,
        message: C2dMessage,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<C2dMessage, C2dRefusal>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        // The device's row lock orders the senders of one queue: each counts what the
        // previous one added.
        if !lock_device(&tx, &message.device_id).await? {
            return Ok(Err(C2dRefusal::DeviceNotFound));
        }
        let live: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM c2d_messages WHERE device_id = $1 AND expiry > $2",
                &[&message.device_id, &now.timestamp_millis()],
            )
            .await
            .map_err(db)?
            .get(0);
        if let Err(refusal) = c2d_rules::admit(usize::try_from(live).unwrap_or(usize::MAX), rules) {
            return Ok(Err(refusal));
        }
        let message = insert_message(&tx, message, 0).await?;
        tx.commit().await.map_err(db)?;
        Ok(Ok(message))
    }

    async fn c2d_queue(&self, device_id: &str) -> Result<Vec<C2dMessage>> {
        let client = self.client().await?;
        let sql =
            format!("SELECT {MESSAGE_COLUMNS} FROM c2d_messages WHERE device_id = $1 ORDER BY seq");
        let rows = client.query(&sql, &[&device_id]).await.map_err(db)?;
        rows.iter().map(to_message).collect()
    }

    async fn c2d_import(
        &self,
        message: C2dMessage,
    ) -> Result<std::result::Result<C2dMessage, C2dRefusal>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        if !lock_device(&tx, &message.device_id).await? {
            return Ok(Err(C2dRefusal::DeviceNotFound));
        }
        let delivery_count = message.delivery_count;
        let message = insert_message(&tx, message, delivery_count).await?;
        tx.commit().await.map_err(db)?;
        Ok(Ok(message))
    }

    async fn c2d_lock_next(
        &self,
        device_id: &str,
        node: &str,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<Option<C2dMessage>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let queue = queue(&tx, device_id).await?;
        let plan = c2d_rules::plan_lock_next(&queue, rules, now);
        remove_planned(&tx, &queue, &plan.removals, rules, now).await?;
        let next = plan
            .deliver
            .and_then(|n| queue.into_iter().find(|m| m.sequence_number == n));
        let Some(mut message) = next else {
            // What was dead-lettered stays so, even when nothing is left to deliver.
            tx.commit().await.map_err(db)?;
            return Ok(None);
        };
        c2d_rules::lock(&mut message, ironhub_auth::random_uuid(), node, rules, now);
        store_lock(&tx, &message).await?;
        tx.commit().await.map_err(db)?;
        Ok(Some(message))
    }

    async fn c2d_settle(
        &self,
        device_id: &str,
        lock_token: &str,
        settle: C2dSettle,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<Option<C2dMessage>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let found = lock_messages(
            &tx,
            "device_id = $1 AND lock_token = $2",
            &[&device_id, &lock_token],
        )
        .await?;
        let Some(message) = found.into_iter().next() else {
            return Ok(None);
        };
        match c2d_rules::settle_outcome(settle) {
            Some(status) => remove_message(&tx, &message, status, rules, now).await?,
            None => {
                let mut unlocked = message.clone();
                c2d_rules::unlock(&mut unlocked);
                store_lock(&tx, &unlocked).await?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(Some(message))
    }

    async fn c2d_purge(&self, device_id: &str, rules: C2dRules, now: DateTime<Utc>) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let queue = queue(&tx, device_id).await?;
        let removals = c2d_rules::plan_purge(&queue, now);
        remove_planned(&tx, &queue, &removals, rules, now).await?;
        tx.commit().await.map_err(db)?;
        let purged = removals
            .iter()
            .filter(|(_, status)| *status == FeedbackStatus::Purged)
            .count();
        Ok(purged as u64)
    }

    async fn c2d_expire(&self, rules: C2dRules, now: DateTime<Utc>) -> Result<u64> {
        let now_ms = now.timestamp_millis();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        // The index on `expiry` finds the candidates; the rule decides.
        let candidates = lock_messages(&tx, "expiry <= $1", &[&now_ms]).await?;
        let mut expired = 0;
        for m in candidates.iter().filter(|m| !c2d_rules::is_live(m, now)) {
            remove_message(&tx, m, FeedbackStatus::Expired, rules, now).await?;
            expired += 1;
        }
        tx.execute("DELETE FROM c2d_feedback WHERE expiry <= $1", &[&now_ms])
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(expired)
    }

    async fn c2d_release_locks(&self, node: &str) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let locked = lock_messages(
            &tx,
            "lock_token IS NOT NULL AND (lock_node IS NULL OR lock_node = $1)",
            &[&node],
        )
        .await?;
        let mut released = 0;
        for mut m in locked {
            if c2d_rules::released_by_restart_of(&m, node) {
                c2d_rules::unlock(&mut m);
                store_lock(&tx, &m).await?;
                released += 1;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(released)
    }

    async fn feedback_lock(
        &self,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<Option<FeedbackBatch>> {
        let now_ms = now.timestamp_millis();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute("DELETE FROM c2d_feedback WHERE expiry <= $1", &[&now_ms])
            .await
            .map_err(db)?;
        // Receivers on other nodes skip each other's records rather than wait.
        let rows = tx
            .query(
                "SELECT seq, enqueued, delivery_count, doc::text FROM c2d_feedback
                 WHERE lock_token IS NULL OR locked_until <= $1
                 ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED",
                &[&now_ms, &i64::try_from(rules.feedback_batch).unwrap_or(64)],
            )
            .await
            .map_err(db)?;
        if rows.is_empty() {
            tx.commit().await.map_err(db)?;
            return Ok(None);
        }
        let token = ironhub_auth::random_uuid();
        let until = (now + rules.feedback_lock_duration).timestamp_millis();
        let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        tx.execute(
            "UPDATE c2d_feedback SET lock_token = $1, locked_until = $2,
             delivery_count = delivery_count + 1 WHERE seq = ANY($3)",
            &[&token, &until, &seqs],
        )
        .await
        .map_err(db)?;
        let records = rows
            .iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(3)).map_err(corrupt))
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await.map_err(db)?;
        let enqueued = rows.iter().map(|r| r.get::<_, i64>(1)).min();
        let delivered = rows.iter().map(|r| r.get::<_, i32>(2) + 1).max();
        Ok(Some(FeedbackBatch {
            lock_token: token,
            enqueued_time: from_millis(enqueued.unwrap_or_default()),
            delivery_count: delivered.and_then(|n| u32::try_from(n).ok()).unwrap_or(1),
            records,
        }))
    }

    async fn feedback_settle(&self, lock_token: &str, complete: bool) -> Result<bool> {
        let sql = if complete {
            "DELETE FROM c2d_feedback WHERE lock_token = $1"
        } else {
            "UPDATE c2d_feedback SET lock_token = NULL, locked_until = NULL WHERE lock_token = $1"
        };
        let changed = self
            .client()
            .await?
            .execute(sql, &[&lock_token])
            .await
            .map_err(db)?;
        Ok(changed > 0)
    }
}

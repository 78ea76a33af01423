//! Cloud-to-device queues and feedback in the SQLite store. The rules (what counts, what is
//! visible, what is dead-lettered, which removals write feedback) are the ports' own
//! ([`c2d_rules`]); this file reads a queue, asks them, and applies their decision in one
//! transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ironhub_store::{
    C2dMessage, C2dRefusal, C2dRules, C2dSettle, C2dStore, FeedbackBatch, FeedbackStatus, c2d_rules,
};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::error::Result;
use crate::rows::{from_millis, millis};
use crate::sqlite::{SqliteStore, device_exists};

/// A new lock token: a random UUID, as IoT Hub's.
fn new_lock_token() -> String {
    ironhub_auth::random_uuid()
}

const MESSAGE_COLUMNS: &str = "seq, doc, body, delivery_count, lock_token, locked_until, lock_node";

/// A `c2d_messages` row as read: `MESSAGE_COLUMNS` in order.
type MessageRow = (
    i64,
    String,
    Vec<u8>,
    u32,
    Option<String>,
    Option<i64>,
    Option<String>,
);

fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn to_message(
    (seq, doc, body, delivery_count, lock_token, locked_until, lock_node): MessageRow,
) -> Result<C2dMessage> {
    let mut m: C2dMessage = serde_json::from_str(&doc)?;
    m.body = body;
    m.sequence_number = u64::try_from(seq).unwrap_or_default();
    m.delivery_count = delivery_count;
    m.lock_token = lock_token;
    m.locked_until = locked_until.map(from_millis);
    m.lock_node = lock_node;
    Ok(m)
}

fn seq(message: &C2dMessage) -> i64 {
    i64::try_from(message.sequence_number).unwrap_or(i64::MAX)
}

/// The messages a condition selects, oldest first.
fn select_messages(
    conn: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<C2dMessage>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM c2d_messages WHERE {condition} ORDER BY seq"
    ))?;
    let rows = stmt
        .query_map(params, message_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(to_message).collect()
}

/// A device's whole queue (bounded by the queue depth, plus what expired unnoticed).
fn queue(conn: &Connection, device_id: &str) -> Result<Vec<C2dMessage>> {
    select_messages(conn, "device_id = ?1", [device_id])
}

/// Appends `message` to its device's queue with `delivery_count` deliveries and no lock;
/// returns it as stored.
fn insert_message(
    conn: &Connection,
    mut message: C2dMessage,
    delivery_count: u32,
) -> Result<C2dMessage> {
    conn.prepare_cached(
        "INSERT INTO c2d_messages (device_id, expiry, doc, body, delivery_count)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        message.device_id,
        millis(message.expiry_time),
        serde_json::to_string(&message)?,
        message.body,
        delivery_count
    ])?;
    message.sequence_number = u64::try_from(conn.last_insert_rowid()).unwrap_or_default();
    message.delivery_count = delivery_count;
    c2d_rules::unlock(&mut message);
    Ok(message)
}

/// Removes a message from its queue, writing the feedback its `ack` asks for.
fn remove_message(
    conn: &Connection,
    message: &C2dMessage,
    status: FeedbackStatus,
    rules: C2dRules,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.prepare_cached("DELETE FROM c2d_messages WHERE seq = ?1")?
        .execute([seq(message)])?;
    if let Some(record) = c2d_rules::feedback(message, status, now) {
        conn.prepare_cached(
            "INSERT INTO c2d_feedback (enqueued, expiry, doc) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![
            millis(now),
            millis(c2d_rules::feedback_expiry(rules, now)),
            serde_json::to_string(&record)?
        ])?;
    }
    Ok(())
}

/// Applies planned removals to the messages of `queue` they name.
fn remove_planned(
    conn: &Connection,
    queue: &[C2dMessage],
    removals: &[(u64, FeedbackStatus)],
    rules: C2dRules,
    now: DateTime<Utc>,
) -> Result<()> {
    for (m, status) in c2d_rules::planned(queue, removals) {
        remove_message(conn, m, status, rules, now)?;
    }
    Ok(())
}

/// Stores a message's lock fields as the rules set them.
fn store_lock(conn: &Connection, message: &C2dMessage) -> Result<()> {
    conn.prepare_cached(
        "UPDATE c2d_messages SET lock_token = ?1, locked_until = ?2, delivery_count = ?3,
         lock_node = ?4 WHERE seq = ?5",
    )?
    .execute(params![
        message.lock_token,
        message.locked_until.map(millis),
        message.delivery_count,
        message.lock_node,
        seq(message)
    ])?;
    Ok(())
}

#[async_trait]
impl C2dStore for SqliteStore {
    async fn c2d_enqueue(
        &self,
        message: C2dMessage,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> ironhub_store::Result<std::result::Result<C2dMessage, C2dRefusal>> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !device_exists(&tx, &message.device_id)? {
                return Ok(Err(C2dRefusal::DeviceNotFound));
            }
            // The live messages, counted by the engine (the `expiry` column holds the rule's
            // `expiry_time` in milliseconds).
            let live: u64 = tx
                .prepare_cached(
                    "SELECT COUNT(*) FROM c2d_messages WHERE device_id = ?1 AND expiry > ?2",
                )?
                .query_row(params![message.device_id, millis(now)], |r| r.get(0))?;
            if let Err(refusal) =
                c2d_rules::admit(usize::try_from(live).unwrap_or(usize::MAX), rules)
            {
                return Ok(Err(refusal));
            }
            let message = insert_message(&tx, message, 0)?;
            tx.commit()?;
            Ok(Ok(message))
        })
        .await
    }

    async fn c2d_queue(&self, device_id: &str) -> ironhub_store::Result<Vec<C2dMessage>> {
        let device_id = device_id.to_owned();
        self.with(move |conn| queue(conn, &device_id)).await
    }

    async fn c2d_import(
        &self,
        message: C2dMessage,
    ) -> ironhub_store::Result<std::result::Result<C2dMessage, C2dRefusal>> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !device_exists(&tx, &message.device_id)? {
                return Ok(Err(C2dRefusal::DeviceNotFound));
            }
            let delivery_count = message.delivery_count;
            let message = insert_message(&tx, message, delivery_count)?;
            tx.commit()?;
            Ok(Ok(message))
        })
        .await
    }

    async fn c2d_lock_next(
        &self,
        device_id: &str,
        node: &str,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> ironhub_store::Result<Option<C2dMessage>> {
        let id = device_id.to_owned();
        let node = node.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let queue = queue(&tx, &id)?;
            let plan = c2d_rules::plan_lock_next(&queue, rules, now);
            remove_planned(&tx, &queue, &plan.removals, rules, now)?;
            let next = plan
                .deliver
                .and_then(|n| queue.into_iter().find(|m| m.sequence_number == n));
            let Some(mut message) = next else {
                tx.commit()?;
                return Ok(None);
            };
            c2d_rules::lock(&mut message, new_lock_token(), &node, rules, now);
            store_lock(&tx, &message)?;
            tx.commit()?;
            Ok(Some(message))
        })
        .await
    }

    async fn c2d_settle(
        &self,
        device_id: &str,
        lock_token: &str,
        settle: C2dSettle,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> ironhub_store::Result<Option<C2dMessage>> {
        let id = device_id.to_owned();
        let token = lock_token.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found = select_messages(
                &tx,
                "device_id = ?1 AND lock_token = ?2",
                params![id, token],
            )?;
            let Some(message) = found.into_iter().next() else {
                return Ok(None);
            };
            match c2d_rules::settle_outcome(settle) {
                Some(status) => remove_message(&tx, &message, status, rules, now)?,
                None => {
                    let mut unlocked = message.clone();
                    c2d_rules::unlock(&mut unlocked);
                    store_lock(&tx, &unlocked)?;
                }
            }
            tx.commit()?;
            Ok(Some(message))
        })
        .await
    }

    async fn c2d_purge(
        &self,
        device_id: &str,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> ironhub_store::Result<u64> {
        let id = device_id.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let queue = queue(&tx, &id)?;
            let removals = c2d_rules::plan_purge(&queue, now);
            remove_planned(&tx, &queue, &removals, rules, now)?;
            tx.commit()?;
            let purged = removals
                .iter()
                .filter(|(_, status)| *status == FeedbackStatus::Purged)
                .count();
            Ok(purged as u64)
        })
        .await
    }

    async fn c2d_release_locks(&self, node: &str) -> ironhub_store::Result<u64> {
        let node = node.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let locked = select_messages(&tx, "lock_token IS NOT NULL", [])?;
            let mut released = 0;
            for mut m in locked {
                if c2d_rules::released_by_restart_of(&m, &node) {
                    c2d_rules::unlock(&mut m);
                    store_lock(&tx, &m)?;
                    released += 1;
                }
            }
            tx.commit()?;
            Ok(released)
        })
        .await
    }

    async fn c2d_expire(&self, rules: C2dRules, now: DateTime<Utc>) -> ironhub_store::Result<u64> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // The index on `expiry` finds the candidates; the rule decides.
            let candidates = select_messages(&tx, "expiry <= ?1", [millis(now)])?;
            let mut expired = 0;
            for m in candidates.iter().filter(|m| !c2d_rules::is_live(m, now)) {
                remove_message(&tx, m, FeedbackStatus::Expired, rules, now)?;
                expired += 1;
            }
            tx.execute("DELETE FROM c2d_feedback WHERE expiry <= ?1", [millis(now)])?;
            tx.commit()?;
            Ok(expired)
        })
        .await
    }

    async fn feedback_lock(
        &self,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> ironhub_store::Result<Option<FeedbackBatch>> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM c2d_feedback WHERE expiry <= ?1", [millis(now)])?;
            let rows = {
                let mut stmt = tx.prepare_cached(
                    "SELECT seq, enqueued, delivery_count, doc FROM c2d_feedback
                     WHERE lock_token IS NULL OR locked_until <= ?1 ORDER BY seq LIMIT ?2",
                )?;
                stmt.query_map(
                    params![
                        millis(now),
                        i64::try_from(rules.feedback_batch).unwrap_or(64)
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, u32>(2)?,
                            r.get::<_, String>(3)?,
                        ))
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?
            };
            if rows.is_empty() {
                return Ok(None);
            }
            let token = new_lock_token();
            let until = millis(now + rules.feedback_lock_duration);
            let mut records = Vec::with_capacity(rows.len());
            for (seq, _, _, doc) in &rows {
                tx.execute(
                    "UPDATE c2d_feedback SET lock_token = ?1, locked_until = ?2,
                     delivery_count = delivery_count + 1 WHERE seq = ?3",
                    params![token, until, seq],
                )?;
                records.push(serde_json::from_str(doc)?);
            }
            tx.commit()?;
            Ok(Some(FeedbackBatch {
                lock_token: token,
                enqueued_time: from_millis(rows.iter().map(|r| r.1).min().unwrap_or_default()),
                delivery_count: rows.iter().map(|r| r.2 + 1).max().unwrap_or(1),
                records,
            }))
        })
        .await
    }

    async fn feedback_settle(
        &self,
        lock_token: &str,
        complete: bool,
    ) -> ironhub_store::Result<bool> {
        let token = lock_token.to_owned();
        self.with(move |conn| {
            let changed = if complete {
                conn.execute("DELETE FROM c2d_feedback WHERE lock_token = ?1", [token])?
            } else {
                conn.execute(
                    "UPDATE c2d_feedback SET lock_token = NULL, locked_until = NULL WHERE lock_token = ?1",
                    [token],
                )?
            };
            Ok(changed > 0)
        })
        .await
    }
}

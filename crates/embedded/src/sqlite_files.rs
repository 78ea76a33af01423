//! The file upload notification queue of the SQLite store. Times are Unix milliseconds; a
//! notification is visible when it has no lock or its lock has run out.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ironhub_store::{
    FileNotification, FileNotificationRules, FileNotificationStore, LockedFileNotification,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::Result;
use crate::rows::millis;
use crate::sqlite::SqliteStore;

/// Appends a notification; those whose time ran out go at the same time, so that a feed
/// nobody reads does not grow without end.
fn enqueue(
    conn: &mut Connection,
    notification: &FileNotification,
    expiry: DateTime<Utc>,
) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM file_notifications WHERE expiry <= ?1",
        [millis(notification.enqueued_time_utc)],
    )?;
    tx.execute(
        "INSERT INTO file_notifications (enqueued, expiry, doc) VALUES (?1, ?2, ?3)",
        params![
            millis(notification.enqueued_time_utc),
            millis(expiry),
            serde_json::to_string(notification)?
        ],
    )?;
    tx.commit()?;
    Ok(())
}

fn lock(
    conn: &mut Connection,
    rules: FileNotificationRules,
    now: DateTime<Utc>,
) -> Result<Option<LockedFileNotification>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM file_notifications WHERE expiry <= ?1
         OR (delivery_count >= ?2 AND (lock_token IS NULL OR locked_until <= ?1))",
        params![millis(now), rules.max_delivery_count],
    )?;
    let row = tx
        .query_row(
            "SELECT seq, delivery_count, doc FROM file_notifications
             WHERE lock_token IS NULL OR locked_until <= ?1 ORDER BY seq LIMIT 1",
            [millis(now)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?;
    let Some((seq, count, doc)) = row else {
        // What was dropped stays dropped, even when nothing is left to hand out.
        tx.commit()?;
        return Ok(None);
    };
    let token = ironhub_auth::random_uuid();
    tx.execute(
        "UPDATE file_notifications SET lock_token = ?1, locked_until = ?2,
         delivery_count = delivery_count + 1 WHERE seq = ?3",
        params![token, millis(now + rules.lock_duration), seq],
    )?;
    let notification: FileNotification = serde_json::from_str(&doc)?;
    tx.commit()?;
    Ok(Some(LockedFileNotification {
        lock_token: token,
        delivery_count: count + 1,
        notification,
    }))
}

fn settle(conn: &Connection, lock_token: &str, complete: bool, now: DateTime<Utc>) -> Result<bool> {
    // A lock that ran out is lost: the notification may be someone else's by now.
    let changed = if complete {
        conn.execute(
            "DELETE FROM file_notifications WHERE lock_token = ?1 AND locked_until > ?2",
            params![lock_token, millis(now)],
        )?
    } else {
        conn.execute(
            "UPDATE file_notifications SET lock_token = NULL, locked_until = NULL
             WHERE lock_token = ?1 AND locked_until > ?2",
            params![lock_token, millis(now)],
        )?
    };
    Ok(changed > 0)
}

#[async_trait]
impl FileNotificationStore for SqliteStore {
    async fn file_notification_enqueue(
        &self,
        notification: FileNotification,
        expiry: DateTime<Utc>,
    ) -> ironhub_store::Result<()> {
        self.with(move |conn| enqueue(conn, &notification, expiry))
            .await
    }

    async fn file_notification_lock(
        &self,
        rules: FileNotificationRules,
        now: DateTime<Utc>,
    ) -> ironhub_store::Result<Option<LockedFileNotification>> {
        self.with(move |conn| lock(conn, rules, now)).await
    }

    async fn file_notification_settle(
        &self,
        lock_token: &str,
        complete: bool,
        now: DateTime<Utc>,
    ) -> ironhub_store::Result<bool> {
        let token = lock_token.to_owned();
        self.with(move |conn| settle(conn, &token, complete, now))
            .await
    }
}

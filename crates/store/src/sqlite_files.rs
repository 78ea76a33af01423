//! The file upload notification queue of the SQLite store. Times are Unix milliseconds; a
//! notification is visible when it has no lock or its lock has run out.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::sqlite::{millis, new_lock_token};
use crate::{FileNotification, FileNotificationRules, LockedFileNotification, Result};

pub(crate) fn enqueue(
    conn: &Connection,
    notification: &FileNotification,
    expiry: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO file_notifications (enqueued, expiry, doc) VALUES (?1, ?2, ?3)",
        params![
            millis(notification.enqueued_time_utc),
            millis(expiry),
            serde_json::to_string(notification)?
        ],
    )?;
    Ok(())
}

pub(crate) fn lock(
    conn: &mut Connection,
    rules: FileNotificationRules,
    now: DateTime<Utc>,
) -> Result<Option<LockedFileNotification>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
        return Ok(None);
    };
    let token = new_lock_token();
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

pub(crate) fn settle(
    conn: &Connection,
    lock_token: &str,
    complete: bool,
    now: DateTime<Utc>,
) -> Result<bool> {
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

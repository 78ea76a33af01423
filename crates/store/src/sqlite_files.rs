//! The file upload notification queue of the SQLite store. Times are Unix milliseconds; a
//! notification is visible when it has no lock or its lock has run out.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::sqlite::{millis, new_lock_token};
use crate::{
    FileNotification, FileNotificationRules, FileNotificationStore, LockedFileNotification, Result,
    SqliteStore,
};

/// Appends a notification; those whose time ran out go at the same time, so that a feed
/// nobody reads does not grow without end.
fn enqueue(
    conn: &Connection,
    notification: &FileNotification,
    expiry: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        "DELETE FROM file_notifications WHERE expiry <= ?1",
        [millis(notification.enqueued_time_utc)],
    )?;
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

fn lock(
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
    ) -> Result<()> {
        self.with(move |conn| enqueue(conn, &notification, expiry))
            .await
    }

    async fn file_notification_lock(
        &self,
        rules: FileNotificationRules,
        now: DateTime<Utc>,
    ) -> Result<Option<LockedFileNotification>> {
        self.with(move |conn| lock(conn, rules, now)).await
    }

    async fn file_notification_settle(
        &self,
        lock_token: &str,
        complete: bool,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let token = lock_token.to_owned();
        self.with(move |conn| settle(conn, &token, complete, now))
            .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use crate::SqliteStore;

    use super::*;

    fn notification(blob: &str, at: DateTime<Utc>) -> FileNotification {
        FileNotification {
            device_id: "d1".into(),
            blob_uri: format!("https://acct.blob.core.windows.net/c/{blob}"),
            blob_name: blob.into(),
            last_updated_time: Some(at),
            blob_size_in_bytes: Some(5),
            enqueued_time_utc: at,
        }
    }

    #[tokio::test]
    async fn lock_settle_redeliver_expire_and_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let rules = FileNotificationRules {
            lock_duration: TimeDelta::seconds(60),
            max_delivery_count: 2,
        };
        let t0 = Utc::now();
        let hour = TimeDelta::hours(1);
        for blob in ["d1/a", "d1/b", "d1/c"] {
            store
                .file_notification_enqueue(notification(blob, t0), t0 + hour)
                .await
                .unwrap();
        }
        // Oldest first; a locked one is not handed out again while its lock holds.
        let a = store
            .file_notification_lock(rules, t0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.notification.blob_name.as_str(), a.delivery_count),
            ("d1/a", 1)
        );
        let b = store
            .file_notification_lock(rules, t0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.notification.blob_name, "d1/b");
        assert!(
            store
                .file_notification_settle(&b.lock_token, true, t0)
                .await
                .unwrap()
        );
        assert!(
            !store
                .file_notification_settle(&b.lock_token, true, t0)
                .await
                .unwrap()
        );
        // a's lock runs out: it is redelivered (its old token is lost), then dropped once it
        // was received max_delivery_count times.
        let later = t0 + TimeDelta::seconds(61);
        let again = store
            .file_notification_lock(rules, later)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.notification.blob_name.as_str(), again.delivery_count),
            ("d1/a", 2)
        );
        assert!(
            !store
                .file_notification_settle(&a.lock_token, true, later)
                .await
                .unwrap()
        );
        assert!(
            store
                .file_notification_settle(&again.lock_token, false, later)
                .await
                .unwrap()
        );
        let c = store
            .file_notification_lock(rules, later)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.notification.blob_name, "d1/c");
        assert!(
            store
                .file_notification_settle(&c.lock_token, false, later)
                .await
                .unwrap()
        );
        // c expires unreceived after its TTL.
        assert!(
            store
                .file_notification_lock(rules, t0 + hour)
                .await
                .unwrap()
                .is_none()
        );
        // Kept on disk: a reopened store still has what was not settled.
        store
            .file_notification_enqueue(notification("d1/d", t0), t0 + hour)
            .await
            .unwrap();
        drop(store);
        let reopened = SqliteStore::open(dir.path()).unwrap();
        let c_again = reopened
            .file_notification_lock(rules, t0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                c_again.notification.blob_name.as_str(),
                c_again.delivery_count
            ),
            ("d1/c", 2)
        );
        let d = reopened
            .file_notification_lock(rules, t0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.notification, notification("d1/d", t0));
    }
}

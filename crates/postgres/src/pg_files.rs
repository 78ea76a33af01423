//! The file upload notification queue on PostgreSQL. Times are Unix milliseconds; a
//! notification is visible when it has no lock or its lock has run out. Nodes receiving at
//! the same time skip each other's rows (`FOR UPDATE SKIP LOCKED`) rather than wait.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ironhub_store::{
    FileNotification, FileNotificationRules, FileNotificationStore, LockedFileNotification, Result,
};

use crate::PgStore;
use crate::store::{corrupt, db};

#[async_trait]
impl FileNotificationStore for PgStore {
    async fn file_notification_enqueue(
        &self,
        notification: FileNotification,
        expiry: DateTime<Utc>,
    ) -> Result<()> {
        let doc = serde_json::to_string(&notification).map_err(corrupt)?;
        let enqueued = notification.enqueued_time_utc.timestamp_millis();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        // Those whose time ran out go at the same time, so an unread feed does not grow.
        tx.execute(
            "DELETE FROM file_notifications WHERE expiry <= $1",
            &[&enqueued],
        )
        .await
        .map_err(db)?;
        tx.execute(
            "INSERT INTO file_notifications (enqueued, expiry, doc) VALUES ($1, $2, $3::text::jsonb)",
            &[&enqueued, &expiry.timestamp_millis(), &doc],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn file_notification_lock(
        &self,
        rules: FileNotificationRules,
        now: DateTime<Utc>,
    ) -> Result<Option<LockedFileNotification>> {
        let now_ms = now.timestamp_millis();
        let max = i32::try_from(rules.max_delivery_count).unwrap_or(i32::MAX);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute(
            "DELETE FROM file_notifications WHERE expiry <= $1
             OR (delivery_count >= $2 AND (lock_token IS NULL OR locked_until <= $1))",
            &[&now_ms, &max],
        )
        .await
        .map_err(db)?;
        let row = tx
            .query_opt(
                "SELECT seq, delivery_count, doc::text FROM file_notifications
                 WHERE lock_token IS NULL OR locked_until <= $1
                 ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED",
                &[&now_ms],
            )
            .await
            .map_err(db)?;
        let Some(row) = row else {
            // What was dropped stays dropped, even when nothing is left to hand out.
            tx.commit().await.map_err(db)?;
            return Ok(None);
        };
        let seq: i64 = row.get(0);
        let count: i32 = row.get(1);
        let notification: FileNotification =
            serde_json::from_str(row.get::<_, &str>(2)).map_err(corrupt)?;
        let token = ironhub_auth::random_uuid();
        let until = (now + rules.lock_duration).timestamp_millis();
        tx.execute(
            "UPDATE file_notifications SET lock_token = $1, locked_until = $2,
             delivery_count = delivery_count + 1 WHERE seq = $3",
            &[&token, &until, &seq],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(LockedFileNotification {
            lock_token: token,
            delivery_count: u32::try_from(count).unwrap_or(0) + 1,
            notification,
        }))
    }

    async fn file_notification_settle(
        &self,
        lock_token: &str,
        complete: bool,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        // A lock that ran out is lost: the notification may be someone else's by now.
        let sql = if complete {
            "DELETE FROM file_notifications WHERE lock_token = $1 AND locked_until > $2"
        } else {
            "UPDATE file_notifications SET lock_token = NULL, locked_until = NULL
             WHERE lock_token = $1 AND locked_until > $2"
        };
        let changed = self
            .client()
            .await?
            .execute(sql, &[&lock_token, &now.timestamp_millis()])
            .await
            .map_err(db)?;
        Ok(changed > 0)
    }
}

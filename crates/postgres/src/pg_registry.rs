//! The device registry on PostgreSQL: the hub's settings, where it listens, device identities
//! and the nodes' heartbeats. Times are Unix milliseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ironhub_store::{
    BatchResult, ConnectionState, DeviceCounts, DeviceRecord, DeviceStatus, DeviceWrite, Endpoint,
    HubSettings, RegistryStore, Result, RuntimeUpdate, WriteConflict,
};

use crate::PgStore;
use crate::store::{corrupt, db, meta, meta_or_init, next_etag, tag_matches, write_all};

/// The columns of a device read with its live `cloudToDeviceMessageCount` (`$now`: the
/// placeholder of the time), counted from its queue on every read so it is always current.
fn device_select(now: &str) -> String {
    format!(
        "SELECT doc::text, (SELECT COUNT(*) FROM c2d_messages m
                            WHERE m.device_id = d.device_id AND m.expiry > {now})
         FROM devices d"
    )
}

pub(crate) fn device_from_row(row: &tokio_postgres::Row) -> Result<DeviceRecord> {
    let mut device: DeviceRecord = serde_json::from_str(row.get::<_, &str>(0)).map_err(corrupt)?;
    device.cloud_to_device_message_count = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
    Ok(device)
}

/// One device; locked until the transaction ends (`lock`).
async fn load_device(
    client: &impl deadpool_postgres::GenericClient,
    id: &str,
    now: DateTime<Utc>,
    lock: bool,
) -> Result<Option<DeviceRecord>> {
    let sql = format!(
        "{} WHERE device_id = $1{}",
        device_select("$2"),
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = client
        .query_opt(&sql, &[&id, &now.timestamp_millis()])
        .await
        .map_err(db)?;
    row.as_ref().map(device_from_row).transpose()
}

/// Writes a device as it is, etag included; with `create`, only if its id is free (false if
/// not).
async fn store_device(
    client: &impl deadpool_postgres::GenericClient,
    record: &DeviceRecord,
    create: bool,
) -> Result<bool> {
    let on_conflict = if create {
        "DO NOTHING"
    } else {
        "DO UPDATE SET enabled = excluded.enabled, connected = excluded.connected,
         doc = excluded.doc"
    };
    let sql = format!(
        "INSERT INTO devices (device_id, enabled, connected, doc)
         VALUES ($1, $2, $3, $4::text::jsonb) ON CONFLICT (device_id) {on_conflict}"
    );
    let doc = serde_json::to_string(record).map_err(corrupt)?;
    let n = client
        .execute(
            &sql,
            &[
                &record.device_id,
                &(record.status == DeviceStatus::Enabled),
                &(record.connection_state == ConnectionState::Connected),
                &doc,
            ],
        )
        .await
        .map_err(db)?;
    Ok(n > 0)
}

/// Escapes `%`, `_` and `\` for a LIKE pattern (device ids may contain `%` and `_`).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Applies one device write inside the caller's transaction.
pub(crate) async fn apply(
    client: &impl deadpool_postgres::GenericClient,
    write: DeviceWrite,
    now: DateTime<Utc>,
) -> Result<std::result::Result<Option<DeviceRecord>, WriteConflict>> {
    let current = load_device(client, write.device_id(), now, true).await?;
    let matches = |current: &DeviceRecord, tag: Option<&str>| {
        tag.is_none_or(|tag| tag_matches(&current.etag, tag))
    };
    Ok(match (write, current) {
        (DeviceWrite::Create(_), Some(_)) => Err(WriteConflict::AlreadyExists),
        (DeviceWrite::Create(mut record), None) => {
            record.etag = next_etag(client).await?;
            if store_device(client, &record, true).await? {
                Ok(Some(record))
            } else {
                // Created by another node since the read.
                Err(WriteConflict::AlreadyExists)
            }
        }
        (DeviceWrite::Replace { .. } | DeviceWrite::Delete { .. }, None) => {
            Err(WriteConflict::NotFound)
        }
        (
            DeviceWrite::Replace {
                mut record,
                if_match,
            },
            Some(current),
        ) => {
            if matches(&current, if_match.as_deref()) {
                record.keep_runtime_of(&current);
                record.etag = next_etag(client).await?;
                store_device(client, &record, false).await?;
                Ok(Some(record))
            } else {
                Err(WriteConflict::EtagMismatch)
            }
        }
        (DeviceWrite::Delete { id, if_match }, Some(current)) => {
            if matches(&current, if_match.as_deref()) {
                // The twin, the queue and the persistent sessions (the device's, and its
                // modules' `device/module`) go with it.
                for sql in [
                    "DELETE FROM devices WHERE device_id = $1",
                    "DELETE FROM twins WHERE device_id = $1",
                    "DELETE FROM c2d_messages WHERE device_id = $1",
                ] {
                    client.execute(sql, &[&id]).await.map_err(db)?;
                }
                client
                    .execute(
                        "DELETE FROM mqtt_sessions WHERE client_id = $1
                         OR client_id LIKE $2 ESCAPE '\\'",
                        &[&id, &format!("{}/%", like_escape(&id))],
                    )
                    .await
                    .map_err(db)?;
                Ok(None)
            } else {
                Err(WriteConflict::EtagMismatch)
            }
        }
    })
}

#[async_trait]
impl RegistryStore for PgStore {
    async fn hub_settings_or_init(&self, init: HubSettings) -> Result<HubSettings> {
        meta_or_init(&self.client().await?, "hub", init).await
    }

    async fn hub_settings(&self) -> Result<Option<HubSettings>> {
        meta(&self.client().await?, "hub").await
    }

    async fn set_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        let value = serde_json::to_string(endpoint).map_err(corrupt)?;
        self.client()
            .await?
            .execute(
                "INSERT INTO meta (key, value) VALUES ('endpoint', $1::text::jsonb)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&value],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn endpoint(&self) -> Result<Option<Endpoint>> {
        meta(&self.client().await?, "endpoint").await
    }

    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>> {
        load_device(&self.client().await?, id, self.clock.now(), false).await
    }

    async fn list_devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<DeviceRecord>> {
        let sql = format!(
            "{} WHERE device_id > $1 ORDER BY device_id LIMIT $2",
            device_select("$3")
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .query(
                &sql,
                &[
                    &after.unwrap_or(""),
                    &limit,
                    &self.clock.now().timestamp_millis(),
                ],
            )
            .await
            .map_err(db)?;
        rows.iter().map(device_from_row).collect()
    }

    async fn device_counts(&self) -> Result<DeviceCounts> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE enabled),
                        COUNT(*) FILTER (WHERE connected) FROM devices",
                &[],
            )
            .await
            .map_err(db)?;
        let n = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
        Ok(DeviceCounts {
            total: n(0),
            enabled: n(1),
            disabled: n(0) - n(1),
            connected: n(2),
        })
    }

    async fn update_device_runtime(&self, id: &str, update: RuntimeUpdate) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(mut device) = load_device(&tx, id, self.clock.now(), true).await? else {
            return Ok(false);
        };
        if update.apply_to(&mut device) {
            store_device(&tx, &device, false).await?;
            tx.commit().await.map_err(db)?;
        }
        Ok(true)
    }

    async fn disconnect_node(&self, node: &str) -> Result<u64> {
        let now = self.clock.now();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let rows = tx
            .query(
                "SELECT doc::text FROM devices WHERE connected FOR UPDATE",
                &[],
            )
            .await
            .map_err(db)?;
        let mut disconnected = 0;
        for row in &rows {
            let mut device: DeviceRecord =
                serde_json::from_str(row.get::<_, &str>(0)).map_err(corrupt)?;
            if device.runtime().disconnect_from(node, now) {
                store_device(&tx, &device, false).await?;
                disconnected += 1;
            }
        }
        disconnected += crate::pg_modules::disconnect_node_modules(&tx, node, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(disconnected)
    }

    async fn node_heartbeat(&self, node: &str, until: DateTime<Utc>) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO nodes (node, lease_until) VALUES ($1, $2)
                 ON CONFLICT (node) DO UPDATE SET lease_until = excluded.lease_until",
                &[&node, &until.timestamp_millis()],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn expired_nodes(&self, now: DateTime<Utc>) -> Result<Vec<String>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT node FROM nodes WHERE lease_until <= $1 ORDER BY node COLLATE \"C\"",
                &[&now.timestamp_millis()],
            )
            .await
            .map_err(db)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn forget_node(&self, node: &str) -> Result<()> {
        self.client()
            .await?
            .execute("DELETE FROM nodes WHERE node = $1", &[&node])
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn write_devices(&self, writes: Vec<DeviceWrite>) -> Result<BatchResult> {
        let now = self.clock.now();
        write_all(self, writes, async move |tx, write| {
            apply(tx, write, now).await
        })
        .await
    }
}

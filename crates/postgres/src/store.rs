//! The PostgreSQL store: a pool over a migrated database, and what its ports share.

use base64::Engine as _;
use std::sync::Arc;

use ironhub_store::{Clock, Result, StoreError, SystemClock, WriteConflict};

use crate::{PgOptions, Pool, connect, migrate, pool};

/// The store ports on PostgreSQL: every durable port and the rate windows.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: Pool,
    /// Where time rules read the time (the count of live cloud-to-device messages).
    pub(crate) clock: Arc<dyn Clock>,
}

impl PgStore {
    /// Connects to the database of `options` and brings its schema up to date.
    pub async fn open(options: &PgOptions) -> Result<Self> {
        Self::open_with_clock(options, Arc::new(SystemClock)).await
    }

    /// [`PgStore::open`], reading the time from `clock` (a `ManualClock` in tests).
    pub async fn open_with_clock(options: &PgOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let pool = connect(options).await?;
        migrate(&pool).await?;
        Ok(Self { pool, clock })
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        pool::client(&self.pool).await
    }
}

/// A failed statement, as the ports report it: `Unavailable` when the server went away
/// (the connection closed, or the server is shutting down or starting).
pub(crate) fn db(e: tokio_postgres::Error) -> StoreError {
    if pool::server_gone(&e) {
        return StoreError::Unavailable(format!("PostgreSQL: {e}"));
    }
    StoreError::Engine(format!("PostgreSQL: {e}"))
}

/// A stored document that does not parse.
pub(crate) fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A fresh etag, unique for the lifetime of the database (shaped as the embedded engine's).
pub(crate) async fn next_etag(client: &impl deadpool_postgres::GenericClient) -> Result<String> {
    let next: i64 = client
        .query_one("SELECT nextval('etag_counter')", &[])
        .await
        .map_err(db)?
        .get(0);
    Ok(base64::engine::general_purpose::STANDARD.encode(next.to_string()))
}

/// Locks a device's row until the transaction ends, ordering the writes of what belongs to
/// it (its twin, its queue) and its deletion; `false` when there is no such device.
pub(crate) async fn lock_device(
    client: &impl deadpool_postgres::GenericClient,
    device_id: &str,
) -> Result<bool> {
    let row = client
        .query_opt(
            "SELECT 1 FROM devices WHERE device_id = $1 FOR UPDATE",
            &[&device_id],
        )
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

/// Whether an `If-Match` tag accepts the stored etag.
pub(crate) fn tag_matches(current: &str, if_match: &str) -> bool {
    if_match == "*" || if_match == current
}

/// A setting kept in `meta` under `key`, if it was ever set.
pub(crate) async fn meta<T: serde::de::DeserializeOwned>(
    client: &impl deadpool_postgres::GenericClient,
    key: &str,
) -> Result<Option<T>> {
    let row = client
        .query_opt("SELECT value::text FROM meta WHERE key = $1", &[&key])
        .await
        .map_err(db)?;
    row.map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt))
        .transpose()
}

/// The setting under `key`; `init` is stored on the very first call and never replaced, even
/// when nodes race to store theirs (the first one's wins, and all of them return it).
pub(crate) async fn meta_or_init<T: serde::Serialize + serde::de::DeserializeOwned>(
    client: &impl deadpool_postgres::GenericClient,
    key: &str,
    init: T,
) -> Result<T> {
    let value = serde_json::to_string(&init).map_err(corrupt)?;
    client
        .execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2::text::jsonb) ON CONFLICT (key) DO NOTHING",
            &[&key, &value],
        )
        .await
        .map_err(db)?;
    meta(client, key)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("the setting {key} vanished")))
}

/// Applies every write in one transaction, committed only when none conflicts: every result,
/// or every conflict with its write's index.
pub(crate) async fn write_all<W, R>(
    store: &PgStore,
    writes: Vec<W>,
    mut apply: impl AsyncFnMut(
        &deadpool_postgres::Transaction<'_>,
        W,
    ) -> Result<std::result::Result<R, WriteConflict>>,
) -> Result<std::result::Result<Vec<R>, Vec<(usize, WriteConflict)>>> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(db)?;
    let mut done = Vec::with_capacity(writes.len());
    let mut failed = Vec::new();
    for (i, write) in writes.into_iter().enumerate() {
        match apply(&tx, write).await? {
            Ok(record) => done.push(record),
            Err(conflict) => failed.push((i, conflict)),
        }
    }
    if failed.is_empty() {
        tx.commit().await.map_err(db)?;
        Ok(Ok(done))
    } else {
        tx.rollback().await.map_err(db)?;
        Ok(Err(failed))
    }
}

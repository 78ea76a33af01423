//! The embedded store: one SQLite database in the data directory.
//!
//! WAL journal with `synchronous=FULL`: a write is on disk before the call returns, so an
//! acknowledged write survives `kill -9` and power loss. Other processes (the CLI and
//! `ironhub info`) may read the same file while the server runs. Pure reads go to a few
//! read-only connections beside the writers (`readers`), so they never wait for an fsync.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use rusqlite::{Connection, OptionalExtension, params};

use chrono::{DateTime, Utc};

use ironhub_store::{
    BatchResult, CertificateRecord, CertificateScope, CertificateStore, Clock, ConnectionState,
    DeviceCounts, DeviceRecord, DeviceStatus, DeviceTwin, DeviceWrite, Endpoint, HubSettings,
    RegistryStore, RuntimeUpdate, SessionStore, StoreError, SystemClock, TwinAggregate, TwinGroup,
    TwinRecord, TwinScan, TwinStore, TwinTop, WriteConflict,
};

use crate::error::Result;
use crate::readers::{READERS, Readers};
use crate::rows::{device_from_doc, millis};
use crate::runtime_batch::RuntimeBatch;

type StoreResult<T> = ironhub_store::Result<T>;

const FILE_NAME: &str = "ironhub.db";
/// Schema migrations, applied in order; the schema version is how many have been applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE devices (
         device_id TEXT PRIMARY KEY,
         enabled INTEGER NOT NULL,
         connected INTEGER NOT NULL,
         doc TEXT NOT NULL
     );",
    "CREATE TABLE mqtt_sessions (client_id TEXT PRIMARY KEY, doc TEXT NOT NULL);",
    "CREATE TABLE twins (device_id TEXT PRIMARY KEY, doc TEXT NOT NULL);",
    // Cloud-to-device queues and their feedback. Times are Unix milliseconds; a message is
    // visible when it has no lock or its lock has run out.
    "CREATE TABLE c2d_messages (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         device_id TEXT NOT NULL,
         expiry INTEGER NOT NULL,
         delivery_count INTEGER NOT NULL DEFAULT 0,
         lock_token TEXT,
         locked_until INTEGER,
         doc TEXT NOT NULL,
         body BLOB NOT NULL
     );
     CREATE INDEX c2d_messages_by_device ON c2d_messages (device_id, seq);
     CREATE INDEX c2d_messages_by_expiry ON c2d_messages (expiry);
     CREATE TABLE c2d_feedback (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         enqueued INTEGER NOT NULL,
         expiry INTEGER NOT NULL,
         delivery_count INTEGER NOT NULL DEFAULT 0,
         lock_token TEXT,
         locked_until INTEGER,
         doc TEXT NOT NULL
     );
     CREATE INDEX c2d_feedback_by_lock ON c2d_feedback (lock_token);",
    "CREATE TABLE certificates (name TEXT PRIMARY KEY, doc TEXT NOT NULL);",
    // Device Provisioning Service (its settings live in `meta` under "dps"). `id_key` is the
    // lower-cased id, so that lookups, uniqueness and order ignore case; `group_key` the
    // lower-cased enrollment group of a registration.
    "CREATE TABLE dps_enrollments (id_key TEXT PRIMARY KEY, group_key TEXT, doc TEXT NOT NULL);
     CREATE TABLE dps_enrollment_groups (
         id_key TEXT PRIMARY KEY, group_key TEXT, doc TEXT NOT NULL
     );
     CREATE TABLE dps_registrations (id_key TEXT PRIMARY KEY, group_key TEXT, doc TEXT NOT NULL);
     CREATE INDEX dps_registrations_by_group ON dps_registrations (group_key, id_key);
     CREATE TABLE dps_linked_hubs (id_key TEXT PRIMARY KEY, group_key TEXT, doc TEXT NOT NULL);",
    // The DPS instance's CA certificates (the hub's stay in `certificates`), and the latest
    // registration operation of each device, keyed by its registration id.
    "CREATE TABLE dps_certificates (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
     CREATE TABLE dps_operations (id_key TEXT PRIMARY KEY, group_key TEXT, doc TEXT NOT NULL);",
    // The node whose connection holds a message's lock (NULL: a server before node ids).
    "ALTER TABLE c2d_messages ADD COLUMN lock_node TEXT;",
    // Each node's heartbeat: until when it is alive (Unix milliseconds).
    "CREATE TABLE nodes (node TEXT PRIMARY KEY, lease_until INTEGER NOT NULL);",
    // File upload notifications waiting for a service (`sqlite_files`).
    "CREATE TABLE file_notifications (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         enqueued INTEGER NOT NULL,
         expiry INTEGER NOT NULL,
         delivery_count INTEGER NOT NULL DEFAULT 0,
         lock_token TEXT,
         locked_until INTEGER,
         doc TEXT NOT NULL
     );
     CREATE INDEX file_notifications_by_lock ON file_notifications (lock_token);",
    // Module identities and their twins (`sqlite_modules`); a device's go with it.
    "CREATE TABLE modules (
         device_id TEXT NOT NULL,
         module_id TEXT NOT NULL,
         doc TEXT NOT NULL,
         twin TEXT,
         PRIMARY KEY (device_id, module_id)
     );",
    // Scheduled jobs and each job's result per device (`sqlite_jobs`).
    "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
     CREATE TABLE job_devices (
         device_id TEXT NOT NULL,
         job_id TEXT NOT NULL,
         doc TEXT NOT NULL,
         PRIMARY KEY (device_id, job_id)
     );
     CREATE INDEX job_devices_by_job ON job_devices (job_id, device_id);",
    // Module input queues (`sqlite_module_inputs`); a module's go with it. `expiry` is Unix
    // milliseconds.
    "CREATE TABLE module_inputs (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         device_id TEXT NOT NULL,
         module_id TEXT NOT NULL,
         expiry INTEGER NOT NULL,
         doc TEXT NOT NULL,
         body BLOB NOT NULL
     );
     CREATE INDEX module_inputs_by_module ON module_inputs (device_id, module_id, seq);
     CREATE INDEX module_inputs_by_expiry ON module_inputs (expiry);",
    // Exclusive readers' claims on event hub partitions (`sqlite_reader_claims`); `until` is
    // Unix milliseconds.
    "CREATE TABLE reader_claims (
         key TEXT PRIMARY KEY,
         holder TEXT NOT NULL,
         epoch INTEGER NOT NULL,
         lease_until INTEGER NOT NULL
     );",
    // The registry's counts (`device_counts`, the console's overview) read this narrow index
    // instead of every device's document.
    "CREATE INDEX IF NOT EXISTS devices_by_state ON devices (enabled, connected);",
    // Twin queries on `status` and `connectionState` (`sqlite_query`): each state's devices
    // in id order, so that a page of them is one range however few there are. The counts
    // read them too, so the index of migration 15 goes (a device write updates one index
    // fewer).
    "CREATE INDEX IF NOT EXISTS devices_by_enabled ON devices (enabled, device_id);
     CREATE INDEX IF NOT EXISTS devices_by_connected ON devices (connected, device_id);
     DROP INDEX IF EXISTS devices_by_state;",
];
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Prepared statements kept per connection, enough for every statement of the ports (one per
/// table and operation): with rusqlite's default of 16 some were evicted and parsed again
/// (SQLite's parser took half as much of a DPS provisioning profile with this).
const STATEMENT_CACHE: usize = 256;

/// The SQLite-backed store: every port of [`ironhub_store::Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Where time rules read the time (the count of live cloud-to-device messages, the time a
    /// start disconnects devices).
    clock: Arc<dyn Clock>,
    conn: Arc<Mutex<Connection>>,
    /// For runtime fields (connection state, activity): `synchronous=NORMAL`, which in WAL mode
    /// survives a process crash but not a power cut, and spares every CONNECT an fsync.
    runtime: Arc<Mutex<Connection>>,
    /// Read-only connections for reads that decide no write ([`SqliteStore::read`]).
    readers: Arc<Readers>,
    /// Devices' runtime updates, committed in groups on `runtime`.
    runtime_batch: Arc<RuntimeBatch>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Engine(format!("cannot create {}: {e}", dir.display())))?;
        Ok(Self::open_file(&dir.join(FILE_NAME))?)
    }

    /// Opens the store in `dir` only if a server has created it there.
    pub fn open_existing(dir: &Path) -> StoreResult<Self> {
        let path = dir.join(FILE_NAME);
        if !path.is_file() {
            return Err(StoreError::NotInitialised(dir.display().to_string()));
        }
        Ok(Self::open_file(&path)?)
    }

    fn open_file(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "{} has schema version {version}; this ironhub knows up to {SCHEMA_VERSION}",
                path.display()
            ))
            .into());
        }
        for (target, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .map(|(i, m)| (i as i64 + 1, m))
        {
            if version >= target {
                continue;
            }
            // Another process (a server and the CLI starting together) may have applied it
            // since the version was read: check again under the write lock.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let applied: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if applied < target {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", target)?;
            }
            tx.commit()?;
        }
        let runtime = Connection::open(path)?;
        runtime.busy_timeout(std::time::Duration::from_secs(10))?;
        runtime.pragma_update(None, "synchronous", "NORMAL")?;
        runtime.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let readers = Readers::open(path, READERS, STATEMENT_CACHE)?;
        Ok(Self {
            clock: Arc::new(SystemClock),
            conn: Arc::new(Mutex::new(conn)),
            runtime: Arc::new(Mutex::new(runtime)),
            readers: Arc::new(readers),
            runtime_batch: Arc::new(RuntimeBatch::new(apply_runtime)),
            path: path.to_owned(),
        })
    }

    /// The same store reading the time from `clock` (tests move time instead of sleeping).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The time the store's rules read.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes devices with their twins (replacing any with the same id) in one transaction,
    /// each record with a new etag: a fleet for benchmarks, without a commit per record.
    pub async fn load_fleet(&self, fleet: Vec<(DeviceRecord, TwinRecord)>) -> StoreResult<()> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (device, mut twin) in fleet {
                save_device(&tx, device)?;
                twin.etag = next_etag(&tx)?;
                store_twin(&tx, &twin)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Runs `f` with the connection on the blocking pool.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        Self::run_on(self.conn.clone(), f).await
    }

    /// Runs `f` with the connection of runtime state (`synchronous=NORMAL`: it survives
    /// `kill -9`, not a power cut) on the blocking pool.
    pub(crate) async fn with_runtime<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        Self::run_on(self.runtime.clone(), f).await
    }

    /// Runs `f` on a read-only connection, in a transaction of its own, on the blocking pool:
    /// for reads that decide no write (see `readers`). It sees every write that returned
    /// before it was called.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || -> StoreResult<T> { Ok(readers.run(f)?) })
            .await
            .map_err(|e| StoreError::Engine(e.to_string()))?
    }

    /// [`SqliteStore::read`] for a read of a few rows by key (a device at CONNECT, a
    /// session, an enrollment): when a reader is free it runs at once on the calling thread,
    /// sparing the hand-over to the blocking pool and back (two thread switches), which cost
    /// more than such a read; otherwise it goes to the blocking pool. Only for reads that
    /// neither scan nor wait: a WAL reader takes no lock a writer holds.
    pub(crate) async fn read_by_key<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        match self.readers.try_run(f) {
            Ok(out) => Ok(out?),
            Err(f) => self.read(f).await,
        }
    }

    async fn run_on<T: Send + 'static>(
        conn: Arc<Mutex<Connection>>,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        tokio::task::spawn_blocking(move || -> StoreResult<T> {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Engine("a store operation panicked".into()))?;
            Ok(f(&mut guard)?)
        })
        .await
        .map_err(|e| StoreError::Engine(e.to_string()))?
    }
}

pub(crate) fn get_meta<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    key: &str,
) -> Result<Option<T>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

/// Every `meta` value whose key starts with `prefix` (which ends in `.`), in key order.
pub(crate) fn meta_with_prefix<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    prefix: &str,
) -> Result<Vec<T>> {
    // Keys from `prefix.` up to (not including) `prefix/`.
    let end = format!("{}/", prefix.trim_end_matches('.'));
    let mut stmt =
        conn.prepare_cached("SELECT value FROM meta WHERE key >= ?1 AND key < ?2 ORDER BY key")?;
    let rows = stmt
        .query_map(params![prefix, end], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(serde_json::from_str(&row)?);
    }
    Ok(out)
}

pub(crate) fn set_meta<T: serde::Serialize>(conn: &Connection, key: &str, value: &T) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, serde_json::to_string(value)?])?;
    Ok(())
}

/// The next etag: base64 of a counter that only grows, so an etag is never reused, not even
/// by a device deleted and created again.
pub(crate) fn next_etag(conn: &Connection) -> Result<String> {
    let next = get_meta::<u64>(conn, "etag_counter")?.unwrap_or(0) + 1;
    set_meta(conn, "etag_counter", &next)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(next.to_string()))
}

/// A device with its live `cloudToDeviceMessageCount`: counted from its queue on every read,
/// so that it is always current and enqueueing never races with registry writes.
fn load_device(conn: &Connection, id: &str, now: DateTime<Utc>) -> Result<Option<DeviceRecord>> {
    let row: Option<(String, u64)> = conn
        .prepare_cached(
            "SELECT doc, (SELECT COUNT(*) FROM c2d_messages m
                          WHERE m.device_id = d.device_id AND m.expiry > ?2)
             FROM devices d WHERE device_id = ?1",
        )?
        .query_row(params![id, millis(now)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(doc, count)| device_from_doc(&doc, count))
        .transpose()
}

/// Applies a runtime update to device `id` inside the caller's transaction; whether the
/// device exists.
fn apply_runtime(
    conn: &Connection,
    id: &str,
    update: &RuntimeUpdate,
    now: DateTime<Utc>,
) -> Result<bool> {
    let Some(mut device) = load_device(conn, id, now)? else {
        return Ok(false);
    };
    if update.apply_to(&mut device) {
        store_device(conn, &device)?;
    }
    Ok(true)
}

/// Whether a device exists.
pub(crate) fn device_exists(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM devices WHERE device_id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn load_twin(conn: &Connection, id: &str) -> Result<Option<TwinRecord>> {
    let doc: Option<String> = conn
        .query_row("SELECT doc FROM twins WHERE device_id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
}

/// The table a scope's CA certificates live in.
fn certificate_table(scope: CertificateScope) -> &'static str {
    match scope {
        CertificateScope::Hub => "certificates",
        CertificateScope::Dps => "dps_certificates",
    }
}

fn load_certificate(
    conn: &Connection,
    scope: CertificateScope,
    name: &str,
) -> Result<Option<CertificateRecord>> {
    let sql = format!(
        "SELECT doc FROM {} WHERE name = ?1",
        certificate_table(scope)
    );
    let doc: Option<String> = conn.query_row(&sql, [name], |r| r.get(0)).optional()?;
    Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
}

/// Whether a write conditioned on `if_match` may replace `current` (`*` matches any).
pub(crate) fn tag_matches(current: &str, if_match: &str) -> bool {
    if_match == "*" || if_match == current
}

fn save_device(conn: &Connection, mut record: DeviceRecord) -> Result<DeviceRecord> {
    record.etag = next_etag(conn)?;
    store_device(conn, &record)?;
    Ok(record)
}

/// Writes a device as it is, etag included.
fn store_device(conn: &Connection, record: &DeviceRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO devices (device_id, enabled, connected, doc) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (device_id) DO UPDATE
         SET enabled = excluded.enabled, connected = excluded.connected, doc = excluded.doc",
        params![
            record.device_id,
            record.status == DeviceStatus::Enabled,
            record.connection_state == ConnectionState::Connected,
            serde_json::to_string(record)?
        ],
    )?;
    Ok(())
}

/// Writes a twin as it is, etag included.
fn store_twin(conn: &Connection, twin: &TwinRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO twins (device_id, doc) VALUES (?1, ?2)
         ON CONFLICT (device_id) DO UPDATE SET doc = excluded.doc",
    )?
    .execute(params![twin.device_id, serde_json::to_string(twin)?])?;
    Ok(())
}

/// Escapes `%`, `_` and `\\` for a LIKE pattern (device ids may contain `%` and `_`).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn etag_matches(current: &DeviceRecord, if_match: Option<&str>) -> bool {
    if_match.is_none_or(|tag| tag_matches(&current.etag, tag))
}

/// Applies one device write inside the caller's transaction.
pub(crate) fn apply(
    conn: &Connection,
    write: DeviceWrite,
    now: DateTime<Utc>,
) -> Result<std::result::Result<Option<DeviceRecord>, WriteConflict>> {
    let current = load_device(conn, write.device_id(), now)?;
    Ok(match (write, current) {
        (DeviceWrite::Create(_), Some(_)) => Err(WriteConflict::AlreadyExists),
        (DeviceWrite::Create(record), None) => Ok(Some(save_device(conn, record)?)),
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
            if etag_matches(&current, if_match.as_deref()) {
                record.keep_runtime_of(&current);
                Ok(Some(save_device(conn, record)?))
            } else {
                Err(WriteConflict::EtagMismatch)
            }
        }
        (DeviceWrite::Delete { id, if_match }, Some(current)) => {
            if etag_matches(&current, if_match.as_deref()) {
                conn.execute("DELETE FROM devices WHERE device_id = ?1", [&id])?;
                conn.execute("DELETE FROM twins WHERE device_id = ?1", [&id])?;
                conn.execute("DELETE FROM modules WHERE device_id = ?1", [&id])?;
                conn.execute("DELETE FROM c2d_messages WHERE device_id = ?1", [&id])?;
                conn.execute("DELETE FROM module_inputs WHERE device_id = ?1", [&id])?;
                conn.execute(
                    "DELETE FROM mqtt_sessions WHERE client_id = ?1 OR client_id LIKE ?2 ESCAPE '\\'",
                    params![id, format!("{}/%", like_escape(&id))],
                )?;
                Ok(None)
            } else {
                Err(WriteConflict::EtagMismatch)
            }
        }
    })
}

/// The outcome of a batch: every write's result, or every failure with its index.
pub(crate) type Batch<R> = std::result::Result<Vec<R>, Vec<(usize, WriteConflict)>>;

/// Applies every write in one transaction, committed only when none fails.
pub(crate) fn write_all<W, R>(
    conn: &mut Connection,
    writes: Vec<W>,
    mut apply: impl FnMut(&Connection, W) -> Result<std::result::Result<R, WriteConflict>>,
) -> Result<Batch<R>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut done = Vec::with_capacity(writes.len());
    let mut failed = Vec::new();
    for (i, write) in writes.into_iter().enumerate() {
        match apply(&tx, write)? {
            Ok(record) => done.push(record),
            Err(conflict) => failed.push((i, conflict)),
        }
    }
    if failed.is_empty() {
        tx.commit()?;
        Ok(Ok(done))
    } else {
        tx.rollback()?;
        Ok(Err(failed))
    }
}

#[async_trait]
impl RegistryStore for SqliteStore {
    async fn hub_settings_or_init(&self, init: HubSettings) -> StoreResult<HubSettings> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let settings = match get_meta::<HubSettings>(&tx, "hub")? {
                Some(existing) => existing,
                None => {
                    set_meta(&tx, "hub", &init)?;
                    init
                }
            };
            tx.commit()?;
            Ok(settings)
        })
        .await
    }

    async fn hub_settings(&self) -> StoreResult<Option<HubSettings>> {
        self.read_by_key(|conn| get_meta(conn, "hub")).await
    }

    async fn set_endpoint(&self, endpoint: &Endpoint) -> StoreResult<()> {
        let endpoint = endpoint.clone();
        self.with(move |conn| set_meta(conn, "endpoint", &endpoint))
            .await
    }

    async fn endpoint(&self) -> StoreResult<Option<Endpoint>> {
        self.read(|conn| get_meta(conn, "endpoint")).await
    }

    async fn get_device(&self, id: &str) -> StoreResult<Option<DeviceRecord>> {
        let id = id.to_owned();
        let now = self.clock.now();
        self.read_by_key(move |conn| load_device(conn, &id, now))
            .await
    }

    async fn list_devices(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<DeviceRecord>> {
        let after = after.unwrap_or("").to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let now = self.clock.now();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT doc, (SELECT COUNT(*) FROM c2d_messages m
                              WHERE m.device_id = d.device_id AND m.expiry > ?3)
                 FROM devices d WHERE device_id > ?1 ORDER BY device_id LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![after, limit, millis(now)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.iter()
                .map(|(doc, count)| device_from_doc(doc, *count))
                .collect()
        })
        .await
    }

    async fn device_counts(&self) -> StoreResult<DeviceCounts> {
        self.read(|conn| {
            let (total, enabled, connected): (u64, u64, u64) = conn.query_row(
                // Each count reads a narrow index (migration 16), the last two a range of it.
                "SELECT (SELECT COUNT(*) FROM devices),
                        (SELECT COUNT(*) FROM devices WHERE enabled = 1),
                        (SELECT COUNT(*) FROM devices WHERE connected = 1)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok(DeviceCounts {
                total,
                enabled,
                disabled: total - enabled,
                connected,
            })
        })
        .await
    }

    async fn update_device_runtime(&self, id: &str, update: RuntimeUpdate) -> StoreResult<bool> {
        let now = self.clock.now();
        self.runtime_batch
            .update(&self.runtime, id.to_owned(), update, now)
            .await
    }

    async fn disconnect_node(&self, node: &str) -> StoreResult<u64> {
        let node = node.to_owned();
        let now = self.clock.now();
        Self::run_on(self.runtime.clone(), move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let docs: Vec<String> = tx
                .prepare("SELECT doc FROM devices WHERE connected = 1")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut disconnected = 0;
            for doc in &docs {
                let mut device: DeviceRecord = serde_json::from_str(doc)?;
                if device.runtime().disconnect_from(&node, now) {
                    store_device(&tx, &device)?;
                    disconnected += 1;
                }
            }
            disconnected += crate::sqlite_module_runtime::disconnect_node_modules(&tx, &node, now)?;
            tx.commit()?;
            Ok(disconnected)
        })
        .await
    }

    async fn node_heartbeat(&self, node: &str, until: DateTime<Utc>) -> StoreResult<()> {
        let node = node.to_owned();
        // Runtime state, like connection state: it survives `kill -9`, not a power cut.
        Self::run_on(self.runtime.clone(), move |conn| {
            conn.prepare_cached(
                "INSERT INTO nodes (node, lease_until) VALUES (?1, ?2)
                 ON CONFLICT (node) DO UPDATE SET lease_until = excluded.lease_until",
            )?
            .execute(params![node, millis(until)])?;
            Ok(())
        })
        .await
    }

    async fn expired_nodes(&self, now: DateTime<Utc>) -> StoreResult<Vec<String>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT node FROM nodes WHERE lease_until <= ?1 ORDER BY node")?;
            let nodes = stmt
                .query_map([millis(now)], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(nodes)
        })
        .await
    }

    async fn forget_node(&self, node: &str) -> StoreResult<()> {
        let node = node.to_owned();
        self.with(move |conn| {
            conn.execute("DELETE FROM nodes WHERE node = ?1", [node])?;
            Ok(())
        })
        .await
    }

    async fn write_devices(&self, writes: Vec<DeviceWrite>) -> StoreResult<BatchResult> {
        let now = self.clock.now();
        self.with(move |conn| write_all(conn, writes, |tx, write| apply(tx, write, now)))
            .await
    }
}

#[async_trait]
impl TwinStore for SqliteStore {
    async fn get_twin(&self, device_id: &str) -> StoreResult<Option<TwinRecord>> {
        let id = device_id.to_owned();
        self.read_by_key(move |conn| load_twin(conn, &id)).await
    }

    async fn put_twin(
        &self,
        twin: TwinRecord,
        if_match: Option<String>,
    ) -> StoreResult<std::result::Result<TwinRecord, WriteConflict>> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if !device_exists(&tx, &twin.device_id)? {
                return Ok(Err(WriteConflict::NotFound));
            }
            let current = load_twin(&tx, &twin.device_id)?
                .map(|t| t.etag)
                .unwrap_or_default();
            if if_match.is_some_and(|tag| !tag_matches(&current, &tag)) {
                return Ok(Err(WriteConflict::EtagMismatch));
            }
            let mut twin = twin;
            twin.etag = next_etag(&tx)?;
            store_twin(&tx, &twin)?;
            tx.commit()?;
            Ok(Ok(twin))
        })
        .await
    }

    async fn scan_twins(&self, scan: &TwinScan) -> StoreResult<Vec<DeviceTwin>> {
        let scan = scan.clone();
        let now = self.clock.now();
        self.with(move |conn| crate::sqlite_query::scan(conn, &scan, now))
            .await
    }

    async fn aggregate_twins(
        &self,
        request: &TwinAggregate,
    ) -> StoreResult<Option<Vec<TwinGroup>>> {
        let request = request.clone();
        self.with(move |conn| crate::sqlite_aggregate::aggregate(conn, &request))
            .await
    }

    async fn top_twins(&self, request: &TwinTop) -> StoreResult<Option<Vec<DeviceTwin>>> {
        let request = request.clone();
        let now = self.clock.now();
        self.with(move |conn| crate::sqlite_order::top(conn, &request, now))
            .await
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn mqtt_session(&self, client_id: &str) -> StoreResult<Option<Vec<String>>> {
        let id = client_id.to_owned();
        self.read_by_key(move |conn| {
            let doc: Option<String> = conn
                .prepare_cached("SELECT doc FROM mqtt_sessions WHERE client_id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
        })
        .await
    }

    async fn set_mqtt_session(
        &self,
        client_id: &str,
        subscriptions: Option<Vec<String>>,
    ) -> StoreResult<()> {
        let id = client_id.to_owned();
        match subscriptions {
            Some(subs) => {
                self.with(move |conn| {
                    conn.prepare_cached(
                        "INSERT INTO mqtt_sessions (client_id, doc) VALUES (?1, ?2)
                         ON CONFLICT (client_id) DO UPDATE SET doc = excluded.doc",
                    )?
                    .execute(params![id, serde_json::to_string(&subs)?])?;
                    Ok(())
                })
                .await
            }
            // Only a stored session costs a write (a clean CONNECT usually has none), and
            // looking costs no wait for the writer: a session stored before this call is seen;
            // one stored while it runs races with it either way.
            None => {
                let key = id.clone();
                let stored = self
                    .read_by_key(move |conn| {
                        Ok(conn
                            .prepare_cached("SELECT 1 FROM mqtt_sessions WHERE client_id = ?1")?
                            .query_row([key], |_| Ok(()))
                            .optional()?
                            .is_some())
                    })
                    .await?;
                if !stored {
                    return Ok(());
                }
                self.with(move |conn| {
                    conn.prepare_cached("DELETE FROM mqtt_sessions WHERE client_id = ?1")?
                        .execute([id])?;
                    Ok(())
                })
                .await
            }
        }
    }
}

#[async_trait]
impl CertificateStore for SqliteStore {
    async fn get_certificate(
        &self,
        scope: CertificateScope,
        name: &str,
    ) -> StoreResult<Option<CertificateRecord>> {
        let name = name.to_owned();
        self.read_by_key(move |conn| load_certificate(conn, scope, &name))
            .await
    }

    async fn list_certificates(
        &self,
        scope: CertificateScope,
    ) -> StoreResult<Vec<CertificateRecord>> {
        self.read(move |conn| {
            let sql = format!("SELECT doc FROM {} ORDER BY name", certificate_table(scope));
            let mut stmt = conn.prepare_cached(&sql)?;
            let docs = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            docs.iter().map(|d| Ok(serde_json::from_str(d)?)).collect()
        })
        .await
    }

    async fn put_certificate(
        &self,
        scope: CertificateScope,
        record: CertificateRecord,
        if_match: Option<String>,
    ) -> StoreResult<std::result::Result<CertificateRecord, WriteConflict>> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current = load_certificate(&tx, scope, &record.name)?;
            match (&current, if_match.as_deref()) {
                (Some(_), None) => return Ok(Err(WriteConflict::AlreadyExists)),
                (None, Some(_)) => return Ok(Err(WriteConflict::NotFound)),
                (Some(c), Some(tag)) if !tag_matches(&c.etag, tag) => {
                    return Ok(Err(WriteConflict::EtagMismatch));
                }
                _ => {}
            }
            let mut record = record;
            record.etag = next_etag(&tx)?;
            tx.execute(
                &format!(
                    "INSERT INTO {} (name, doc) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
                    certificate_table(scope)
                ),
                params![record.name, serde_json::to_string(&record)?],
            )?;
            tx.commit()?;
            Ok(Ok(record))
        })
        .await
    }

    async fn delete_certificate(
        &self,
        scope: CertificateScope,
        name: &str,
        if_match: Option<String>,
    ) -> StoreResult<std::result::Result<(), WriteConflict>> {
        let name = name.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let Some(current) = load_certificate(&tx, scope, &name)? else {
                return Ok(Err(WriteConflict::NotFound));
            };
            if if_match.is_some_and(|tag| !tag_matches(&current.etag, &tag)) {
                return Ok(Err(WriteConflict::EtagMismatch));
            }
            tx.execute(
                &format!("DELETE FROM {} WHERE name = ?1", certificate_table(scope)),
                [&name],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }
}

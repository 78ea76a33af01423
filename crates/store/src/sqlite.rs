//! The embedded store: one SQLite database in the data directory.
//!
//! WAL journal with `synchronous=FULL`: a write is on disk before the call returns, so an
//! acknowledged write survives `kill -9` and power loss. Other processes (the CLI and
//! `ironhub info`) may read the same file while the server runs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use rusqlite::{Connection, OptionalExtension, params};

use chrono::{DateTime, Utc};

use crate::sqlite_dps;
use crate::{
    BatchResult, C2dMessage, C2dRefusal, C2dRules, C2dSettle, CertificateRecord, CertificateScope,
    ConnectionState, DeviceCounts, DeviceRecord, DeviceStatus, DeviceWrite, DpsBatchResult,
    DpsCollection, DpsRecord, DpsSettings, DpsWrite, Endpoint, FeedbackBatch, FeedbackRecord,
    FeedbackStatus, HubSettings, Result, RuntimeUpdate, Store, StoreError, TwinRecord,
    WriteConflict,
};

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
];
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// For runtime fields (connection state, activity): `synchronous=NORMAL`, which in WAL mode
    /// survives a process crash but not a power cut, and spares every CONNECT an fsync.
    runtime: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Engine(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Engine(format!("cannot create {}: {e}", dir.display())))?;
        Self::open_file(&dir.join(FILE_NAME))
    }

    /// Opens the store in `dir` only if a server has created it there.
    pub fn open_existing(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE_NAME);
        if !path.is_file() {
            return Err(StoreError::NotInitialised(dir.display().to_string()));
        }
        Self::open_file(&path)
    }

    fn open_file(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "{} has schema version {version}; this ironhub knows up to {SCHEMA_VERSION}",
                path.display()
            )));
        }
        for (target, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .map(|(i, m)| (i as i64 + 1, m))
        {
            if version < target {
                conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE; {sql} PRAGMA user_version = {target}; COMMIT;"
                ))?;
            }
        }
        let runtime = Connection::open(path)?;
        runtime.busy_timeout(std::time::Duration::from_secs(10))?;
        runtime.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            runtime: Arc::new(Mutex::new(runtime)),
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        Self::run_on(self.conn.clone(), f).await
    }

    async fn run_on<T: Send + 'static>(
        conn: Arc<Mutex<Connection>>,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Engine("a store operation panicked".into()))?;
            f(&mut guard)
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
fn load_device(conn: &Connection, id: &str) -> Result<Option<DeviceRecord>> {
    let row: Option<(String, u64)> = conn
        .prepare_cached(
            "SELECT doc, (SELECT COUNT(*) FROM c2d_messages m
                          WHERE m.device_id = d.device_id AND m.expiry > ?2)
             FROM devices d WHERE device_id = ?1",
        )?
        .query_row(params![id, millis(Utc::now())], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    row.map(|(doc, count)| device_from_doc(&doc, count))
        .transpose()
}

fn device_from_doc(doc: &str, c2d_count: u64) -> Result<DeviceRecord> {
    let mut device: DeviceRecord = serde_json::from_str(doc)?;
    device.cloud_to_device_message_count = c2d_count;
    Ok(device)
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

/// Escapes `%`, `_` and `\\` for a LIKE pattern (device ids may contain `%` and `_`).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn etag_matches(current: &DeviceRecord, if_match: Option<&str>) -> bool {
    if_match.is_none_or(|tag| tag_matches(&current.etag, tag))
}

fn apply(
    conn: &Connection,
    write: DeviceWrite,
) -> Result<Result<Option<DeviceRecord>, WriteConflict>> {
    let current = load_device(conn, write.device_id())?;
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
                record.connection_state = current.connection_state;
                record.connection_state_updated_time = current.connection_state_updated_time;
                record.last_activity_time = current.last_activity_time;
                record.cloud_to_device_message_count = current.cloud_to_device_message_count;
                Ok(Some(save_device(conn, record)?))
            } else {
                Err(WriteConflict::EtagMismatch)
            }
        }
        (DeviceWrite::Delete { id, if_match }, Some(current)) => {
            if etag_matches(&current, if_match.as_deref()) {
                conn.execute("DELETE FROM devices WHERE device_id = ?1", [&id])?;
                conn.execute("DELETE FROM twins WHERE device_id = ?1", [&id])?;
                conn.execute("DELETE FROM c2d_messages WHERE device_id = ?1", [&id])?;
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

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A new lock token: 128 random bits in the form of a UUID, as IoT Hub's.
pub(crate) fn new_lock_token() -> String {
    let b = ironhub_auth::random_bytes(16);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

const MESSAGE_COLUMNS: &str = "seq, doc, body, delivery_count, lock_token, locked_until";

/// A `c2d_messages` row as read: `MESSAGE_COLUMNS` in order.
type MessageRow = (i64, String, Vec<u8>, u32, Option<String>, Option<i64>);

fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn to_message(
    (seq, doc, body, delivery_count, lock_token, locked_until): MessageRow,
) -> Result<C2dMessage> {
    let mut m: C2dMessage = serde_json::from_str(&doc)?;
    m.body = body;
    m.sequence_number = u64::try_from(seq).unwrap_or_default();
    m.delivery_count = delivery_count;
    m.lock_token = lock_token;
    m.locked_until = locked_until.map(from_millis);
    Ok(m)
}

/// The messages a query selects, with `params`.
fn select_messages(
    conn: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<C2dMessage>> {
    // `condition` may end with `LIMIT n`, which goes after the order.
    let (condition, limit) = match condition.split_once(" LIMIT ") {
        Some((c, n)) => (c, format!(" LIMIT {n}")),
        None => (condition, String::new()),
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM c2d_messages WHERE {condition} ORDER BY seq{limit}"
    ))?;
    let rows = stmt
        .query_map(params, message_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(to_message).collect()
}

/// Removes a message from its queue, writing the feedback its `ack` asks for.
fn remove_message(
    conn: &Connection,
    message: &C2dMessage,
    status: FeedbackStatus,
    rules: C2dRules,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        "DELETE FROM c2d_messages WHERE seq = ?1",
        [i64::try_from(message.sequence_number).unwrap_or(i64::MAX)],
    )?;
    if message.ack.wants(status) {
        let record = FeedbackRecord {
            original_message_id: message.message_id.clone(),
            device_id: message.device_id.clone(),
            device_generation_id: message.device_generation_id.clone(),
            status_code: status,
            enqueued_time_utc: now,
        };
        conn.execute(
            "INSERT INTO c2d_feedback (enqueued, expiry, doc) VALUES (?1, ?2, ?3)",
            params![
                millis(now),
                millis(now + rules.feedback_ttl),
                serde_json::to_string(&record)?
            ],
        )?;
    }
    Ok(())
}

/// Dead-letters the expired messages of one device (`Some`) or of all (`None`).
fn expire_messages(
    conn: &Connection,
    device_id: Option<&str>,
    rules: C2dRules,
    now: DateTime<Utc>,
) -> Result<u64> {
    let expired = match device_id {
        Some(id) => select_messages(
            conn,
            "device_id = ?1 AND expiry <= ?2",
            params![id, millis(now)],
        )?,
        None => select_messages(conn, "expiry <= ?1", params![millis(now)])?,
    };
    for m in &expired {
        remove_message(conn, m, FeedbackStatus::Expired, rules, now)?;
    }
    Ok(expired.len() as u64)
}

#[async_trait]
impl Store for SqliteStore {
    async fn hub_settings_or_init(&self, init: HubSettings) -> Result<HubSettings> {
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

    async fn hub_settings(&self) -> Result<Option<HubSettings>> {
        self.with(|conn| get_meta(conn, "hub")).await
    }

    async fn set_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        let endpoint = endpoint.clone();
        self.with(move |conn| set_meta(conn, "endpoint", &endpoint))
            .await
    }

    async fn endpoint(&self) -> Result<Option<Endpoint>> {
        self.with(|conn| get_meta(conn, "endpoint")).await
    }

    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>> {
        let id = id.to_owned();
        self.with(move |conn| load_device(conn, &id)).await
    }

    async fn list_devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<DeviceRecord>> {
        let after = after.unwrap_or("").to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT doc, (SELECT COUNT(*) FROM c2d_messages m
                              WHERE m.device_id = d.device_id AND m.expiry > ?3)
                 FROM devices d WHERE device_id > ?1 ORDER BY device_id LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![after, limit, millis(Utc::now())], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.iter()
                .map(|(doc, count)| device_from_doc(doc, *count))
                .collect()
        })
        .await
    }

    async fn device_counts(&self) -> Result<DeviceCounts> {
        self.with(|conn| {
            let (total, enabled, connected): (u64, u64, u64) = conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(enabled), 0), COALESCE(SUM(connected), 0) FROM devices",
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

    async fn update_device_runtime(&self, id: &str, update: RuntimeUpdate) -> Result<bool> {
        let id = id.to_owned();
        Self::run_on(self.runtime.clone(), move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let Some(mut device) = load_device(&tx, &id)? else {
                return Ok(false);
            };
            if let Some(state) = update.connection_state {
                device.connection_state = state;
                device.connection_state_updated_time =
                    update.at.or(device.connection_state_updated_time);
            }
            if update.at.is_some() {
                device.last_activity_time = update.at;
            }
            store_device(&tx, &device)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn disconnect_all(&self) -> Result<u64> {
        Self::run_on(self.runtime.clone(), |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let docs: Vec<String> = tx
                .prepare("SELECT doc FROM devices WHERE connected = 1")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let now = Some(Utc::now());
            for doc in &docs {
                let mut device: DeviceRecord = serde_json::from_str(doc)?;
                device.connection_state = ConnectionState::Disconnected;
                device.connection_state_updated_time = now;
                store_device(&tx, &device)?;
            }
            tx.commit()?;
            Ok(docs.len() as u64)
        })
        .await
    }

    async fn get_twin(&self, device_id: &str) -> Result<Option<TwinRecord>> {
        let id = device_id.to_owned();
        self.with(move |conn| load_twin(conn, &id)).await
    }

    async fn put_twin(
        &self,
        twin: TwinRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<TwinRecord, WriteConflict>> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if load_device(&tx, &twin.device_id)?.is_none() {
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
            tx.execute(
                "INSERT INTO twins (device_id, doc) VALUES (?1, ?2)
                 ON CONFLICT (device_id) DO UPDATE SET doc = excluded.doc",
                params![twin.device_id, serde_json::to_string(&twin)?],
            )?;
            tx.commit()?;
            Ok(Ok(twin))
        })
        .await
    }

    async fn mqtt_session(&self, client_id: &str) -> Result<Option<Vec<String>>> {
        let id = client_id.to_owned();
        self.with(move |conn| {
            let doc: Option<String> = conn
                .query_row(
                    "SELECT doc FROM mqtt_sessions WHERE client_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
        })
        .await
    }

    async fn set_mqtt_session(
        &self,
        client_id: &str,
        subscriptions: Option<Vec<String>>,
    ) -> Result<()> {
        let id = client_id.to_owned();
        self.with(move |conn| {
            match subscriptions {
                Some(subs) => conn.execute(
                    "INSERT INTO mqtt_sessions (client_id, doc) VALUES (?1, ?2)
                     ON CONFLICT (client_id) DO UPDATE SET doc = excluded.doc",
                    params![id, serde_json::to_string(&subs)?],
                )?,
                // Only a stored session costs a write (a clean CONNECT usually has none).
                None => {
                    let stored: Option<i64> = conn
                        .query_row(
                            "SELECT 1 FROM mqtt_sessions WHERE client_id = ?1",
                            [&id],
                            |r| r.get(0),
                        )
                        .optional()?;
                    match stored {
                        Some(_) => {
                            conn.execute("DELETE FROM mqtt_sessions WHERE client_id = ?1", [id])?
                        }
                        None => 0,
                    }
                }
            };
            Ok(())
        })
        .await
    }

    async fn c2d_enqueue(
        &self,
        message: C2dMessage,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<C2dMessage, C2dRefusal>> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if load_device(&tx, &message.device_id)?.is_none() {
                return Ok(Err(C2dRefusal::DeviceNotFound));
            }
            let depth: u64 = tx.query_row(
                "SELECT COUNT(*) FROM c2d_messages WHERE device_id = ?1 AND expiry > ?2",
                params![message.device_id, millis(now)],
                |r| r.get(0),
            )?;
            if depth >= rules.max_depth as u64 {
                return Ok(Err(C2dRefusal::QueueFull));
            }
            tx.execute(
                "INSERT INTO c2d_messages (device_id, expiry, doc, body) VALUES (?1, ?2, ?3, ?4)",
                params![
                    message.device_id,
                    millis(message.expiry_time),
                    serde_json::to_string(&message)?,
                    message.body
                ],
            )?;
            let mut message = message;
            message.sequence_number = u64::try_from(tx.last_insert_rowid()).unwrap_or_default();
            message.delivery_count = 0;
            message.lock_token = None;
            message.locked_until = None;
            tx.commit()?;
            Ok(Ok(message))
        })
        .await
    }

    async fn c2d_lock_next(
        &self,
        device_id: &str,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<Option<C2dMessage>> {
        let id = device_id.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            expire_messages(&tx, Some(&id), rules, now)?;
            let visible = "device_id = ?1 AND (lock_token IS NULL OR locked_until <= ?2)";
            let worn_out = select_messages(
                &tx,
                &format!("{visible} AND delivery_count >= ?3"),
                params![id, millis(now), rules.max_delivery_count],
            )?;
            for m in &worn_out {
                remove_message(&tx, m, FeedbackStatus::DeliveryCountExceeded, rules, now)?;
            }
            let next =
                select_messages(&tx, &format!("{visible} LIMIT 1"), params![id, millis(now)])?;
            let Some(mut message) = next.into_iter().next() else {
                tx.commit()?;
                return Ok(None);
            };
            let token = new_lock_token();
            let until = now + rules.lock_duration;
            tx.execute(
                "UPDATE c2d_messages SET lock_token = ?1, locked_until = ?2,
                 delivery_count = delivery_count + 1 WHERE seq = ?3",
                params![
                    token,
                    millis(until),
                    i64::try_from(message.sequence_number).unwrap_or(i64::MAX)
                ],
            )?;
            tx.commit()?;
            message.delivery_count += 1;
            message.lock_token = Some(token);
            message.locked_until = Some(until);
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
    ) -> Result<Option<C2dMessage>> {
        let id = device_id.to_owned();
        let token = lock_token.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let found = select_messages(&tx, "device_id = ?1 AND lock_token = ?2", params![id, token])?;
            let Some(message) = found.into_iter().next() else {
                return Ok(None);
            };
            match settle {
                C2dSettle::Complete => {
                    remove_message(&tx, &message, FeedbackStatus::Success, rules, now)?;
                }
                C2dSettle::Reject => {
                    remove_message(&tx, &message, FeedbackStatus::Rejected, rules, now)?;
                }
                C2dSettle::Abandon => {
                    tx.execute(
                        "UPDATE c2d_messages SET lock_token = NULL, locked_until = NULL WHERE seq = ?1",
                        [i64::try_from(message.sequence_number).unwrap_or(i64::MAX)],
                    )?;
                }
            }
            tx.commit()?;
            Ok(Some(message))
        })
        .await
    }

    async fn c2d_purge(&self, device_id: &str, rules: C2dRules, now: DateTime<Utc>) -> Result<u64> {
        let id = device_id.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            expire_messages(&tx, Some(&id), rules, now)?;
            let all = select_messages(&tx, "device_id = ?1", [&id])?;
            for m in &all {
                remove_message(&tx, m, FeedbackStatus::Purged, rules, now)?;
            }
            tx.commit()?;
            Ok(all.len() as u64)
        })
        .await
    }

    async fn c2d_release_locks(&self) -> Result<u64> {
        self.with(|conn| {
            Ok(conn.execute(
                "UPDATE c2d_messages SET lock_token = NULL, locked_until = NULL
                 WHERE lock_token IS NOT NULL",
                [],
            )? as u64)
        })
        .await
    }

    async fn c2d_expire(&self, rules: C2dRules, now: DateTime<Utc>) -> Result<u64> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let expired = expire_messages(&tx, None, rules, now)?;
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
    ) -> Result<Option<FeedbackBatch>> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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

    async fn feedback_settle(&self, lock_token: &str, complete: bool) -> Result<bool> {
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

    async fn write_devices(&self, writes: Vec<DeviceWrite>) -> Result<BatchResult> {
        self.with(move |conn| {
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
        })
        .await
    }

    async fn get_certificate(
        &self,
        scope: CertificateScope,
        name: &str,
    ) -> Result<Option<CertificateRecord>> {
        let name = name.to_owned();
        self.with(move |conn| load_certificate(conn, scope, &name))
            .await
    }

    async fn list_certificates(&self, scope: CertificateScope) -> Result<Vec<CertificateRecord>> {
        self.with(move |conn| {
            let sql = format!("SELECT doc FROM {} ORDER BY name", certificate_table(scope));
            let mut stmt = conn.prepare_cached(&sql)?;
            let docs = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            docs.iter()
                .map(|d| serde_json::from_str(d).map_err(StoreError::from))
                .collect()
        })
        .await
    }

    async fn put_certificate(
        &self,
        scope: CertificateScope,
        record: CertificateRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<CertificateRecord, WriteConflict>> {
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
    ) -> Result<std::result::Result<(), WriteConflict>> {
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
    async fn dps_settings_or_init(&self, init: DpsSettings) -> Result<DpsSettings> {
        self.with(move |conn| sqlite_dps::settings_or_init(conn, init))
            .await
    }

    async fn dps_settings(&self) -> Result<Option<DpsSettings>> {
        self.with(|conn| sqlite_dps::settings(conn)).await
    }

    async fn dps_get(&self, collection: DpsCollection, id: &str) -> Result<Option<DpsRecord>> {
        let id = id.to_owned();
        self.with(move |conn| sqlite_dps::get(conn, collection, &id))
            .await
    }

    async fn dps_list(
        &self,
        collection: DpsCollection,
        after: Option<&str>,
        limit: usize,
        group: Option<&str>,
    ) -> Result<Vec<DpsRecord>> {
        let after = after.map(str::to_owned);
        let group = group.map(str::to_owned);
        self.with(move |conn| {
            sqlite_dps::list(conn, collection, after.as_deref(), limit, group.as_deref())
        })
        .await
    }

    async fn dps_count(&self, collection: DpsCollection, group: Option<&str>) -> Result<u64> {
        let group = group.map(str::to_owned);
        self.with(move |conn| sqlite_dps::count(conn, collection, group.as_deref()))
            .await
    }

    async fn dps_write(
        &self,
        collection: DpsCollection,
        writes: Vec<DpsWrite>,
    ) -> Result<DpsBatchResult> {
        // A registration's operation is runtime state, like a device's connection state: it
        // goes through the `synchronous=NORMAL` connection (it survives `kill -9`, not a power
        // cut, after which the device registers again); everything else is acknowledged data.
        let conn = match collection {
            DpsCollection::Operations => self.runtime.clone(),
            _ => self.conn.clone(),
        };
        Self::run_on(conn, move |conn| {
            sqlite_dps::write(conn, collection, writes)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Authentication, ConnectionState, RuntimeUpdate};

    fn device(id: &str) -> DeviceRecord {
        DeviceRecord {
            device_id: id.into(),
            generation_id: "1".into(),
            etag: String::new(),
            status: DeviceStatus::Enabled,
            status_reason: None,
            status_updated_time: None,
            connection_state: ConnectionState::Disconnected,
            connection_state_updated_time: None,
            last_activity_time: None,
            cloud_to_device_message_count: 0,
            authentication: Authentication::default(),
            iot_edge: false,
            device_scope: None,
            parent_scopes: vec![],
        }
    }

    #[tokio::test]
    async fn compare_and_swap_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let created = store
            .write_devices(vec![DeviceWrite::Create(device("a"))])
            .await
            .unwrap()
            .unwrap();
        let a = created[0].clone().unwrap();
        assert!(!a.etag.is_empty());

        let again = store
            .write_devices(vec![DeviceWrite::Create(device("a"))])
            .await
            .unwrap();
        assert_eq!(again.unwrap_err(), vec![(0, WriteConflict::AlreadyExists)]);

        let stale = DeviceWrite::Replace {
            record: device("a"),
            if_match: Some("nope".into()),
        };
        let r = store.write_devices(vec![stale]).await.unwrap();
        assert_eq!(r.unwrap_err(), vec![(0, WriteConflict::EtagMismatch)]);

        let mut disabled = a.clone();
        disabled.status = DeviceStatus::Disabled;
        let r = store
            .write_devices(vec![DeviceWrite::Replace {
                record: disabled,
                if_match: Some(a.etag.clone()),
            }])
            .await
            .unwrap()
            .unwrap();
        let b = r[0].clone().unwrap();
        assert_ne!(b.etag, a.etag);
        assert_eq!(store.device_counts().await.unwrap().disabled, 1);
    }

    #[tokio::test]
    async fn a_failed_batch_writes_nothing_and_etags_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let r = store
            .write_devices(vec![
                DeviceWrite::Create(device("x")),
                DeviceWrite::Delete {
                    id: "missing".into(),
                    if_match: None,
                },
            ])
            .await
            .unwrap();
        assert_eq!(r.unwrap_err(), vec![(1, WriteConflict::NotFound)]);
        assert!(store.get_device("x").await.unwrap().is_none());

        let first = store
            .write_devices(vec![DeviceWrite::Create(device("x"))])
            .await
            .unwrap()
            .unwrap()[0]
            .clone()
            .unwrap();
        store
            .write_devices(vec![DeviceWrite::Delete {
                id: "x".into(),
                if_match: Some("*".into()),
            }])
            .await
            .unwrap()
            .unwrap();
        let second = store
            .write_devices(vec![DeviceWrite::Create(device("x"))])
            .await
            .unwrap()
            .unwrap()[0]
            .clone()
            .unwrap();
        assert_ne!(first.etag, second.etag);
    }

    #[tokio::test]
    async fn data_survives_reopen_and_lists_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            let writes = ["c", "a", "b"]
                .map(|id| DeviceWrite::Create(device(id)))
                .to_vec();
            store.write_devices(writes).await.unwrap().unwrap();
        }
        let store = SqliteStore::open_existing(dir.path()).unwrap();
        let page = store.list_devices(None, 2).await.unwrap();
        let ids: Vec<_> = page.iter().map(|d| d.device_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let rest = store.list_devices(Some("b"), 2).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(store.device_counts().await.unwrap().total, 3);
        assert!(SqliteStore::open_existing(&dir.path().join("nothing")).is_err());
    }

    fn rules() -> C2dRules {
        C2dRules {
            max_depth: 50,
            max_delivery_count: 10,
            lock_duration: chrono::TimeDelta::seconds(60),
            feedback_ttl: chrono::TimeDelta::seconds(3600),
            feedback_lock_duration: chrono::TimeDelta::seconds(60),
            feedback_batch: 64,
        }
    }

    fn c2d_message(device_id: &str) -> C2dMessage {
        C2dMessage {
            device_id: device_id.into(),
            device_generation_id: "1".into(),
            message_id: "m".into(),
            correlation_id: None,
            user_id: None,
            to: format!("/devices/{device_id}/messages/deviceBound"),
            content_type: None,
            content_encoding: None,
            expiry_time: Utc::now() + chrono::TimeDelta::seconds(3600),
            ack: crate::AckMode::Full,
            properties: vec![],
            body: b"x".to_vec(),
            enqueued_time: Utc::now(),
            sequence_number: 0,
            delivery_count: 0,
            lock_token: None,
            locked_until: None,
        }
    }

    #[tokio::test]
    async fn runtime_updates_keep_the_etag_and_replaces_keep_runtime_fields() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let created = store
            .write_devices(vec![DeviceWrite::Create(device("r"))])
            .await
            .unwrap()
            .unwrap()[0]
            .clone()
            .unwrap();
        // The cloud-to-device count is the queue's, whatever a device write says.
        for _ in 0..2 {
            store
                .c2d_enqueue(c2d_message("r"), rules(), Utc::now())
                .await
                .unwrap()
                .unwrap();
        }
        let connected = RuntimeUpdate {
            connection_state: Some(ConnectionState::Connected),
            at: Some(Utc::now()),
        };
        assert!(store.update_device_runtime("r", connected).await.unwrap());
        assert!(
            !store
                .update_device_runtime("nobody", RuntimeUpdate::default())
                .await
                .unwrap()
        );
        let now = store.get_device("r").await.unwrap().unwrap();
        assert_eq!(
            now.etag, created.etag,
            "a connection does not invalidate If-Match"
        );
        assert_eq!(now.connection_state, ConnectionState::Connected);
        assert_eq!(now.cloud_to_device_message_count, 2);
        assert_eq!(store.device_counts().await.unwrap().connected, 1);
        assert_eq!(store.disconnect_all().await.unwrap(), 1);
        assert_eq!(store.device_counts().await.unwrap().connected, 0);
        assert_eq!(
            store.get_device("r").await.unwrap().unwrap().etag,
            created.etag
        );
        store
            .update_device_runtime(
                "r",
                RuntimeUpdate {
                    connection_state: Some(ConnectionState::Connected),
                    ..RuntimeUpdate::default()
                },
            )
            .await
            .unwrap();

        // A registry update written from a stale read keeps the stored runtime fields.
        let mut stale = created.clone();
        stale.status = DeviceStatus::Disabled;
        let written = store
            .write_devices(vec![DeviceWrite::Replace {
                record: stale,
                if_match: Some(created.etag.clone()),
            }])
            .await
            .unwrap()
            .unwrap()[0]
            .clone()
            .unwrap();
        assert_eq!(written.connection_state, ConnectionState::Connected);
        assert_eq!(written.cloud_to_device_message_count, 2);
        assert_eq!(written.status, DeviceStatus::Disabled);
    }

    #[tokio::test]
    async fn hub_settings_are_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        assert!(store.hub_settings().await.unwrap().is_none());
        let first = HubSettings {
            policies: ironhub_auth::default_hub_policies(),
            created_time: Utc::now(),
        };
        let kept = store.hub_settings_or_init(first.clone()).await.unwrap();
        assert_eq!(kept, first);
        let other = HubSettings {
            policies: ironhub_auth::default_hub_policies(),
            created_time: Utc::now(),
        };
        assert_eq!(store.hub_settings_or_init(other).await.unwrap(), first);
        assert!(first.policy("IOTHUBOWNER").is_some());
    }

    #[tokio::test]
    async fn certificates_are_compare_and_swap_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let record = CertificateRecord {
            name: "root".into(),
            etag: String::new(),
            certificate: "PEM".into(),
            subject: "CN=Root".into(),
            thumbprint: "AB".into(),
            expiry: now,
            is_verified: false,
            verification_code: None,
            created: now,
            updated: now,
        };
        let etag = {
            let store = SqliteStore::open(dir.path()).unwrap();
            let created = store
                .put_certificate(CertificateScope::Hub, record.clone(), None)
                .await
                .unwrap()
                .unwrap();
            assert!(!created.etag.is_empty());
            let again = store
                .put_certificate(CertificateScope::Hub, record.clone(), None)
                .await
                .unwrap();
            assert_eq!(again, Err(WriteConflict::AlreadyExists));
            let stale = store
                .put_certificate(CertificateScope::Hub, record.clone(), Some("old".into()))
                .await
                .unwrap();
            assert_eq!(stale, Err(WriteConflict::EtagMismatch));
            let missing = CertificateRecord {
                name: "other".into(),
                ..record.clone()
            };
            let r = store
                .put_certificate(CertificateScope::Hub, missing, Some("*".into()))
                .await
                .unwrap();
            assert_eq!(r, Err(WriteConflict::NotFound));
            let verified = CertificateRecord {
                is_verified: true,
                ..created.clone()
            };
            let updated = store
                .put_certificate(CertificateScope::Hub, verified, Some(created.etag.clone()))
                .await
                .unwrap()
                .unwrap();
            assert_ne!(updated.etag, created.etag);
            updated.etag
        };
        let store = SqliteStore::open(dir.path()).unwrap();
        let list = store
            .list_certificates(CertificateScope::Hub)
            .await
            .unwrap();
        assert_eq!(list.len(), 1);
        assert!(list[0].is_verified);
        assert_eq!(
            store
                .delete_certificate(CertificateScope::Hub, "root", Some("nope".into()))
                .await
                .unwrap(),
            Err(WriteConflict::EtagMismatch)
        );
        store
            .delete_certificate(CertificateScope::Hub, "root", Some(etag))
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .get_certificate(CertificateScope::Hub, "root")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            store
                .delete_certificate(CertificateScope::Hub, "root", None)
                .await
                .unwrap(),
            Err(WriteConflict::NotFound)
        );
    }
}

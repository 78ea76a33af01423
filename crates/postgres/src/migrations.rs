//! The versioned schema: each migration runs once, in order, recorded in `schema_migrations`.
//! A node applies the missing ones at start inside one transaction holding an advisory lock,
//! so two nodes starting together wait for each other and the second finds nothing to do.

use ironhub_store::{Result, StoreError};

use crate::{Pool, pool};

/// The advisory lock key that serialises migrations (any fixed number; "ironhub" in ASCII).
const MIGRATION_LOCK: i64 = 0x69_726f_6e68_7562;

/// The schema, one step per version (never edit a released step: add one). Times are Unix
/// milliseconds, as the embedded engine keeps them; records are `jsonb` documents, with the
/// columns queries select or order on beside them.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value JSONB NOT NULL);
     CREATE SEQUENCE etag_counter;
     CREATE TABLE devices (
         device_id TEXT COLLATE \"C\" PRIMARY KEY,
         enabled BOOLEAN NOT NULL,
         connected BOOLEAN NOT NULL,
         doc JSONB NOT NULL
     );
     CREATE TABLE twins (device_id TEXT COLLATE \"C\" PRIMARY KEY, doc JSONB NOT NULL);
     CREATE TABLE mqtt_sessions (client_id TEXT PRIMARY KEY, doc JSONB NOT NULL);
     CREATE TABLE c2d_messages (
         seq BIGSERIAL PRIMARY KEY,
         device_id TEXT COLLATE \"C\" NOT NULL,
         expiry BIGINT NOT NULL,
         delivery_count INTEGER NOT NULL DEFAULT 0,
         lock_token TEXT,
         locked_until BIGINT,
         lock_node TEXT,
         doc JSONB NOT NULL,
         body BYTEA NOT NULL
     );
     CREATE INDEX c2d_messages_by_device ON c2d_messages (device_id, seq);
     CREATE INDEX c2d_messages_by_expiry ON c2d_messages (expiry);
     CREATE TABLE c2d_feedback (
         seq BIGSERIAL PRIMARY KEY,
         enqueued BIGINT NOT NULL,
         expiry BIGINT NOT NULL,
         delivery_count INTEGER NOT NULL DEFAULT 0,
         lock_token TEXT,
         locked_until BIGINT,
         doc JSONB NOT NULL
     );
     CREATE INDEX c2d_feedback_by_lock ON c2d_feedback (lock_token);
     CREATE TABLE certificates (name TEXT PRIMARY KEY, doc JSONB NOT NULL);
     CREATE TABLE dps_enrollments (id_key TEXT PRIMARY KEY, group_key TEXT, doc JSONB NOT NULL);
     CREATE TABLE dps_enrollment_groups (
         id_key TEXT PRIMARY KEY, group_key TEXT, doc JSONB NOT NULL
     );
     CREATE TABLE dps_registrations (id_key TEXT PRIMARY KEY, group_key TEXT, doc JSONB NOT NULL);
     CREATE INDEX dps_registrations_by_group ON dps_registrations (group_key, id_key);
     CREATE TABLE dps_linked_hubs (id_key TEXT PRIMARY KEY, group_key TEXT, doc JSONB NOT NULL);
     CREATE TABLE dps_certificates (name TEXT PRIMARY KEY, doc JSONB NOT NULL);
     CREATE TABLE dps_operations (id_key TEXT PRIMARY KEY, group_key TEXT, doc JSONB NOT NULL);
     CREATE TABLE nodes (node TEXT PRIMARY KEY, lease_until BIGINT NOT NULL);
     CREATE TABLE file_notifications (
         seq BIGSERIAL PRIMARY KEY,
         enqueued BIGINT NOT NULL,
         expiry BIGINT NOT NULL,
         delivery_count INTEGER NOT NULL DEFAULT 0,
         lock_token TEXT,
         locked_until BIGINT,
         doc JSONB NOT NULL
     );
     CREATE INDEX file_notifications_by_lock ON file_notifications (lock_token);",
    ),
    // Twin queries: equality and `IN` on any twin property as containment (`doc @> ...`).
    (
        2,
        "CREATE INDEX twins_by_containment ON twins USING GIN (doc jsonb_path_ops);",
    ),
    // Modules (gone with their device), the routing and network rules documents, endpoint
    // leases and health, and rate windows (unlogged: counts a few seconds old at most, best
    // effort as the embedded engine keeps them).
    (
        3,
        "CREATE TABLE modules (
             device_id TEXT COLLATE \"C\" NOT NULL
                 REFERENCES devices (device_id) ON DELETE CASCADE,
             module_id TEXT COLLATE \"C\" NOT NULL,
             doc JSONB NOT NULL,
             twin JSONB,
             PRIMARY KEY (device_id, module_id)
         );
         CREATE TABLE documents (key TEXT PRIMARY KEY, etag TEXT NOT NULL, doc JSONB NOT NULL);
         CREATE TABLE endpoint_leases (
             endpoint TEXT PRIMARY KEY, node TEXT NOT NULL, lease_until BIGINT NOT NULL
         );
         CREATE TABLE endpoint_health (endpoint TEXT COLLATE \"C\" PRIMARY KEY, doc JSONB NOT NULL);
         CREATE UNLOGGED TABLE rate_windows (
             key TEXT NOT NULL, win BIGINT NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (key, win)
         );",
    ),
    // Scheduled jobs and each job's result per device (`pg_jobs.rs`).
    (
        4,
        "CREATE TABLE jobs (job_id TEXT COLLATE \"C\" PRIMARY KEY, doc JSONB NOT NULL);
         CREATE TABLE job_devices (
             device_id TEXT COLLATE \"C\" NOT NULL,
             job_id TEXT COLLATE \"C\" NOT NULL,
             doc JSONB NOT NULL,
             PRIMARY KEY (device_id, job_id)
         );
         CREATE INDEX job_devices_by_job ON job_devices (job_id, device_id);",
    ),
    // Configurations and IoT Edge deployments: one document per id with its etag.
    (
        5,
        "CREATE TABLE configurations (
             id TEXT COLLATE \"C\" PRIMARY KEY, etag TEXT NOT NULL, doc JSONB NOT NULL
         );",
    ), // Module input queues (`pg_module_inputs.rs`); a module's go with it.
    (
        6,
        "CREATE TABLE module_inputs (
             seq BIGSERIAL PRIMARY KEY,
             device_id TEXT COLLATE \"C\" NOT NULL,
             module_id TEXT COLLATE \"C\" NOT NULL,
             expiry BIGINT NOT NULL,
             doc JSONB NOT NULL,
             body BYTEA NOT NULL,
             FOREIGN KEY (device_id, module_id) REFERENCES modules (device_id, module_id)
                 ON DELETE CASCADE
         );
         CREATE INDEX module_inputs_by_module ON module_inputs (device_id, module_id, seq);
         CREATE INDEX module_inputs_by_expiry ON module_inputs (expiry);",
    ),
    // Exclusive readers' claims on event hub partitions (`pg_reader_claims.rs`).
    (
        7,
        "CREATE TABLE reader_claims (
             key TEXT PRIMARY KEY,
             holder TEXT NOT NULL,
             epoch BIGINT NOT NULL,
             lease_until BIGINT NOT NULL
         );",
    ),
    // Twin queries on `status` and `connectionState` (`pg_twin_sql.rs`): each state's devices
    // in id order, so that a page of them is one range however few there are.
    (
        8,
        "CREATE INDEX devices_by_enabled ON devices (enabled, device_id);
         CREATE INDEX devices_by_connected ON devices (connected, device_id);",
    ),
];

fn engine(what: &str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
    move |e| StoreError::Engine(format!("PostgreSQL {what}: {e}"))
}

/// Applies the migrations the database lacks and returns the versions it applied, in order
/// (none when the schema is current). A database migrated by a newer ironhub is refused rather
/// than used.
pub async fn migrate(pool: &Pool) -> Result<Vec<i32>> {
    let mut client = pool::client(pool).await?;
    let tx = client.transaction().await.map_err(engine("migration"))?;
    // Held until the transaction ends; other nodes wait here.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(engine("migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(engine("migration"))?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(engine("migration"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut done = Vec::new();
    for version in pending(&applied)? {
        let Some((_, sql)) = MIGRATIONS.iter().find(|(v, _)| *v == version) else {
            continue;
        };
        tx.batch_execute(sql)
            .await
            .map_err(engine(&format!("migration {version}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(engine("migration"))?;
        tracing::info!(version, "applied PostgreSQL schema migration");
        done.push(version);
    }
    tx.commit().await.map_err(engine("migration"))?;
    Ok(done)
}

/// The versions of [`MIGRATIONS`] missing from `applied`, in order; an error when `applied`
/// holds a version newer than this build knows (a newer ironhub migrated the database).
pub fn pending(applied: &[i32]) -> Result<Vec<i32>> {
    let newest_known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if let Some(newer) = applied.iter().find(|v| **v > newest_known) {
        return Err(StoreError::Corrupt(format!(
            "the database's schema is version {newer}, newer than this ironhub knows \
             ({newest_known}): upgrade ironhub"
        )));
    }
    Ok(MIGRATIONS
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| !applied.contains(v))
        .collect())
}

/// The versions recorded in `schema_migrations`, in order (empty before the first migration).
pub async fn applied_versions(pool: &Pool) -> Result<Vec<i32>> {
    let client = pool::client(pool).await?;
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(engine("query"))?
        .get(0);
    if !exists {
        return Ok(vec![]);
    }
    Ok(client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(engine("query"))?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

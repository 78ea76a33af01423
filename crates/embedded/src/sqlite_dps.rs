//! The Device Provisioning Service's part of the SQLite store: one table per collection, each
//! keyed by the lower-cased id, holding the domain's JSON document.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use chrono::{DateTime, Utc};
use ironhub_store::{
    DeviceWrite, DpsBatchResult, DpsCollection, DpsRecord, DpsSettings, DpsStore, DpsWrite,
    JointConflict, JointResult, RegistrationBegun, WriteConflict,
};

use crate::error::Result;
use crate::sqlite::{SqliteStore, get_meta, next_etag, set_meta, tag_matches, write_all};

fn table(collection: DpsCollection) -> &'static str {
    match collection {
        DpsCollection::Enrollments => "dps_enrollments",
        DpsCollection::EnrollmentGroups => "dps_enrollment_groups",
        DpsCollection::Registrations => "dps_registrations",
        DpsCollection::LinkedHubs => "dps_linked_hubs",
        DpsCollection::Operations => "dps_operations",
    }
}

/// The key ids are stored and compared under (DPS ids are ASCII).
fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

pub(crate) fn settings_or_init(conn: &mut Connection, init: DpsSettings) -> Result<DpsSettings> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let settings = match get_meta::<DpsSettings>(&tx, "dps")? {
        Some(existing) => existing,
        None => {
            set_meta(&tx, "dps", &init)?;
            init
        }
    };
    tx.commit()?;
    Ok(settings)
}

pub(crate) fn settings(conn: &Connection) -> Result<Option<DpsSettings>> {
    get_meta(conn, "dps")
}

pub(crate) fn get(conn: &Connection, c: DpsCollection, id: &str) -> Result<Option<DpsRecord>> {
    let doc: Option<String> = conn
        .prepare_cached(&format!("SELECT doc FROM {} WHERE id_key = ?1", table(c)))?
        .query_row([key(id)], |r| r.get(0))
        .optional()?;
    Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
}

pub(crate) fn list(
    conn: &Connection,
    c: DpsCollection,
    after: Option<&str>,
    limit: usize,
    group: Option<&str>,
) -> Result<Vec<DpsRecord>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let after = key(after.unwrap_or(""));
    let docs = match group {
        Some(g) => {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT doc FROM {} WHERE group_key = ?1 AND id_key > ?2 ORDER BY id_key LIMIT ?3",
                table(c)
            ))?;
            stmt.query_map(params![key(g), after, limit], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
        None => {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT doc FROM {} WHERE id_key > ?1 ORDER BY id_key LIMIT ?2",
                table(c)
            ))?;
            stmt.query_map(params![after, limit], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    docs.iter()
        .map(|d| serde_json::from_str(d).map_err(Into::into))
        .collect()
}

pub(crate) fn count(conn: &Connection, c: DpsCollection, group: Option<&str>) -> Result<u64> {
    let n: i64 = match group {
        Some(g) => conn
            .prepare_cached(&format!(
                "SELECT COUNT(*) FROM {} WHERE group_key = ?1",
                table(c)
            ))?
            .query_row([key(g)], |r| r.get(0))?,
        None => conn
            .prepare_cached(&format!("SELECT COUNT(*) FROM {}", table(c)))?
            .query_row([], |r| r.get(0))?,
    };
    Ok(u64::try_from(n).unwrap_or_default())
}

fn save(conn: &Connection, c: DpsCollection, mut record: DpsRecord) -> Result<DpsRecord> {
    record.etag = next_etag(conn)?;
    conn.prepare_cached(&format!(
        "INSERT INTO {} (id_key, group_key, doc) VALUES (?1, ?2, ?3)
         ON CONFLICT (id_key) DO UPDATE SET group_key = excluded.group_key, doc = excluded.doc",
        table(c)
    ))?
    .execute(params![
        key(&record.id),
        record.group_id.as_deref().map(key),
        serde_json::to_string(&record)?
    ])?;
    Ok(record)
}

fn apply(
    conn: &Connection,
    c: DpsCollection,
    write: DpsWrite,
) -> Result<std::result::Result<Option<DpsRecord>, WriteConflict>> {
    let current = get(conn, c, write.id())?;
    let matches = |current: &DpsRecord, tag: Option<&str>| {
        tag.is_none_or(|tag| tag_matches(&current.etag, tag))
    };
    Ok(match (write, current) {
        (DpsWrite::Create(_), Some(_)) => Err(WriteConflict::AlreadyExists),
        (DpsWrite::Create(record), None) => Ok(Some(save(conn, c, record)?)),
        (DpsWrite::Replace { .. } | DpsWrite::Delete { .. }, None) => Err(WriteConflict::NotFound),
        (DpsWrite::Replace { record, if_match }, Some(current)) => {
            if matches(&current, if_match.as_deref()) {
                let record = DpsRecord {
                    id: current.id,
                    ..record
                };
                Ok(Some(save(conn, c, record)?))
            } else {
                Err(WriteConflict::EtagMismatch)
            }
        }
        (DpsWrite::Delete { id, if_match }, Some(current)) => {
            if matches(&current, if_match.as_deref()) {
                conn.prepare_cached(&format!("DELETE FROM {} WHERE id_key = ?1", table(c)))?
                    .execute([key(&id)])?;
                Ok(None)
            } else {
                Err(WriteConflict::EtagMismatch)
            }
        }
    })
}

pub(crate) fn write(
    conn: &mut Connection,
    c: DpsCollection,
    writes: Vec<DpsWrite>,
) -> Result<DpsBatchResult> {
    write_all(conn, writes, |tx, w| apply(tx, c, w))
}

/// A hub device and a DPS record written in one transaction, or neither.
pub(crate) fn write_with_device(
    conn: &mut Connection,
    device: DeviceWrite,
    c: DpsCollection,
    write: DpsWrite,
    now: DateTime<Utc>,
) -> Result<JointResult> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let device = match crate::sqlite::apply(&tx, device, now)? {
        Ok(d) => d,
        Err(conflict) => return Ok(Err(JointConflict::Device(conflict))),
    };
    let record = match apply(&tx, c, write)? {
        Ok(r) => r,
        // Dropping the transaction rolls the device's write back.
        Err(conflict) => return Ok(Err(JointConflict::Dps(conflict))),
    };
    tx.commit()?;
    Ok(Ok((device, record)))
}

/// The device's operation written and its registration claimed (or found), in one transaction.
pub(crate) fn begin_registration(
    conn: &mut Connection,
    operation: DpsRecord,
    claim: DpsRecord,
) -> Result<RegistrationBegun> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let operation = match get(&tx, DpsCollection::Operations, &operation.id)? {
        // The stored id keeps its case, as a replace keeps it.
        Some(current) => DpsRecord {
            id: current.id,
            ..operation
        },
        None => operation,
    };
    let operation = save(&tx, DpsCollection::Operations, operation)?;
    let (registration, claimed) = match get(&tx, DpsCollection::Registrations, &claim.id)? {
        Some(found) => (found, false),
        None => (save(&tx, DpsCollection::Registrations, claim)?, true),
    };
    tx.commit()?;
    Ok(RegistrationBegun {
        operation,
        registration,
        claimed,
    })
}

#[async_trait]
impl DpsStore for SqliteStore {
    async fn dps_settings_or_init(&self, init: DpsSettings) -> ironhub_store::Result<DpsSettings> {
        self.with(move |conn| settings_or_init(conn, init)).await
    }

    async fn dps_settings(&self) -> ironhub_store::Result<Option<DpsSettings>> {
        self.read(settings).await
    }

    async fn dps_get(
        &self,
        collection: DpsCollection,
        id: &str,
    ) -> ironhub_store::Result<Option<DpsRecord>> {
        let id = id.to_owned();
        self.read_by_key(move |conn| get(conn, collection, &id))
            .await
    }

    async fn dps_list(
        &self,
        collection: DpsCollection,
        after: Option<&str>,
        limit: usize,
        group: Option<&str>,
    ) -> ironhub_store::Result<Vec<DpsRecord>> {
        let after = after.map(str::to_owned);
        let group = group.map(str::to_owned);
        self.read(move |conn| list(conn, collection, after.as_deref(), limit, group.as_deref()))
            .await
    }

    async fn dps_count(
        &self,
        collection: DpsCollection,
        group: Option<&str>,
    ) -> ironhub_store::Result<u64> {
        let group = group.map(str::to_owned);
        self.read(move |conn| count(conn, collection, group.as_deref()))
            .await
    }

    async fn dps_write(
        &self,
        collection: DpsCollection,
        writes: Vec<DpsWrite>,
    ) -> ironhub_store::Result<DpsBatchResult> {
        // A registration's operation is runtime state, like a device's connection state: it
        // goes through the `synchronous=NORMAL` connection (it survives `kill -9`, not a power
        // cut, after which the device registers again); everything else is acknowledged data.
        let write = move |conn: &mut Connection| write(conn, collection, writes);
        match collection {
            DpsCollection::Operations => self.with_runtime(write).await,
            _ => self.with(write).await,
        }
    }

    async fn dps_write_with_device(
        &self,
        device: DeviceWrite,
        collection: DpsCollection,
        write: DpsWrite,
    ) -> ironhub_store::Result<JointResult> {
        // Acknowledged data (a device, a registration record): the `synchronous=FULL`
        // connection, so one fsync covers both.
        let now = self.now();
        self.with(move |conn| write_with_device(conn, device, collection, write, now))
            .await
    }

    async fn dps_begin_registration(
        &self,
        operation: DpsRecord,
        claim: DpsRecord,
    ) -> ironhub_store::Result<RegistrationBegun> {
        // Through the `synchronous=NORMAL` connection, as operations: one database and one
        // WAL, so the next `synchronous=FULL` commit (the hub device, the final record) makes
        // the claim durable too, and a power cut before that loses only a claim nothing was
        // answered on.
        self.with_runtime(move |conn| begin_registration(conn, operation, claim))
            .await
    }
}

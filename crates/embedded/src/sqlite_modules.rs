//! Module identities in the SQLite store: one row per module, keyed by device and module id,
//! with the module's twin.

use async_trait::async_trait;
use ironhub_store::{
    ModuleRecord, ModuleStore, ModuleTwin, ModuleWrite, RuntimeUpdate, TwinRecord, WriteConflict,
};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::Result;
use crate::rows::device_from_doc;
use crate::sqlite::{SqliteStore, device_exists, next_etag, tag_matches};
use crate::sqlite_module_runtime::store_runtime;

type StoreResult<T> = ironhub_store::Result<T>;
type WriteResult = std::result::Result<Option<ModuleRecord>, WriteConflict>;

fn load(conn: &Connection, device_id: &str, module_id: &str) -> Result<Option<ModuleRecord>> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM modules WHERE device_id = ?1 AND module_id = ?2")?
        .query_row([device_id, module_id], |r| r.get(0))
        .optional()?;
    Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
}

fn save(conn: &Connection, mut record: ModuleRecord) -> Result<ModuleRecord> {
    record.etag = next_etag(conn)?;
    conn.prepare_cached(
        "INSERT INTO modules (device_id, module_id, doc) VALUES (?1, ?2, ?3)
         ON CONFLICT (device_id, module_id) DO UPDATE SET doc = excluded.doc",
    )?
    .execute(params![
        record.device_id,
        record.module_id,
        serde_json::to_string(&record)?
    ])?;
    Ok(record)
}

fn matches(current: &ModuleRecord, if_match: Option<&str>) -> bool {
    if_match.is_none_or(|tag| tag_matches(&current.etag, tag))
}

fn apply(conn: &mut Connection, write: ModuleWrite) -> Result<WriteResult> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcome = match write {
        ModuleWrite::Create(record) => {
            if !device_exists(&tx, &record.device_id)? {
                Err(WriteConflict::NotFound)
            } else if load(&tx, &record.device_id, &record.module_id)?.is_some() {
                Err(WriteConflict::AlreadyExists)
            } else {
                Ok(Some(save(&tx, record)?))
            }
        }
        ModuleWrite::Replace {
            mut record,
            if_match,
        } => match load(&tx, &record.device_id, &record.module_id)? {
            None => Err(WriteConflict::NotFound),
            Some(current) if !matches(&current, if_match.as_deref()) => {
                Err(WriteConflict::EtagMismatch)
            }
            Some(current) => {
                record.keep_runtime_of(&current);
                Ok(Some(save(&tx, record)?))
            }
        },
        ModuleWrite::Delete {
            device_id,
            module_id,
            if_match,
        } => match load(&tx, &device_id, &module_id)? {
            None => Err(WriteConflict::NotFound),
            Some(current) if !matches(&current, if_match.as_deref()) => {
                Err(WriteConflict::EtagMismatch)
            }
            Some(_) => {
                tx.execute(
                    "DELETE FROM modules WHERE device_id = ?1 AND module_id = ?2",
                    [&device_id, &module_id],
                )?;
                tx.execute(
                    "DELETE FROM module_inputs WHERE device_id = ?1 AND module_id = ?2",
                    [&device_id, &module_id],
                )?;
                tx.execute(
                    "DELETE FROM mqtt_sessions WHERE client_id = ?1",
                    [format!("{device_id}/{module_id}")],
                )?;
                Ok(None)
            }
        },
    };
    if outcome.is_ok() {
        tx.commit()?;
    }
    Ok(outcome)
}

/// A module's twin: `None` for no module, `Some(None)` for a module whose twin was never
/// written.
fn load_twin(
    conn: &Connection,
    device_id: &str,
    module_id: &str,
) -> Result<Option<Option<TwinRecord>>> {
    let doc: Option<Option<String>> = conn
        .prepare_cached("SELECT twin FROM modules WHERE device_id = ?1 AND module_id = ?2")?
        .query_row([device_id, module_id], |r| r.get(0))
        .optional()?;
    Ok(match doc {
        None => None,
        Some(None) => Some(None),
        Some(Some(d)) => Some(Some(serde_json::from_str(&d)?)),
    })
}

fn put_twin(
    conn: &mut Connection,
    module_id: &str,
    mut twin: TwinRecord,
    if_match: Option<String>,
) -> Result<std::result::Result<TwinRecord, WriteConflict>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(current) = load_twin(&tx, &twin.device_id, module_id)? else {
        return Ok(Err(WriteConflict::NotFound));
    };
    let current = current.map(|t| t.etag).unwrap_or_default();
    if if_match.is_some_and(|tag| !tag_matches(&current, &tag)) {
        return Ok(Err(WriteConflict::EtagMismatch));
    }
    twin.etag = next_etag(&tx)?;
    tx.execute(
        "UPDATE modules SET twin = ?3 WHERE device_id = ?1 AND module_id = ?2",
        params![twin.device_id, module_id, serde_json::to_string(&twin)?],
    )?;
    tx.commit()?;
    Ok(Ok(twin))
}

/// The modules after `after` in (device id, module id) order, with their devices and twins
/// (see `ModuleStore::scan_module_twins`): one walk of the modules' primary key.
fn scan(
    conn: &Connection,
    after: Option<(String, Option<String>)>,
    limit: usize,
) -> Result<Vec<ModuleTwin>> {
    // `(d, m) > (after, NULL)` holds for every module of a later device and none of its own.
    let (device, module) = match after {
        Some((d, m)) => (Sql::Text(d), m.map_or(Sql::Null, Sql::Text)),
        None => (Sql::Text(String::new()), Sql::Null),
    };
    let limit = Sql::Integer(i64::try_from(limit).unwrap_or(i64::MAX));
    let mut stmt = conn.prepare_cached(
        "SELECT d.doc, m.doc, m.twin FROM modules m JOIN devices d ON d.device_id = m.device_id
         WHERE (m.device_id, m.module_id) > (?1, ?2)
         ORDER BY m.device_id, m.module_id LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(params![device, module, limit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(device, module, twin)| {
            // A module twin's view counts the module's queued messages, not its device's.
            Ok((
                device_from_doc(&device, 0)?,
                serde_json::from_str(&module)?,
                twin.map(|t| serde_json::from_str(&t)).transpose()?,
            ))
        })
        .collect()
}

#[async_trait]
impl ModuleStore for SqliteStore {
    async fn get_module(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> StoreResult<Option<ModuleRecord>> {
        let (d, m) = (device_id.to_owned(), module_id.to_owned());
        self.read_by_key(move |conn| load(conn, &d, &m)).await
    }

    async fn list_modules(&self, device_id: &str) -> StoreResult<Vec<ModuleRecord>> {
        let d = device_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT doc FROM modules WHERE device_id = ?1 ORDER BY module_id",
            )?;
            let docs = stmt
                .query_map([&d], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            docs.iter()
                .map(|doc| Ok(serde_json::from_str(doc)?))
                .collect::<Result<Vec<_>>>()
        })
        .await
    }

    async fn write_module(&self, write: ModuleWrite) -> StoreResult<WriteResult> {
        self.with(move |conn| apply(conn, write)).await
    }

    async fn scan_module_twins(
        &self,
        after: Option<(&str, Option<&str>)>,
        limit: usize,
    ) -> StoreResult<Option<Vec<ModuleTwin>>> {
        let after = after.map(|(d, m)| (d.to_owned(), m.map(str::to_owned)));
        self.read(move |conn| scan(conn, after, limit).map(Some))
            .await
    }

    async fn update_module_runtime(
        &self,
        device_id: &str,
        module_id: &str,
        update: RuntimeUpdate,
    ) -> StoreResult<bool> {
        let (d, m) = (device_id.to_owned(), module_id.to_owned());
        // Runtime state, as a device's: it survives `kill -9`, not a power cut.
        self.with_runtime(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(mut module) = load(&tx, &d, &m)? else {
                return Ok(false);
            };
            if update.apply_to_module(&mut module) {
                store_runtime(&tx, &module)?;
                tx.commit()?;
            }
            Ok(true)
        })
        .await
    }

    async fn get_module_twin(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> StoreResult<Option<TwinRecord>> {
        let (d, m) = (device_id.to_owned(), module_id.to_owned());
        self.read_by_key(move |conn| Ok(load_twin(conn, &d, &m)?.flatten()))
            .await
    }

    async fn put_module_twin(
        &self,
        module_id: &str,
        twin: TwinRecord,
        if_match: Option<String>,
    ) -> StoreResult<std::result::Result<TwinRecord, WriteConflict>> {
        let m = module_id.to_owned();
        self.with(move |conn| put_twin(conn, &m, twin, if_match))
            .await
    }
}

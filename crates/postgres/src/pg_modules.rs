//! Module identities on PostgreSQL: one row per module, keyed by device and module id, with
//! the module's twin beside it. The foreign key on `devices` deletes a device's modules with
//! it; creating a module holds its device's row so the two never cross.

use async_trait::async_trait;
use ironhub_store::{
    ModuleRecord, ModuleStore, ModuleWrite, Result, RuntimeUpdate, TwinRecord, WriteConflict,
};

use crate::PgStore;
use crate::store::{corrupt, db, next_etag, tag_matches};

type WriteResult = std::result::Result<Option<ModuleRecord>, WriteConflict>;

/// A module's column (`doc` or `twin`): `None` for no module; locked until the transaction
/// ends (`lock`).
async fn column(
    client: &impl deadpool_postgres::GenericClient,
    column: &str,
    device_id: &str,
    module_id: &str,
    lock: bool,
) -> Result<Option<Option<String>>> {
    let sql = format!(
        "SELECT {column}::text FROM modules WHERE device_id = $1 AND module_id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = client
        .query_opt(&sql, &[&device_id, &module_id])
        .await
        .map_err(db)?;
    Ok(row.map(|r| r.get(0)))
}

/// One module; locked until the transaction ends (`lock`).
async fn load(
    client: &impl deadpool_postgres::GenericClient,
    device_id: &str,
    module_id: &str,
    lock: bool,
) -> Result<Option<ModuleRecord>> {
    column(client, "doc", device_id, module_id, lock)
        .await?
        .flatten()
        .map(|doc| serde_json::from_str(&doc).map_err(corrupt))
        .transpose()
}

/// Writes a module with a new etag, inserting or replacing it; with `create`, only if its id
/// is free (`None` if not).
async fn save(
    client: &impl deadpool_postgres::GenericClient,
    mut record: ModuleRecord,
    create: bool,
) -> Result<Option<ModuleRecord>> {
    record.etag = next_etag(client).await?;
    let doc = serde_json::to_string(&record).map_err(corrupt)?;
    let on_conflict = if create {
        "DO NOTHING"
    } else {
        "DO UPDATE SET doc = excluded.doc"
    };
    let sql = format!(
        "INSERT INTO modules (device_id, module_id, doc) VALUES ($1, $2, $3::text::jsonb)
         ON CONFLICT (device_id, module_id) {on_conflict}"
    );
    let n = client
        .execute(&sql, &[&record.device_id, &record.module_id, &doc])
        .await
        .map_err(db)?;
    Ok((n > 0).then_some(record))
}

/// Writes a module's document as it is, etag included (its runtime fields changed).
async fn store_runtime(
    client: &impl deadpool_postgres::GenericClient,
    module: &ModuleRecord,
) -> Result<()> {
    let doc = serde_json::to_string(module).map_err(corrupt)?;
    client
        .execute(
            "UPDATE modules SET doc = $3::text::jsonb WHERE device_id = $1 AND module_id = $2",
            &[&module.device_id, &module.module_id, &doc],
        )
        .await
        .map_err(db)?;
    Ok(())
}

/// Marks disconnected the modules whose connection `node` (or no known node) held; how many.
pub(crate) async fn disconnect_node_modules(
    client: &impl deadpool_postgres::GenericClient,
    node: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    let rows = client
        .query(
            "SELECT doc::text FROM modules WHERE doc->>'connectionState' = 'Connected'
             ORDER BY device_id, module_id FOR UPDATE",
            &[],
        )
        .await
        .map_err(db)?;
    let mut disconnected = 0;
    for row in &rows {
        let mut module: ModuleRecord =
            serde_json::from_str(row.get::<_, &str>(0)).map_err(corrupt)?;
        if module.runtime().disconnect_from(node, now) {
            store_runtime(client, &module).await?;
            disconnected += 1;
        }
    }
    Ok(disconnected)
}

fn matches(current: &ModuleRecord, if_match: Option<&str>) -> bool {
    if_match.is_none_or(|tag| tag_matches(&current.etag, tag))
}

async fn apply(tx: &deadpool_postgres::Transaction<'_>, write: ModuleWrite) -> Result<WriteResult> {
    Ok(match write {
        ModuleWrite::Create(record) => {
            // Held until the commit: the device cannot be deleted under its new module.
            let device = tx
                .query_opt(
                    "SELECT 1 FROM devices WHERE device_id = $1 FOR SHARE",
                    &[&record.device_id],
                )
                .await
                .map_err(db)?;
            if device.is_none() {
                Err(WriteConflict::NotFound)
            } else {
                match save(tx, record, true).await? {
                    Some(created) => Ok(Some(created)),
                    None => Err(WriteConflict::AlreadyExists),
                }
            }
        }
        ModuleWrite::Replace {
            mut record,
            if_match,
        } => match load(tx, &record.device_id, &record.module_id, true).await? {
            None => Err(WriteConflict::NotFound),
            Some(current) if !matches(&current, if_match.as_deref()) => {
                Err(WriteConflict::EtagMismatch)
            }
            Some(current) => {
                record.keep_runtime_of(&current);
                Ok(save(tx, record, false).await?)
            }
        },
        ModuleWrite::Delete {
            device_id,
            module_id,
            if_match,
        } => match load(tx, &device_id, &module_id, true).await? {
            None => Err(WriteConflict::NotFound),
            Some(current) if !matches(&current, if_match.as_deref()) => {
                Err(WriteConflict::EtagMismatch)
            }
            Some(_) => {
                tx.execute(
                    "DELETE FROM modules WHERE device_id = $1 AND module_id = $2",
                    &[&device_id, &module_id],
                )
                .await
                .map_err(db)?;
                tx.execute(
                    "DELETE FROM mqtt_sessions WHERE client_id = $1",
                    &[&format!("{device_id}/{module_id}")],
                )
                .await
                .map_err(db)?;
                Ok(None)
            }
        },
    })
}

/// A module's twin: `None` for no module, `Some(None)` for a module whose twin was never
/// written; locked until the transaction ends (`lock`).
async fn load_twin(
    client: &impl deadpool_postgres::GenericClient,
    device_id: &str,
    module_id: &str,
    lock: bool,
) -> Result<Option<Option<TwinRecord>>> {
    column(client, "twin", device_id, module_id, lock)
        .await?
        .map(|twin| {
            twin.map(|doc| serde_json::from_str(&doc).map_err(corrupt))
                .transpose()
        })
        .transpose()
}

#[async_trait]
impl ModuleStore for PgStore {
    async fn get_module(&self, device_id: &str, module_id: &str) -> Result<Option<ModuleRecord>> {
        load(&self.client().await?, device_id, module_id, false).await
    }

    async fn list_modules(&self, device_id: &str) -> Result<Vec<ModuleRecord>> {
        self.client()
            .await?
            .query(
                "SELECT doc::text FROM modules WHERE device_id = $1 ORDER BY module_id",
                &[&device_id],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt))
            .collect()
    }

    async fn write_module(&self, write: ModuleWrite) -> Result<WriteResult> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let outcome = apply(&tx, write).await?;
        if outcome.is_ok() {
            tx.commit().await.map_err(db)?;
        } else {
            tx.rollback().await.map_err(db)?;
        }
        Ok(outcome)
    }

    async fn update_module_runtime(
        &self,
        device_id: &str,
        module_id: &str,
        update: RuntimeUpdate,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(mut module) = load(&tx, device_id, module_id, true).await? else {
            return Ok(false);
        };
        if update.apply_to_module(&mut module) {
            store_runtime(&tx, &module).await?;
            tx.commit().await.map_err(db)?;
        }
        Ok(true)
    }

    async fn get_module_twin(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> Result<Option<TwinRecord>> {
        Ok(
            load_twin(&self.client().await?, device_id, module_id, false)
                .await?
                .flatten(),
        )
    }

    async fn put_module_twin(
        &self,
        module_id: &str,
        mut twin: TwinRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<TwinRecord, WriteConflict>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(current) = load_twin(&tx, &twin.device_id, module_id, true).await? else {
            return Ok(Err(WriteConflict::NotFound));
        };
        let current = current.map(|t| t.etag).unwrap_or_default();
        if if_match.is_some_and(|tag| !tag_matches(&current, &tag)) {
            return Ok(Err(WriteConflict::EtagMismatch));
        }
        twin.etag = next_etag(&tx).await?;
        let doc = serde_json::to_string(&twin).map_err(corrupt)?;
        tx.execute(
            "UPDATE modules SET twin = $3::text::jsonb WHERE device_id = $1 AND module_id = $2",
            &[&twin.device_id, &module_id, &doc],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Ok(twin))
    }
}

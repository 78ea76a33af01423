//! The Device Provisioning Service's part of the PostgreSQL store: one table per collection,
//! each keyed by the lower-cased id, holding the domain's JSON document.

use async_trait::async_trait;
use ironhub_store::{
    DeviceWrite, DpsBatchResult, DpsCollection, DpsRecord, DpsSettings, DpsStore, DpsWrite,
    JointConflict, JointResult, Result, WriteConflict,
};

use crate::PgStore;
use crate::store::{corrupt, db, meta, meta_or_init, next_etag, tag_matches, write_all};

fn table(collection: DpsCollection) -> &'static str {
    match collection {
        DpsCollection::Enrollments => "dps_enrollments",
        DpsCollection::EnrollmentGroups => "dps_enrollment_groups",
        DpsCollection::Registrations => "dps_registrations",
        DpsCollection::LinkedHubs => "dps_linked_hubs",
        DpsCollection::Operations => "dps_operations",
    }
}

/// The key ids are stored, compared and ordered under (DPS ids are ASCII; the `C` collation
/// orders them byte by byte, as the embedded engine does).
fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

fn parse(doc: &str) -> Result<DpsRecord> {
    serde_json::from_str(doc).map_err(corrupt)
}

/// One record, locked until the transaction ends (`lock`).
async fn get(
    client: &impl deadpool_postgres::GenericClient,
    c: DpsCollection,
    id: &str,
    lock: bool,
) -> Result<Option<DpsRecord>> {
    let sql = format!(
        "SELECT doc::text FROM {} WHERE id_key = $1{}",
        table(c),
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = client.query_opt(&sql, &[&key(id)]).await.map_err(db)?;
    row.map(|r| parse(r.get(0))).transpose()
}

/// Stores a record under a new etag; with `create`, only if its id is free (`None` if not).
async fn save(
    client: &impl deadpool_postgres::GenericClient,
    c: DpsCollection,
    mut record: DpsRecord,
    create: bool,
) -> Result<Option<DpsRecord>> {
    record.etag = next_etag(client).await?;
    let on_conflict = if create {
        "DO NOTHING"
    } else {
        "DO UPDATE SET group_key = excluded.group_key, doc = excluded.doc"
    };
    let sql = format!(
        "INSERT INTO {} (id_key, group_key, doc) VALUES ($1, $2, $3::text::jsonb)
         ON CONFLICT (id_key) {on_conflict}",
        table(c)
    );
    let doc = serde_json::to_string(&record).map_err(corrupt)?;
    let group = record.group_id.as_deref().map(key);
    let n = client
        .execute(&sql, &[&key(&record.id), &group, &doc])
        .await
        .map_err(db)?;
    Ok((n > 0).then_some(record))
}

async fn apply(
    client: &impl deadpool_postgres::GenericClient,
    c: DpsCollection,
    write: DpsWrite,
) -> Result<std::result::Result<Option<DpsRecord>, WriteConflict>> {
    let current = get(client, c, write.id(), true).await?;
    let matches = |current: &DpsRecord, tag: Option<&str>| {
        tag.is_none_or(|tag| tag_matches(&current.etag, tag))
    };
    Ok(match (write, current) {
        (DpsWrite::Create(_), Some(_)) => Err(WriteConflict::AlreadyExists),
        (DpsWrite::Create(record), None) => match save(client, c, record, true).await? {
            Some(saved) => Ok(Some(saved)),
            // Created by another node since the read.
            None => Err(WriteConflict::AlreadyExists),
        },
        (DpsWrite::Replace { .. } | DpsWrite::Delete { .. }, None) => Err(WriteConflict::NotFound),
        (DpsWrite::Replace { record, if_match }, Some(current)) => {
            if matches(&current, if_match.as_deref()) {
                let record = DpsRecord {
                    id: current.id,
                    ..record
                };
                Ok(save(client, c, record, false).await?)
            } else {
                Err(WriteConflict::EtagMismatch)
            }
        }
        (DpsWrite::Delete { id, if_match }, Some(current)) => {
            if matches(&current, if_match.as_deref()) {
                let sql = format!("DELETE FROM {} WHERE id_key = $1", table(c));
                client.execute(&sql, &[&key(&id)]).await.map_err(db)?;
                Ok(None)
            } else {
                Err(WriteConflict::EtagMismatch)
            }
        }
    })
}

#[async_trait]
impl DpsStore for PgStore {
    async fn dps_settings_or_init(&self, init: DpsSettings) -> Result<DpsSettings> {
        meta_or_init(&self.client().await?, "dps", init).await
    }

    async fn dps_settings(&self) -> Result<Option<DpsSettings>> {
        meta(&self.client().await?, "dps").await
    }

    async fn dps_get(&self, collection: DpsCollection, id: &str) -> Result<Option<DpsRecord>> {
        get(&self.client().await?, collection, id, false).await
    }

    async fn dps_list(
        &self,
        collection: DpsCollection,
        after: Option<&str>,
        limit: usize,
        group: Option<&str>,
    ) -> Result<Vec<DpsRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = key(after.unwrap_or(""));
        let client = self.client().await?;
        let rows = match group {
            Some(g) => {
                let sql = format!(
                    "SELECT doc::text FROM {} WHERE group_key = $1 AND id_key COLLATE \"C\" > $2
                     ORDER BY id_key COLLATE \"C\" LIMIT $3",
                    table(collection)
                );
                client.query(&sql, &[&key(g), &after, &limit]).await
            }
            None => {
                let sql = format!(
                    "SELECT doc::text FROM {} WHERE id_key COLLATE \"C\" > $1
                     ORDER BY id_key COLLATE \"C\" LIMIT $2",
                    table(collection)
                );
                client.query(&sql, &[&after, &limit]).await
            }
        }
        .map_err(db)?;
        rows.iter().map(|r| parse(r.get(0))).collect()
    }

    async fn dps_count(&self, collection: DpsCollection, group: Option<&str>) -> Result<u64> {
        let client = self.client().await?;
        let row = match group {
            Some(g) => {
                let sql = format!(
                    "SELECT COUNT(*) FROM {} WHERE group_key = $1",
                    table(collection)
                );
                client.query_one(&sql, &[&key(g)]).await
            }
            None => {
                let sql = format!("SELECT COUNT(*) FROM {}", table(collection));
                client.query_one(&sql, &[]).await
            }
        }
        .map_err(db)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or_default())
    }

    async fn dps_write(
        &self,
        collection: DpsCollection,
        writes: Vec<DpsWrite>,
    ) -> Result<DpsBatchResult> {
        // All or none: committed only when no write conflicts.
        write_all(self, writes, async move |tx, write| {
            apply(tx, collection, write).await
        })
        .await
    }

    async fn dps_write_with_device(
        &self,
        device: DeviceWrite,
        collection: DpsCollection,
        write: DpsWrite,
    ) -> Result<JointResult> {
        let now = self.clock.now();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let device = match crate::pg_registry::apply(&tx, device, now).await? {
            Ok(d) => d,
            Err(conflict) => {
                tx.rollback().await.map_err(db)?;
                return Ok(Err(JointConflict::Device(conflict)));
            }
        };
        let record = match apply(&tx, collection, write).await? {
            Ok(r) => r,
            Err(conflict) => {
                tx.rollback().await.map_err(db)?;
                return Ok(Err(JointConflict::Dps(conflict)));
            }
        };
        tx.commit().await.map_err(db)?;
        Ok(Ok((device, record)))
    }
}

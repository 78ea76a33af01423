//! The Device Provisioning Service's part of the SQLite store: one table per collection, each
//! keyed by the lower-cased id, holding the domain's JSON document.

use rusqlite::{Connection, OptionalExtension, params};

use crate::sqlite::{get_meta, next_etag, set_meta, tag_matches};
use crate::{DpsCollection, DpsRecord, DpsSettings, DpsWrite, Result, WriteConflict};

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
) -> Result<crate::DpsBatchResult> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut done = Vec::with_capacity(writes.len());
    let mut failed = Vec::new();
    for (i, w) in writes.into_iter().enumerate() {
        match apply(&tx, c, w)? {
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

#[cfg(test)]
mod tests {
    use crate::{
        DpsCollection as C, DpsRecord, DpsSettings, DpsWrite, SqliteStore, Store, WriteConflict,
    };
    use chrono::Utc;
    use serde_json::json;

    fn record(id: &str, group: Option<&str>) -> DpsRecord {
        DpsRecord {
            id: id.into(),
            group_id: group.map(Into::into),
            etag: String::new(),
            doc: json!({ "registrationId": id }),
        }
    }

    async fn create(store: &SqliteStore, c: C, r: DpsRecord) -> DpsRecord {
        store
            .dps_write(c, vec![DpsWrite::Create(r)])
            .await
            .unwrap()
            .unwrap()[0]
            .clone()
            .unwrap()
    }

    #[tokio::test]
    async fn settings_are_created_once_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = DpsSettings {
            id_scope: "0ne0000ABCD".into(),
            policies: vec![],
            created_time: Utc::now(),
        };
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            assert!(store.dps_settings().await.unwrap().is_none());
            assert_eq!(
                store.dps_settings_or_init(first.clone()).await.unwrap(),
                first
            );
            let other = DpsSettings {
                id_scope: "0ne11111111".into(),
                ..first.clone()
            };
            assert_eq!(store.dps_settings_or_init(other).await.unwrap(), first);
        }
        let store = SqliteStore::open_existing(dir.path()).unwrap();
        assert_eq!(store.dps_settings().await.unwrap(), Some(first));
    }

    #[tokio::test]
    async fn ids_are_case_insensitive_and_keep_their_case() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let a = create(&store, C::Enrollments, record("Dev-A", None)).await;
        assert!(!a.etag.is_empty());
        let got = store
            .dps_get(C::Enrollments, "dev-a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.id, "Dev-A");
        // Another collection is another namespace.
        assert!(
            store
                .dps_get(C::EnrollmentGroups, "dev-a")
                .await
                .unwrap()
                .is_none()
        );
        let again = store
            .dps_write(
                C::Enrollments,
                vec![DpsWrite::Create(record("DEV-A", None))],
            )
            .await
            .unwrap();
        assert_eq!(again.unwrap_err(), vec![(0, WriteConflict::AlreadyExists)]);

        // A replace addressed in another case keeps the stored case and changes the etag.
        let replaced = store
            .dps_write(
                C::Enrollments,
                vec![DpsWrite::Replace {
                    record: record("DEV-a", None),
                    if_match: Some(a.etag.clone()),
                }],
            )
            .await
            .unwrap()
            .unwrap()[0]
            .clone()
            .unwrap();
        assert_eq!(replaced.id, "Dev-A");
        assert_ne!(replaced.etag, a.etag);
        let stale = store
            .dps_write(
                C::Enrollments,
                vec![DpsWrite::Delete {
                    id: "dev-a".into(),
                    if_match: Some(a.etag.clone()),
                }],
            )
            .await
            .unwrap();
        assert_eq!(stale.unwrap_err(), vec![(0, WriteConflict::EtagMismatch)]);
        store
            .dps_write(
                C::Enrollments,
                vec![DpsWrite::Delete {
                    id: "DEV-A".into(),
                    if_match: Some("*".into()),
                }],
            )
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .dps_get(C::Enrollments, "Dev-A")
                .await
                .unwrap()
                .is_none()
        );
        // An etag is never reused, not even after delete and create.
        let b = create(&store, C::Enrollments, record("Dev-A", None)).await;
        assert_ne!(b.etag, a.etag);
        assert_ne!(b.etag, replaced.etag);
    }

    #[tokio::test]
    async fn a_failed_batch_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let r = store
            .dps_write(
                C::EnrollmentGroups,
                vec![
                    DpsWrite::Create(record("g1", None)),
                    DpsWrite::Replace {
                        record: record("missing", None),
                        if_match: None,
                    },
                ],
            )
            .await
            .unwrap();
        assert_eq!(r.unwrap_err(), vec![(1, WriteConflict::NotFound)]);
        assert_eq!(store.dps_count(C::EnrollmentGroups, None).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn lists_page_in_id_order_and_filter_by_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        for (id, group) in [
            ("c", Some("G1")),
            ("B", Some("g1")),
            ("a", None),
            ("d", Some("g2")),
        ] {
            create(&store, C::Registrations, record(id, group)).await;
        }
        let page = store
            .dps_list(C::Registrations, None, 2, None)
            .await
            .unwrap();
        let ids: Vec<_> = page.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "B"]);
        let rest = store
            .dps_list(C::Registrations, Some("b"), 10, None)
            .await
            .unwrap();
        let ids: Vec<_> = rest.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["c", "d"]);
        let g1 = store
            .dps_list(C::Registrations, None, 10, Some("g1"))
            .await
            .unwrap();
        let ids: Vec<_> = g1.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["B", "c"]);
        assert_eq!(
            store.dps_count(C::Registrations, Some("G1")).await.unwrap(),
            2
        );
        assert_eq!(store.dps_count(C::Registrations, None).await.unwrap(), 4);
    }
}

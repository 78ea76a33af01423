//! Scheduled jobs of the SQLite store: the `jobs` table (one document and etag per job,
//! written compare-and-swap in one transaction) and `job_devices` (each job's result per
//! device, claimed with an insert that does nothing when the row exists, handed over by a
//! compare-and-swap on the document in one transaction).

use async_trait::async_trait;
use ironhub_store::{JobDeviceRecord, JobRecord, JobStore, WriteConflict};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::sqlite::{SqliteStore, next_etag, tag_matches};

type StoreResult<T> = ironhub_store::Result<T>;

fn load(conn: &rusqlite::Connection, job_id: &str) -> crate::error::Result<Option<JobRecord>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT doc FROM jobs WHERE job_id = ?1")?
        .query_row([job_id], |r| r.get(0))
        .optional()?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn get_job(&self, job_id: &str) -> StoreResult<Option<JobRecord>> {
        let job_id = job_id.to_owned();
        self.with(move |conn| load(conn, &job_id)).await
    }

    async fn list_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT doc FROM jobs ORDER BY job_id")?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(serde_json::from_str(&row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn write_job(
        &self,
        job_id: &str,
        doc: serde_json::Value,
        if_match: Option<&str>,
    ) -> StoreResult<Result<JobRecord, WriteConflict>> {
        let job_id = job_id.to_owned();
        let if_match = if_match.map(str::to_owned);
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            match (load(&tx, &job_id)?, &if_match) {
                (Some(_), None) => return Ok(Err(WriteConflict::AlreadyExists)),
                (None, Some(_)) => return Ok(Err(WriteConflict::NotFound)),
                (Some(c), Some(tag)) if !tag_matches(&c.etag, tag) => {
                    return Ok(Err(WriteConflict::EtagMismatch));
                }
                _ => {}
            }
            let record = JobRecord {
                job_id,
                doc,
                etag: next_etag(&tx)?,
            };
            tx.prepare_cached(
                "INSERT INTO jobs (job_id, doc) VALUES (?1, ?2)
                 ON CONFLICT (job_id) DO UPDATE SET doc = excluded.doc",
            )?
            .execute(params![record.job_id, serde_json::to_string(&record)?])?;
            tx.commit()?;
            Ok(Ok(record))
        })
        .await
    }

    async fn claim_job_device(&self, record: JobDeviceRecord) -> StoreResult<bool> {
        self.with(move |conn| {
            let written = conn
                .prepare_cached(
                    "INSERT INTO job_devices (device_id, job_id, doc) VALUES (?1, ?2, ?3)
                     ON CONFLICT (device_id, job_id) DO NOTHING",
                )?
                .execute(params![
                    record.device_id,
                    record.job_id,
                    serde_json::to_string(&record.doc)?
                ])?;
            Ok(written == 1)
        })
        .await
    }

    async fn put_job_device(&self, record: JobDeviceRecord) -> StoreResult<()> {
        self.with(move |conn| {
            conn.prepare_cached(
                "INSERT INTO job_devices (device_id, job_id, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT (device_id, job_id) DO UPDATE SET doc = excluded.doc",
            )?
            .execute(params![
                record.device_id,
                record.job_id,
                serde_json::to_string(&record.doc)?
            ])?;
            Ok(())
        })
        .await
    }

    async fn replace_job_device(
        &self,
        record: JobDeviceRecord,
        expected: &serde_json::Value,
    ) -> StoreResult<bool> {
        let expected = expected.clone();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored: Option<String> = tx
                .prepare_cached("SELECT doc FROM job_devices WHERE device_id = ?1 AND job_id = ?2")?
                .query_row(params![record.device_id, record.job_id], |row| row.get(0))
                .optional()?;
            let Some(stored) = stored else {
                return Ok(false);
            };
            if serde_json::from_str::<serde_json::Value>(&stored)? != expected {
                return Ok(false);
            }
            tx.prepare_cached(
                "UPDATE job_devices SET doc = ?3 WHERE device_id = ?1 AND job_id = ?2",
            )?
            .execute(params![
                record.device_id,
                record.job_id,
                serde_json::to_string(&record.doc)?
            ])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn list_job_devices(&self, job_id: Option<&str>) -> StoreResult<Vec<JobDeviceRecord>> {
        let job_id = job_id.map(str::to_owned);
        self.with(move |conn| {
            let rows = match &job_id {
                Some(job) => conn
                    .prepare_cached(
                        "SELECT job_id, device_id, doc FROM job_devices WHERE job_id = ?1
                         ORDER BY device_id",
                    )?
                    .query_map([job], device_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
                None => conn
                    .prepare_cached(
                        "SELECT job_id, device_id, doc FROM job_devices
                         ORDER BY device_id, job_id",
                    )?
                    .query_map([], device_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            };
            let mut out = Vec::with_capacity(rows.len());
            for (job_id, device_id, doc) in rows {
                out.push(JobDeviceRecord {
                    job_id,
                    device_id,
                    doc: serde_json::from_str(&doc)?,
                });
            }
            Ok(out)
        })
        .await
    }
}

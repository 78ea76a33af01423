//! Scheduled jobs on PostgreSQL: `jobs` (one document per job, replaced under its row lock
//! after its etag is checked; a create is an insert that does nothing on a taken id) and
//! `job_devices` (a claim is an insert that does nothing when the row exists, so of nodes
//! claiming one device of one job exactly one wins).

use async_trait::async_trait;
use ironhub_store::{JobDeviceRecord, JobRecord, JobStore, Result, WriteConflict};

use crate::PgStore;
use crate::store::{corrupt, db, next_etag, tag_matches};

fn record(row: &tokio_postgres::Row) -> Result<JobRecord> {
    serde_json::from_str(row.get::<_, &str>(0)).map_err(corrupt)
}

fn device_record(row: &tokio_postgres::Row) -> Result<JobDeviceRecord> {
    Ok(JobDeviceRecord {
        job_id: row.get(0),
        device_id: row.get(1),
        doc: serde_json::from_str(row.get::<_, &str>(2)).map_err(corrupt)?,
    })
}

#[async_trait]
impl JobStore for PgStore {
    async fn get_job(&self, job_id: &str) -> Result<Option<JobRecord>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT doc::text FROM jobs WHERE job_id = $1", &[&job_id])
            .await
            .map_err(db)?;
        row.as_ref().map(record).transpose()
    }

    async fn list_jobs(&self) -> Result<Vec<JobRecord>> {
        let rows = self
            .client()
            .await?
            .query("SELECT doc::text FROM jobs ORDER BY job_id", &[])
            .await
            .map_err(db)?;
        rows.iter().map(record).collect()
    }

    async fn write_job(
        &self,
        job_id: &str,
        doc: serde_json::Value,
        if_match: Option<&str>,
    ) -> Result<std::result::Result<JobRecord, WriteConflict>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let stored = JobRecord {
            job_id: job_id.to_owned(),
            doc,
            etag: next_etag(&tx).await?,
        };
        let text = serde_json::to_string(&stored).map_err(corrupt)?;
        match if_match {
            None => {
                let inserted = tx
                    .execute(
                        "INSERT INTO jobs (job_id, doc) VALUES ($1, $2::text::jsonb)
                         ON CONFLICT (job_id) DO NOTHING",
                        &[&job_id, &text],
                    )
                    .await
                    .map_err(db)?;
                if inserted == 0 {
                    return Ok(Err(WriteConflict::AlreadyExists));
                }
            }
            Some(tag) => {
                let row = tx
                    .query_opt(
                        "SELECT doc::text FROM jobs WHERE job_id = $1 FOR UPDATE",
                        &[&job_id],
                    )
                    .await
                    .map_err(db)?;
                match row.as_ref().map(record).transpose()? {
                    None => return Ok(Err(WriteConflict::NotFound)),
                    Some(c) if !tag_matches(&c.etag, tag) => {
                        return Ok(Err(WriteConflict::EtagMismatch));
                    }
                    Some(_) => {}
                }
                tx.execute(
                    "UPDATE jobs SET doc = $2::text::jsonb WHERE job_id = $1",
                    &[&job_id, &text],
                )
                .await
                .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(Ok(stored))
    }

    async fn claim_job_device(&self, record: JobDeviceRecord) -> Result<bool> {
        let doc = serde_json::to_string(&record.doc).map_err(corrupt)?;
        let written = self
            .client()
            .await?
            .execute(
                "INSERT INTO job_devices (device_id, job_id, doc) VALUES ($1, $2, $3::text::jsonb)
                 ON CONFLICT (device_id, job_id) DO NOTHING",
                &[&record.device_id, &record.job_id, &doc],
            )
            .await
            .map_err(db)?;
        Ok(written == 1)
    }

    async fn put_job_device(&self, record: JobDeviceRecord) -> Result<()> {
        let doc = serde_json::to_string(&record.doc).map_err(corrupt)?;
        self.client()
            .await?
            .execute(
                "INSERT INTO job_devices (device_id, job_id, doc) VALUES ($1, $2, $3::text::jsonb)
                 ON CONFLICT (device_id, job_id) DO UPDATE SET doc = excluded.doc",
                &[&record.device_id, &record.job_id, &doc],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn replace_job_device(
        &self,
        record: JobDeviceRecord,
        expected: &serde_json::Value,
    ) -> Result<bool> {
        let doc = serde_json::to_string(&record.doc).map_err(corrupt)?;
        let expected = serde_json::to_string(expected).map_err(corrupt)?;
        let written = self
            .client()
            .await?
            .execute(
                "UPDATE job_devices SET doc = $3::text::jsonb
                 WHERE device_id = $1 AND job_id = $2 AND doc = $4::text::jsonb",
                &[&record.device_id, &record.job_id, &doc, &expected],
            )
            .await
            .map_err(db)?;
        Ok(written == 1)
    }

    async fn list_job_devices(&self, job_id: Option<&str>) -> Result<Vec<JobDeviceRecord>> {
        let client = self.client().await?;
        let rows = match job_id {
            Some(job) => {
                client
                    .query(
                        "SELECT job_id, device_id, doc::text FROM job_devices WHERE job_id = $1
                     ORDER BY device_id",
                        &[&job],
                    )
                    .await
            }
            None => {
                client
                    .query(
                        "SELECT job_id, device_id, doc::text FROM job_devices
                     ORDER BY device_id, job_id",
                        &[],
                    )
                    .await
            }
        }
        .map_err(db)?;
        rows.iter().map(device_record).collect()
    }
}

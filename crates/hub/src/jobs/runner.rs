//! Running jobs, on every node: a pass reads every job, starts those due (compare-and-swap
//! from `queued`/`scheduled` to `running`), and runs each running job on the devices its
//! query condition selects. A device is run once per job: its record is first written as a
//! claim (`JobStore::claim_job_device`), which only one node wins (`claims` hands over the
//! claims of a node that died). Before each device the
//! job is read again, so a cancel stops it, and past `startTime + maxExecutionTimeInSeconds`
//! it stops too. The node that finds every device's record final completes the job. A pass
//! runs every [`PASS_INTERVAL`] and at once when a job is created on this node (a `Notify`,
//! only a hint: the state is in the store). The same pass runs import and export jobs
//! (`import_export`), each to its end.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ironhub_store::{JobDeviceRecord, WriteConflict};

use super::{
    DEVICE_METHOD, UPDATE_TWIN, parse_device_job, parse_job, parse_time, status, to_doc, twin_patch,
};
use crate::model::{
    DeviceJob, DeviceJobError, DeviceJobOutcome, JobResponse, MethodResult, azure_time,
};
use crate::query::MAX_PAGE_SIZE;
use crate::{Hub, HubError};

/// How often every node looks for due jobs without being woken.
pub const PASS_INTERVAL: Duration = Duration::from_secs(5);

/// When a job must stop.
fn deadline(job: &JobResponse) -> Result<DateTime<Utc>, HubError> {
    let start = parse_time(job.start_time.as_deref().unwrap_or_default())?;
    let max = job
        .max_execution_time_in_seconds
        .unwrap_or(super::DEFAULT_MAX_EXECUTION_SECONDS);
    Ok(start + TimeDelta::seconds(max))
}

impl Hub {
    /// Wakes this node's runner (a job was created here).
    pub fn kick_jobs(&self) {
        self.jobs_kick.notify_one();
    }

    /// Runs jobs until `stop` turns true: a pass on every kick and every `every`.
    pub async fn run_jobs(self, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.run_due_jobs().await {
                tracing::warn!(error = %e, "jobs pass failed; retried on the next");
            }
            tokio::select! {
                () = self.jobs_kick.notified() => {}
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One pass: starts the jobs that are due and runs every running job to its end (or
    /// until it is cancelled or out of time). A failure on one job is logged and left to the
    /// next pass.
    pub async fn run_due_jobs(&self) -> Result<(), HubError> {
        for record in self.store.list_jobs().await? {
            if super::is_import_export(&record) {
                let job_id = record.job_id.clone();
                if let Err(e) = self.advance_import_export(record).await {
                    tracing::warn!(job_id = %job_id, error = %e, "import/export job step failed; retried on the next pass");
                }
                continue;
            }
            let job = match parse_job(&record) {
                Ok(job) => job,
                Err(e) => {
                    tracing::warn!(job_id = %record.job_id, error = %e, "unreadable job skipped");
                    continue;
                }
            };
            if status::is_final(&job.status) {
                continue;
            }
            if let Err(e) = self.advance_job(&job.job_id).await {
                tracing::warn!(job_id = %job.job_id, error = %e, "job run failed; retried on the next pass");
            }
        }
        Ok(())
    }

    /// Starts a job if it is due, then runs it.
    async fn advance_job(&self, job_id: &str) -> Result<(), HubError> {
        let record = self.job_record(job_id).await?;
        let mut job = parse_job(&record)?;
        let start = parse_time(job.start_time.as_deref().unwrap_or_default())?;
        if matches!(job.status.as_str(), status::QUEUED | status::SCHEDULED) {
            if start > self.now() {
                if job.status != status::SCHEDULED {
                    job.status = status::SCHEDULED.to_owned();
                    self.store
                        .write_job(job_id, to_doc(&job)?, Some(&record.etag))
                        .await?
                        .ok();
                }
                return Ok(());
            }
            job.status = status::RUNNING.to_owned();
            match self
                .store
                .write_job(job_id, to_doc(&job)?, Some(&record.etag))
                .await?
            {
                Ok(_) => {}
                // Another node started it (or it was cancelled): the job as it is now.
                Err(WriteConflict::EtagMismatch) => {
                    job = parse_job(&self.job_record(job_id).await?)?;
                }
                Err(_) => return Ok(()),
            }
        }
        if job.status != status::RUNNING {
            return Ok(());
        }
        self.run_job(&job).await
    }

    /// The ids of the devices the job's condition selects, in id order.
    async fn job_targets(&self, job: &JobResponse) -> Result<Vec<String>, HubError> {
        let query = format!(
            "SELECT * FROM devices WHERE {}",
            job.query_condition.as_deref().unwrap_or_default()
        );
        let mut ids = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let page = self
                .query_twins_unobserved(&query, continuation.as_deref(), Some(MAX_PAGE_SIZE))
                .await?;
            ids.extend(
                page.items
                    .iter()
                    .filter_map(|t| t.get("deviceId").and_then(|d| d.as_str()))
                    .map(str::to_owned),
            );
            match page.continuation {
                Some(next) => continuation = Some(next),
                None => return Ok(ids),
            }
        }
    }

    /// Runs a running job on each of its devices this node claims, then completes it when
    /// every device's record is final (or ends it when its time is up).
    async fn run_job(&self, job: &JobResponse) -> Result<(), HubError> {
        let deadline = deadline(job)?;
        let mut out_of_time = false;
        // The records as the pass starts: a device with none is claimed, one left `pending`
        // by a dead node is taken over, any other is not this pass's to run.
        let existing: HashMap<String, JobDeviceRecord> = self
            .store
            .list_job_devices(Some(&job.job_id))
            .await?
            .into_iter()
            .map(|r| (r.device_id.clone(), r))
            .collect();
        for device_id in self.job_targets(job).await? {
            if self.now() >= deadline {
                out_of_time = true;
                break;
            }
            let current = parse_job(&self.job_record(&job.job_id).await?)?;
            if current.status != status::RUNNING {
                return Ok(());
            }
            let now = azure_time(Some(self.now()));
            let mut record = DeviceJob {
                device_id: device_id.clone(),
                job_id: job.job_id.clone(),
                job_type: job.job_type.clone(),
                status: status::RUNNING.to_owned(),
                start_time_utc: Some(now.clone()),
                end_time_utc: None,
                created_date_time_utc: job.created_time.clone(),
                last_updated_date_time_utc: Some(now),
                outcome: None,
                error: None,
            };
            let Some(claim) = self
                .claim_for_job(&record, existing.get(&device_id))
                .await?
            else {
                continue;
            };
            match self.run_on_device(job, &device_id).await {
                Ok(answer) => {
                    record.status = status::COMPLETED.to_owned();
                    record.outcome = Some(DeviceJobOutcome {
                        device_method_response: answer,
                    });
                }
                Err(e) => {
                    record.status = status::FAILED.to_owned();
                    record.error = Some(DeviceJobError {
                        code: e.name().to_owned(),
                        description: e.to_string(),
                    });
                }
            }
            let end = azure_time(Some(self.now()));
            record.end_time_utc = Some(end.clone());
            record.last_updated_date_time_utc = Some(end);
            self.record_job_result(&record, &claim).await?;
        }
        self.finish_job(&job.job_id, out_of_time || self.now() >= deadline)
            .await
    }

    /// What the job does on one device: a method's answer, or `None` for a twin update.
    async fn run_on_device(
        &self,
        job: &JobResponse,
        device_id: &str,
    ) -> Result<Option<MethodResult>, HubError> {
        match job.job_type.as_str() {
            UPDATE_TWIN => {
                let update = job.update_twin.clone().unwrap_or_default();
                let patch = twin_patch(&update)?;
                self.update_twin(device_id, &patch, Some("*"), false)
                    .await?;
                Ok(None)
            }
            DEVICE_METHOD => {
                let request = job.cloud_to_device_method.clone().unwrap_or_default();
                Ok(Some(self.invoke_method(device_id, request).await?))
            }
            other => Err(HubError::ArgumentInvalid(format!(
                "The job type '{other}' is not valid."
            ))),
        }
    }

    /// Completes a running job once every device's record is final; a job out of time is
    /// ended as failed whatever its devices are doing.
    async fn finish_job(&self, job_id: &str, out_of_time: bool) -> Result<(), HubError> {
        let record = self.job_record(job_id).await?;
        let mut job = parse_job(&record)?;
        if job.status != status::RUNNING {
            return Ok(());
        }
        let devices = self
            .store
            .list_job_devices(Some(job_id))
            .await?
            .iter()
            .map(parse_device_job)
            .collect::<Result<Vec<_>, _>>()?;
        if out_of_time {
            job.status = status::FAILED.to_owned();
            job.failure_reason = Some(format!(
                "The job did not finish within its maxExecutionTimeInSeconds ({}).",
                job.max_execution_time_in_seconds.unwrap_or_default()
            ));
        } else if devices.iter().all(|d| status::is_final(&d.status)) {
            job.status = status::COMPLETED.to_owned();
        } else {
            // Another node is still running some of its devices: it completes the job.
            return Ok(());
        }
        job.end_time = Some(azure_time(Some(self.now())));
        job.device_job_statistics = Some(super::statistics(&devices));
        // A conflict means a cancel or another node's finish came first: theirs stands.
        self.store
            .write_job(job_id, to_doc(&job)?, Some(&record.etag))
            .await?
            .ok();
        Ok(())
    }
}

//! IoT Hub's scheduled jobs (`/jobs/v2/{id}`): a twin update (`scheduleUpdateTwin`) or a
//! direct method (`scheduleDeviceMethod`) run from a start time on every device a query
//! condition selects. Here: what a job request may hold (IoT Hub's `400 ArgumentInvalid`,
//! nothing stored), its creation, reading, query and cancellation, and its statistics, counted
//! from the per-device records; `runner` runs due jobs on every node, `claims` says which node
//! runs a job on a device and hands a dead node's devices over.

mod claims;
pub mod import_export;
pub mod runner;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ironhub_store::{JobDeviceRecord, JobRecord, WriteConflict};
use serde_json::Value;

use crate::model::{DeviceJob, DeviceJobStatistics, JobRequest, JobResponse, azure_time};
use crate::{Hub, HubError};

/// A twin update job.
pub const UPDATE_TWIN: &str = "scheduleUpdateTwin";
/// A direct method job.
pub const DEVICE_METHOD: &str = "scheduleDeviceMethod";
/// The run time a job gets when its request names none (IoT Hub's default, one hour).
pub const DEFAULT_MAX_EXECUTION_SECONDS: i64 = 3600;
/// The longest job id IoT Hub takes.
const MAX_ID_LENGTH: usize = 128;

/// Where import and export jobs (`import_export`) are kept in the `JobStore`, before their
/// id: a scheduled job's id has no `/`.
pub(crate) const IMPORT_EXPORT_PREFIX: &str = "$importExport/";

/// Whether a `JobStore` record is an import or export job (and not a scheduled job).
pub fn is_import_export(record: &JobRecord) -> bool {
    record.job_id.starts_with(IMPORT_EXPORT_PREFIX)
}

/// A job's status.
pub mod status {
    pub const QUEUED: &str = "queued";
    /// A device's record that waits for a node to run it (its node died while running it).
    pub const PENDING: &str = "pending";
    pub const SCHEDULED: &str = "scheduled";
    pub const RUNNING: &str = "running";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
    pub const CANCELLED: &str = "cancelled";

    /// Whether a job (or a device's record) in `status` is over.
    pub fn is_final(status: &str) -> bool {
        matches!(status, COMPLETED | FAILED | CANCELLED)
    }
}

fn invalid(message: impl Into<String>) -> HubError {
    HubError::ArgumentInvalid(message.into())
}

/// A job id as IoT Hub takes it: 1 to 128 printable ASCII characters without `/`, `?`, `#`
/// or spaces (it is a path segment).
pub fn validate_id(id: &str) -> Result<(), HubError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LENGTH
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '?' | '#' | '\\'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "The job id '{id}' is not valid: it must be 1 to {MAX_ID_LENGTH} printable ASCII \
             characters without '/', '?', '#' or spaces."
        )))
    }
}

/// Parses an ISO 8601 time.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, HubError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid(format!("The time '{text}' is not a valid ISO 8601 time.")))
}

/// The twin patch of a `scheduleUpdateTwin` job: its `tags` and `properties.desired` (what
/// `PATCH /twins/{id}` takes), refusing anything else a job cannot change.
pub fn twin_patch(update: &Value) -> Result<Value, HubError> {
    let Value::Object(update) = update else {
        return Err(invalid("updateTwin must be a JSON object."));
    };
    let mut patch = serde_json::Map::new();
    if let Some(tags) = update.get("tags").filter(|t| !t.is_null()) {
        if !tags.is_object() {
            return Err(invalid("updateTwin.tags must be a JSON object."));
        }
        patch.insert("tags".into(), tags.clone());
    }
    if let Some(properties) = update.get("properties").filter(|p| !p.is_null()) {
        let Value::Object(properties) = properties else {
            return Err(invalid("updateTwin.properties must be a JSON object."));
        };
        if properties.get("reported").is_some_and(|r| !r.is_null()) {
            return Err(invalid("A job cannot update reported properties."));
        }
        if let Some(desired) = properties.get("desired").filter(|d| !d.is_null()) {
            if !desired.is_object() {
                return Err(invalid(
                    "updateTwin.properties.desired must be a JSON object.",
                ));
            }
            patch.insert(
                "properties".into(),
                serde_json::json!({ "desired": desired }),
            );
        }
    }
    if let Some(etag) = update.get("etag").and_then(Value::as_str)
        && etag != "*"
    {
        return Err(invalid(format!(
            "A twin update job applies to every device it selects: its etag must be '*', not '{etag}'."
        )));
    }
    if patch.is_empty() {
        return Err(invalid(
            "updateTwin must change tags or desired properties.",
        ));
    }
    Ok(Value::Object(patch))
}

/// Checks a job request and returns the job to store (`status` queued or scheduled).
fn new_job(id: &str, request: &JobRequest, now: DateTime<Utc>) -> Result<JobResponse, HubError> {
    validate_id(id)?;
    if let Some(body_id) = request.job_id.as_deref().filter(|b| !b.is_empty())
        && body_id != id
    {
        return Err(invalid(format!(
            "The job id in the body ('{body_id}') does not match the one in the URL ('{id}')."
        )));
    }
    let job_type = request.job_type.as_deref().unwrap_or_default();
    let mut job = JobResponse {
        job_id: id.to_owned(),
        job_type: job_type.to_owned(),
        ..JobResponse::default()
    };
    match job_type {
        UPDATE_TWIN => {
            let update = request
                .update_twin
                .as_ref()
                .ok_or_else(|| invalid("A scheduleUpdateTwin job needs updateTwin."))?;
            twin_patch(update)?;
            if request.cloud_to_device_method.is_some() {
                return Err(invalid(
                    "A scheduleUpdateTwin job takes no cloudToDeviceMethod.",
                ));
            }
            job.update_twin = Some(update.clone());
        }
        DEVICE_METHOD => {
            let method = request
                .cloud_to_device_method
                .as_ref()
                .ok_or_else(|| invalid("A scheduleDeviceMethod job needs cloudToDeviceMethod."))?;
            crate::methods::check_request(method)?;
            if request.update_twin.is_some() {
                return Err(invalid("A scheduleDeviceMethod job takes no updateTwin."));
            }
            job.cloud_to_device_method = Some(method.clone());
        }
        other => {
            return Err(invalid(format!(
                "The job type '{other}' is not valid: it must be '{UPDATE_TWIN}' or '{DEVICE_METHOD}'."
            )));
        }
    }
    let condition = request
        .query_condition
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid("A job needs a queryCondition."))?;
    ironhub_query::Condition::parse(condition, ironhub_query::Dialect::Twin)
        .map_err(|e| HubError::InvalidQuery(e.to_string()))?;
    job.query_condition = Some(condition.to_owned());
    let max = request
        .max_execution_time_in_seconds
        .unwrap_or(DEFAULT_MAX_EXECUTION_SECONDS);
    if max <= 0 {
        return Err(invalid(format!(
            "maxExecutionTimeInSeconds must be positive, not {max}."
        )));
    }
    job.max_execution_time_in_seconds = Some(max);
    let start = match request.start_time.as_deref() {
        Some(t) => parse_time(t)?,
        None => now,
    };
    job.start_time = Some(azure_time(Some(start)));
    job.created_time = Some(azure_time(Some(now)));
    job.status = if start > now {
        status::SCHEDULED
    } else {
        status::QUEUED
    }
    .to_owned();
    Ok(job)
}

/// A stored job, as the domain reads it.
pub(crate) fn parse_job(record: &JobRecord) -> Result<JobResponse, HubError> {
    serde_json::from_value(record.doc.clone())
        .map_err(|e| HubError::ServerError(format!("a stored job is unreadable: {e}")))
}

pub(crate) fn parse_device_job(record: &JobDeviceRecord) -> Result<DeviceJob, HubError> {
    serde_json::from_value(record.doc.clone())
        .map_err(|e| HubError::ServerError(format!("a stored device job is unreadable: {e}")))
}

pub(crate) fn to_doc<T: serde::Serialize>(value: &T) -> Result<Value, HubError> {
    serde_json::to_value(value).map_err(|e| HubError::ServerError(e.to_string()))
}

/// Counts a job's devices by the status of their records.
pub fn statistics(devices: &[DeviceJob]) -> DeviceJobStatistics {
    let mut stats = DeviceJobStatistics {
        device_count: devices.len() as u64,
        ..DeviceJobStatistics::default()
    };
    for device in devices {
        match device.status.as_str() {
            status::COMPLETED => stats.succeeded_count += 1,
            status::FAILED | status::CANCELLED => stats.failed_count += 1,
            status::RUNNING => stats.running_count += 1,
            _ => stats.pending_count += 1,
        }
    }
    stats
}

/// Where the next page of `/jobs/v2/query` starts (base64 of the offset).
fn page_offset(token: Option<&str>) -> Result<usize, HubError> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| invalid("The continuation token is not valid."))
}

/// One page of `/jobs/v2/query`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    pub jobs: Vec<JobResponse>,
    /// `x-ms-continuation` (and the body's `continuationToken`): absent on the last page.
    pub continuation: Option<String>,
}

impl Hub {
    /// `PUT /jobs/v2/{id}`: checks the request, stores the job (`409` on a taken id) and wakes
    /// this node's runner. Refused input stores nothing.
    pub async fn create_job(
        &self,
        id: &str,
        request: &JobRequest,
    ) -> Result<JobResponse, HubError> {
        let job = new_job(id, request, self.now())?;
        let doc = to_doc(&job)?;
        crate::nul::reject_nul(&doc, "the job")?;
        match self.store.write_job(id, doc, None).await? {
            Ok(_) => {}
            Err(WriteConflict::AlreadyExists) => {
                return Err(HubError::JobAlreadyExists(id.to_owned()));
            }
            Err(_) => return Err(HubError::ServerError("the job was not stored".into())),
        }
        self.kick_jobs();
        self.with_statistics(job).await
    }

    /// `GET /jobs/v2/{id}`, its statistics counted now.
    pub async fn get_job(&self, id: &str) -> Result<JobResponse, HubError> {
        let record = self.job_record(id).await?;
        self.with_statistics(parse_job(&record)?).await
    }

    pub(crate) async fn job_record(&self, id: &str) -> Result<JobRecord, HubError> {
        self.store
            .get_job(id)
            .await?
            .ok_or_else(|| HubError::JobNotFound(id.to_owned()))
    }

    /// `POST /jobs/v2/{id}/cancel`: a job not yet over is cancelled (its runner stops before
    /// its next device); one that is over is answered as it is.
    pub async fn cancel_job(&self, id: &str) -> Result<JobResponse, HubError> {
        loop {
            let record = self.job_record(id).await?;
            let mut job = parse_job(&record)?;
            if status::is_final(&job.status) {
                return self.with_statistics(job).await;
            }
            job.status = status::CANCELLED.to_owned();
            job.end_time = Some(azure_time(Some(self.now())));
            match self
                .store
                .write_job(id, to_doc(&job)?, Some(&record.etag))
                .await?
            {
                Ok(_) => return self.with_statistics(job).await,
                // The runner moved it meanwhile: read it again.
                Err(WriteConflict::EtagMismatch) => continue,
                Err(_) => return Err(HubError::JobNotFound(id.to_owned())),
            }
        }
    }

    /// `GET /jobs/v2/query?jobType=&jobStatus=`: the jobs of that type and status (any when
    /// not given), in id order, a page at a time.
    pub async fn query_jobs(
        &self,
        job_type: Option<&str>,
        job_status: Option<&str>,
        continuation: Option<&str>,
        page_size: Option<usize>,
    ) -> Result<JobPage, HubError> {
        let offset = page_offset(continuation)?;
        let page_size = page_size
            .unwrap_or(crate::query::DEFAULT_PAGE_SIZE)
            .clamp(1, crate::query::MAX_PAGE_SIZE);
        let wanted = |value: &str, filter: Option<&str>| {
            filter
                .filter(|f| !f.is_empty())
                .is_none_or(|f| f.eq_ignore_ascii_case(value))
        };
        let mut matching = Vec::new();
        for record in self.store.list_jobs().await? {
            if is_import_export(&record) {
                continue;
            }
            let job = parse_job(&record)?;
            if wanted(&job.job_type, job_type) && wanted(&job.status, job_status) {
                matching.push(job);
            }
        }
        let total = matching.len();
        let mut jobs = Vec::new();
        for job in matching.into_iter().skip(offset).take(page_size) {
            jobs.push(self.with_statistics(job).await?);
        }
        let next = offset + jobs.len();
        Ok(JobPage {
            jobs,
            continuation: (next < total)
                .then(|| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(next.to_string())),
        })
    }

    /// The job with its `deviceJobStatistics` counted from its devices' records.
    async fn with_statistics(&self, mut job: JobResponse) -> Result<JobResponse, HubError> {
        let devices = self.job_devices(&job.job_id).await?;
        job.device_job_statistics = Some(statistics(&devices));
        Ok(job)
    }

    /// A job's records per device, in device id order.
    pub async fn job_devices(&self, job_id: &str) -> Result<Vec<DeviceJob>, HubError> {
        self.store
            .list_job_devices(Some(job_id))
            .await?
            .iter()
            .map(parse_device_job)
            .collect()
    }
}

impl Hub {
    /// The records of `devices.jobs` after `after` (`deviceId/jobId`: device ids hold no
    /// `/`), in device id then job id order, as query documents keyed so; all of them at once
    /// (IoT Hub keeps a hub's jobs 30 days and runs few at a time).
    pub(crate) async fn device_job_batch(
        &self,
        after: Option<String>,
    ) -> Result<(Vec<(String, Value)>, bool), HubError> {
        let after = after.map(|key| match key.split_once('/') {
            Some((device, job)) => (device.to_owned(), job.to_owned()),
            None => (key, String::new()),
        });
        let mut docs = Vec::new();
        for record in self.store.list_job_devices(None).await? {
            if let Some((device, job)) = &after
                && (record.device_id.as_str(), record.job_id.as_str())
                    <= (device.as_str(), job.as_str())
            {
                continue;
            }
            let key = format!("{}/{}", record.device_id, record.job_id);
            docs.push((key, to_doc(&parse_device_job(&record)?)?));
        }
        Ok((docs, true))
    }
}

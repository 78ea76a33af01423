//! The port of IoT Hub's scheduled jobs (`/jobs/v2/{id}`): each job one JSON document with
//! its etag, written compare-and-swap, and beside it one result per device the job reached
//! (`devices.jobs`). A device's result is first written as a claim, which succeeds once per
//! job and device whichever node asks, so two nodes running one job never run a device twice;
//! a claim a dead node left is handed over compare-and-swap on the document.
//! The domain (`hub::jobs`) owns the documents' shapes and the rules.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Result, WriteConflict};

/// One job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's id, exactly as the service gave it.
    pub job_id: String,
    /// The job as the domain wrote it (IoT Hub's `JobResponse`).
    pub doc: serde_json::Value,
    /// Changes on every write; never reused.
    pub etag: String,
}

/// A job's result on one device (IoT Hub's `DeviceJob`, as `devices.jobs` answers it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDeviceRecord {
    pub job_id: String,
    pub device_id: String,
    pub doc: serde_json::Value,
}

/// The hub's jobs and their results per device.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// One job by its exact id.
    async fn get_job(&self, job_id: &str) -> Result<Option<JobRecord>>;
    /// Every job, in id order.
    async fn list_jobs(&self) -> Result<Vec<JobRecord>>;
    /// Creates a job (`if_match` `None`: [`WriteConflict::AlreadyExists`] when the id is taken)
    /// or replaces it if its etag is `if_match` ([`WriteConflict::NotFound`],
    /// [`WriteConflict::EtagMismatch`]). Returns the record as stored, with a new etag.
    async fn write_job(
        &self,
        job_id: &str,
        doc: serde_json::Value,
        if_match: Option<&str>,
    ) -> Result<std::result::Result<JobRecord, WriteConflict>>;
    /// Writes `record` only if its job has no result for its device yet: `true` when this
    /// call wrote it (the caller now runs the job on the device), `false` when one exists.
    async fn claim_job_device(&self, record: JobDeviceRecord) -> Result<bool>;
    /// Replaces (or writes) a device's result of a job.
    async fn put_job_device(&self, record: JobDeviceRecord) -> Result<()>;
    /// Replaces a device's result of a job only while its stored document still equals
    /// `expected` (compare-and-swap on the whole document): `true` when this call replaced
    /// it, `false` when it changed meanwhile or is absent.
    async fn replace_job_device(
        &self,
        record: JobDeviceRecord,
        expected: &serde_json::Value,
    ) -> Result<bool>;
    /// The results of one job (`Some`) or of every job (`None`), in device id then job id
    /// order.
    async fn list_job_devices(&self, job_id: Option<&str>) -> Result<Vec<JobDeviceRecord>>;
}

//! IoT Hub's import and export jobs (`POST /jobs/create`, `GET /jobs`, `GET|DELETE
//! /jobs/{id}`): an `export` writes the registry to a blob, one JSON line per device and one
//! per module (IoT Hub's `ExportImportDevice`: identity, credentials unless
//! `excludeKeysInExport`, twin tags and properties); an `import` reads such lines and applies
//! each by its `importMode`, writing the rows that fail to `importErrors.log` in the output
//! container. The blobs live in a container named by a SAS URI, or a local directory
//! (`file:///path`, ironhub's extension; see `ironhub_endpoints::blob_container`).
//!
//! A job is one document in the `JobStore` beside the scheduled jobs, under a key no
//! scheduled job can have (`$importExport/{id}`), and runs in the runner's pass (`runner`):
//! a node claims an `enqueued` job compare-and-swap (its node id and a lease), renews the
//! lease as it goes (and finds a cancel there), and ends it `completed` or `failed` with a
//! reason. A job `running` under a lease that ran out, or under this node's id when a pass
//! starts (its run died with the process), is never left running: an export is run again
//! from the start, an import ended `failed`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ironhub_endpoints::blob_container::{self, BlobContainer};
use ironhub_store::{DeviceRecord, JobRecord, ModuleRecord, TwinRecord, WriteConflict};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{IMPORT_EXPORT_PREFIX as KEY_PREFIX, is_import_export, status, to_doc};
use crate::model::{
    Authentication, AuthenticationSpec, CapabilitiesSpec, ExportImportDevice, ImportError,
    ImportExportJob, ImportTwinProperties, ModuleSpec, SymmetricKeySpec, ThumbprintSpec, Twin,
    azure_time,
};
use crate::{Hub, HubError};

/// An export job's `type`.
pub const EXPORT: &str = "export";
/// An import job's `type`.
pub const IMPORT: &str = "import";
/// The blob a job reads or writes when its request names none.
pub const DEFAULT_BLOB_NAME: &str = "devices.txt";
/// The blob of an import's failed rows, in its output container.
pub const IMPORT_ERRORS_BLOB: &str = "importErrors.log";
/// The status of a job not yet started.
pub const ENQUEUED: &str = "enqueued";
/// How long a node's claim on a running job holds without renewal.
pub const LEASE: Duration = Duration::from_secs(300);
/// The largest input blob an import reads.
pub const MAX_IMPORT_BYTES: usize = 256 * 1024 * 1024;
/// Devices (or import rows) between two progress records.
const STEP: usize = 100;

fn invalid(message: impl Into<String>) -> HubError {
    HubError::ArgumentInvalid(message.into())
}

fn key(job_id: &str) -> String {
    format!("{KEY_PREFIX}{job_id}")
}

/// A job as stored: the document clients see, and which node runs it until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    job: ImportExportJob,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_until: Option<DateTime<Utc>>,
}

fn parse(record: &JobRecord) -> Result<Stored, HubError> {
    serde_json::from_value(record.doc.clone()).map_err(|e| {
        HubError::ServerError(format!("a stored import/export job is unreadable: {e}"))
    })
}

/// A GUID-shaped job id, as IoT Hub gives its import and export jobs.
fn new_job_id() -> String {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 16];
    // The system's random source does not fail on the platforms ironhub runs on.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    // A version 4 (random) GUID.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A container URI of a request: present and shaped like a container.
fn container_uri(uri: Option<&str>, field: &str) -> Result<String, HubError> {
    let uri = uri
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| HubError::ArgumentNull(format!("The job needs {field}.")))?;
    blob_container::check_container_uri(uri).map_err(|e| invalid(format!("{field}: {e}")))?;
    Ok(uri.to_owned())
}

/// A blob name of a request, `devices.txt` when absent.
fn blob_name(name: Option<&str>) -> Result<String, HubError> {
    let name = name.filter(|n| !n.is_empty()).unwrap_or(DEFAULT_BLOB_NAME);
    blob_container::check_blob_name(name).map_err(|e| invalid(e.to_string()))?;
    Ok(name.to_owned())
}

/// Checks a job request (IoT Hub's `400`, nothing stored) and returns the job to store.
pub fn new_job(
    request: &ImportExportJob,
    job_id: &str,
    now: DateTime<Utc>,
) -> Result<ImportExportJob, HubError> {
    let job_type = match request.job_type.to_ascii_lowercase().as_str() {
        "export" | "exportdevices" => EXPORT,
        "import" | "importdevices" => IMPORT,
        "" => return Err(HubError::ArgumentNull("The job needs a type.".into())),
        other => {
            return Err(invalid(format!(
                "The job type '{other}' is not valid here: it must be 'export' or 'import'."
            )));
        }
    };
    match request.storage_authentication_type.as_deref() {
        None => {}
        Some(t) if t.eq_ignore_ascii_case("keyBased") => {}
        Some(t) if t.eq_ignore_ascii_case("identityBased") => {
            return Err(invalid(
                "identityBased storage authentication is not supported: ironhub has no managed \
                 identity. Use keyBased with a container SAS URI.",
            ));
        }
        Some(other) => {
            return Err(invalid(format!(
                "The storageAuthenticationType '{other}' is not valid: it must be 'keyBased' or \
                 'identityBased'."
            )));
        }
    }
    if request.include_configurations == Some(true) {
        return Err(invalid(
            "includeConfigurations is not supported: import and export jobs carry devices and \
             modules only.",
        ));
    }
    let mut job = ImportExportJob {
        job_id: job_id.to_owned(),
        start_time_utc: Some(azure_time(Some(now))),
        job_type: job_type.to_owned(),
        status: ENQUEUED.to_owned(),
        progress: 0,
        storage_authentication_type: request.storage_authentication_type.clone(),
        ..ImportExportJob::default()
    };
    job.output_blob_container_uri = Some(container_uri(
        request.output_blob_container_uri.as_deref(),
        "outputBlobContainerUri",
    )?);
    if job_type == EXPORT {
        job.output_blob_name = Some(blob_name(request.output_blob_name.as_deref())?);
        job.exclude_keys_in_export = Some(request.exclude_keys_in_export.unwrap_or(false));
    } else {
        job.input_blob_container_uri = Some(container_uri(
            request.input_blob_container_uri.as_deref(),
            "inputBlobContainerUri",
        )?);
        job.input_blob_name = Some(blob_name(request.input_blob_name.as_deref())?);
    }
    Ok(job)
}

/// A device's credentials in an export line, the keys left out with `exclude_keys`.
fn authentication_line(auth: &Authentication, exclude_keys: bool) -> AuthenticationSpec {
    let keys = &auth.symmetric_key;
    AuthenticationSpec {
        kind: Some(auth.kind.as_str().to_owned()),
        symmetric_key: Some(if exclude_keys {
            SymmetricKeySpec::default()
        } else {
            SymmetricKeySpec {
                primary_key: keys.primary_key.clone(),
                secondary_key: keys.secondary_key.clone(),
            }
        }),
        x509_thumbprint: Some(ThumbprintSpec {
            primary_thumbprint: auth.x509_thumbprint.primary_thumbprint.clone(),
            secondary_thumbprint: auth.x509_thumbprint.secondary_thumbprint.clone(),
        }),
        certificate_authority_name: auth.certificate_authority_name.clone(),
    }
}

/// The twin part of an export line.
fn with_twin(mut line: ExportImportDevice, twin: Twin) -> ExportImportDevice {
    line.twin_e_tag = Some(twin.etag);
    line.tags = Some(twin.tags);
    line.properties = Some(ImportTwinProperties {
        desired: Some(twin.properties.desired),
        reported: Some(twin.properties.reported),
    });
    line
}

/// A device's export line.
pub fn device_line(
    device: &DeviceRecord,
    twin: &TwinRecord,
    exclude_keys: bool,
) -> ExportImportDevice {
    let line = ExportImportDevice {
        id: Some(device.device_id.clone()),
        e_tag: Some(device.etag.clone()),
        status: Some(device.status.as_str().to_owned()),
        status_reason: device.status_reason.clone(),
        authentication: Some(authentication_line(&device.authentication, exclude_keys)),
        capabilities: Some(CapabilitiesSpec {
            iot_edge: Some(device.iot_edge),
        }),
        device_scope: device.device_scope.clone(),
        parent_scopes: Some(device.parent_scopes.clone()),
        ..ExportImportDevice::default()
    };
    with_twin(line, crate::twin::twin_view(device, twin))
}

/// A module's export line.
pub fn module_line(
    device: &DeviceRecord,
    module: &ModuleRecord,
    twin: &TwinRecord,
    exclude_keys: bool,
) -> ExportImportDevice {
    let line = ExportImportDevice {
        id: Some(module.device_id.clone()),
        module_id: Some(module.module_id.clone()),
        e_tag: Some(module.etag.clone()),
        authentication: Some(authentication_line(&module.authentication, exclude_keys)),
        ..ExportImportDevice::default()
    };
    with_twin(
        line,
        crate::module_twin::module_twin_view(device, module, twin),
    )
}

/// The twin patch an import row carries: its tags and desired properties, without the
/// `$metadata` and `$version` an export wrote; `None` when it carries neither.
fn row_twin_patch(row: &ExportImportDevice) -> Option<Value> {
    let mut patch = serde_json::Map::new();
    if let Some(tags) = &row.tags {
        patch.insert("tags".into(), Value::Object(tags.clone()));
    }
    if let Some(desired) = row.properties.as_ref().and_then(|p| p.desired.as_ref()) {
        let desired: serde_json::Map<String, Value> = desired
            .iter()
            .filter(|(k, _)| !k.starts_with('$'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        patch.insert(
            "properties".into(),
            serde_json::json!({ "desired": desired }),
        );
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

fn mode_is(mode: &str, name: &str) -> bool {
    mode.eq_ignore_ascii_case(name)
}

/// A failed row as `importErrors.log` records it.
fn row_error(row: &ExportImportDevice, e: &HubError) -> ImportError {
    ImportError {
        device_id: row.id.clone().unwrap_or_default(),
        module_id: row.module_id.clone(),
        error_code: e.name().to_owned(),
        error_status: e.to_string(),
    }
}

impl Hub {
    /// `POST /jobs/create`: checks the request, stores the job `enqueued` with a new id and
    /// wakes this node's runner. Refused input stores nothing.
    pub async fn create_import_export_job(
        &self,
        request: &ImportExportJob,
    ) -> Result<ImportExportJob, HubError> {
        let job = new_job(request, &new_job_id(), self.now())?;
        let stored = Stored {
            job: job.clone(),
            node: None,
            lease_until: None,
        };
        self.store
            .write_job(&key(&job.job_id), to_doc(&stored)?, None)
            .await?
            .map_err(|_| HubError::ServerError("the job was not stored".into()))?;
        self.kick_jobs();
        Ok(job)
    }

    async fn import_export_record(&self, job_id: &str) -> Result<(JobRecord, Stored), HubError> {
        let record = self
            .store
            .get_job(&key(job_id))
            .await?
            .ok_or_else(|| HubError::JobNotFound(job_id.to_owned()))?;
        let stored = parse(&record)?;
        Ok((record, stored))
    }

    /// `GET /jobs/{id}`.
    pub async fn get_import_export_job(&self, job_id: &str) -> Result<ImportExportJob, HubError> {
        Ok(self.import_export_record(job_id).await?.1.job)
    }

    /// `GET /jobs`: every import and export job, oldest first.
    pub async fn list_import_export_jobs(&self) -> Result<Vec<ImportExportJob>, HubError> {
        let mut jobs = Vec::new();
        for record in self.store.list_jobs().await? {
            if is_import_export(&record) {
                jobs.push(parse(&record)?.job);
            }
        }
        jobs.sort_by(|a, b| a.start_time_utc.cmp(&b.start_time_utc));
        Ok(jobs)
    }

    /// `DELETE /jobs/{id}`: a job not yet over is cancelled (its runner stops at its next
    /// progress record, writing nothing more); one that is over stays as it is.
    pub async fn cancel_import_export_job(
        &self,
        job_id: &str,
    ) -> Result<ImportExportJob, HubError> {
        loop {
            let (record, mut stored) = self.import_export_record(job_id).await?;
            if status::is_final(&stored.job.status) {
                return Ok(stored.job);
            }
            stored.job.status = status::CANCELLED.to_owned();
            stored.job.end_time_utc = Some(azure_time(Some(self.now())));
            stored.node = None;
            stored.lease_until = None;
            match self
                .store
                .write_job(&record.job_id, to_doc(&stored)?, Some(&record.etag))
                .await?
            {
                Ok(_) => return Ok(stored.job),
                Err(WriteConflict::EtagMismatch) => continue,
                Err(_) => return Err(HubError::JobNotFound(job_id.to_owned())),
            }
        }
    }

    /// The runner's step for one import or export job: an `enqueued` job is claimed and run
    /// to its end; a `running` one whose node died is run again (an export) or ended `failed`
    /// (an import).
    pub(crate) async fn advance_import_export(&self, record: JobRecord) -> Result<(), HubError> {
        let mut stored = parse(&record)?;
        match stored.job.status.as_str() {
            ENQUEUED => {}
            status::RUNNING => {
                let mine = stored.node.as_deref() == Some(self.node_id());
                let expired = stored.lease_until.is_none_or(|t| t <= self.now());
                if !(mine || expired) {
                    return Ok(());
                }
                // Its node stopped: an export is written again from the start (its blob
                // appears only when complete); an import, whose rows may not apply twice,
                // ends failed.
                if stored.job.job_type != EXPORT {
                    let run = JobRun {
                        hub: self,
                        key: record.job_id.clone(),
                        etag: record.etag.clone(),
                        stored,
                    };
                    return run
                        .end(Err(
                            "The job was interrupted: the node running it stopped.".into()
                        ))
                        .await;
                }
            }
            _ => return Ok(()),
        }
        stored.job.status = status::RUNNING.to_owned();
        stored.node = Some(self.node_id().to_owned());
        stored.lease_until = Some(self.now() + lease());
        let etag = match self
            .store
            .write_job(&record.job_id, to_doc(&stored)?, Some(&record.etag))
            .await?
        {
            Ok(written) => written.etag,
            // Another node took it, or it was cancelled.
            Err(_) => return Ok(()),
        };
        tracing::info!(job_id = %stored.job.job_id, job_type = %stored.job.job_type, "import/export job started");
        let mut run = JobRun {
            hub: self,
            key: record.job_id,
            etag,
            stored,
        };
        let outcome = if run.stored.job.job_type == EXPORT {
            run.export().await
        } else {
            run.import().await
        };
        run.end(outcome).await
    }

    /// Applies one import row by its `importMode` (`createOrUpdate` when absent): the
    /// identity as `POST /devices` applies an entry (or as the module API does), then its
    /// tags and desired properties, if it has any, as a twin patch.
    pub(crate) async fn import_row(&self, row: &ExportImportDevice) -> Result<(), ImportError> {
        let fail = |e: HubError| row_error(row, &e);
        let id = row
            .id
            .as_deref()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| fail(HubError::ArgumentNull("The row has no id.".into())))?;
        // Checked whole before anything is written: a row is applied all or not at all.
        crate::nul::reject_nul_in(row, "the import row").map_err(fail)?;
        let mode = row.import_mode.as_deref().unwrap_or("createOrUpdate");
        let twin_only = mode_is(mode, "updateTwin") || mode_is(mode, "updateTwinIfMatchETag");
        let module_id = row.module_id.as_deref().filter(|m| !m.is_empty());
        if !twin_only {
            match module_id {
                None => {
                    let result = self
                        .apply_bulk(std::slice::from_ref(row))
                        .await
                        .map_err(fail)?;
                    if let Some(e) = result.errors.into_iter().next() {
                        return Err(ImportError {
                            device_id: e.device_id,
                            module_id: None,
                            error_code: e.error_code,
                            error_status: e.error_status,
                        });
                    }
                }
                Some(module_id) => self
                    .import_module(id, module_id, mode, row)
                    .await
                    .map_err(fail)?,
            }
        }
        if mode_is(mode, "delete") || mode_is(mode, "deleteIfMatchETag") {
            return Ok(());
        }
        let Some(patch) = row_twin_patch(row) else {
            if twin_only {
                return Err(fail(HubError::ArgumentNull(format!(
                    "The importMode '{mode}' needs tags or properties.desired."
                ))));
            }
            return Ok(());
        };
        let if_match = if mode_is(mode, "updateTwinIfMatchETag") {
            row.twin_e_tag.clone().ok_or_else(|| {
                fail(HubError::ArgumentNull(
                    "The importMode 'updateTwinIfMatchETag' needs a twinETag.".into(),
                ))
            })?
        } else {
            "*".to_owned()
        };
        match module_id {
            None => self.update_twin(id, &patch, Some(&if_match), false).await,
            Some(m) => {
                self.update_module_twin(id, m, &patch, Some(&if_match), false)
                    .await
            }
        }
        .map(|_| ())
        .map_err(fail)
    }

    /// A module row's identity write.
    async fn import_module(
        &self,
        device_id: &str,
        module_id: &str,
        mode: &str,
        row: &ExportImportDevice,
    ) -> Result<(), HubError> {
        let spec = ModuleSpec {
            module_id: Some(module_id.to_owned()),
            device_id: Some(device_id.to_owned()),
            managed_by: None,
            authentication: row.authentication.clone(),
        };
        let etag = || {
            row.e_tag.clone().ok_or_else(|| {
                HubError::ArgumentNull(format!(
                    "The module '{module_id}' needs an eTag for this importMode."
                ))
            })
        };
        if mode_is(mode, "create") {
            self.put_module(device_id, module_id, &spec, None).await?;
        } else if mode_is(mode, "createOrUpdate") {
            let exists = self.store.get_module(device_id, module_id).await?.is_some();
            let if_match = exists.then_some("*");
            self.put_module(device_id, module_id, &spec, if_match)
                .await?;
        } else if mode_is(mode, "update") {
            self.put_module(device_id, module_id, &spec, Some("*"))
                .await?;
        } else if mode_is(mode, "updateIfMatchETag") {
            self.put_module(device_id, module_id, &spec, Some(&etag()?))
                .await?;
        } else if mode_is(mode, "delete") {
            self.delete_module(device_id, module_id, None).await?;
        } else if mode_is(mode, "deleteIfMatchETag") {
            self.delete_module(device_id, module_id, Some(&etag()?))
                .await?;
        } else {
            return Err(invalid(format!(
                "The importMode '{mode}' is not supported; use create, createOrUpdate, update, \
                 updateIfMatchETag, delete, deleteIfMatchETag, updateTwin or \
                 updateTwinIfMatchETag."
            )));
        }
        Ok(())
    }
}

fn lease() -> TimeDelta {
    TimeDelta::from_std(LEASE).unwrap_or_default()
}

/// A job this node runs: its store key, the etag of its last write, the document.
struct JobRun<'a> {
    hub: &'a Hub,
    key: String,
    etag: String,
    stored: Stored,
}

/// How a run ended: `Ok(true)` done, `Ok(false)` cancelled (the cancel wrote the job), `Err`
/// the failure reason.
type Outcome = Result<bool, String>;

impl JobRun<'_> {
    /// Records `progress` and renews the lease; `false` when the job was cancelled (or
    /// taken) meanwhile, and this run must stop.
    async fn checkpoint(&mut self, progress: u8) -> Result<bool, String> {
        self.stored.job.progress = progress.min(99);
        self.stored.lease_until = Some(self.hub.now() + lease());
        let doc = to_doc(&self.stored).map_err(|e| e.to_string())?;
        match self
            .hub
            .store
            .write_job(&self.key, doc, Some(&self.etag))
            .await
            .map_err(|e| e.to_string())?
        {
            Ok(written) => {
                self.etag = written.etag;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// Writes the job's end: `completed`, or `failed` with the reason. A cancel that came
    /// first stands.
    async fn end(mut self, outcome: Outcome) -> Result<(), HubError> {
        let job = &mut self.stored.job;
        match outcome {
            Ok(false) => return Ok(()),
            Ok(true) => {
                job.status = status::COMPLETED.to_owned();
                job.progress = 100;
            }
            Err(reason) => {
                tracing::warn!(job_id = %job.job_id, reason = %reason, "import/export job failed");
                job.status = status::FAILED.to_owned();
                job.failure_reason = Some(reason);
            }
        }
        job.end_time_utc = Some(azure_time(Some(self.hub.now())));
        self.stored.node = None;
        self.stored.lease_until = None;
        self.hub
            .store
            .write_job(&self.key, to_doc(&self.stored)?, Some(&self.etag))
            .await?
            .ok();
        Ok(())
    }

    /// Writes every device, then its modules, to the output blob, a page of devices at a
    /// time.
    async fn export(&mut self) -> Outcome {
        let job = self.stored.job.clone();
        let store = &self.hub.store;
        let container =
            BlobContainer::open(job.output_blob_container_uri.as_deref().unwrap_or_default())
                .map_err(|e| e.to_string())?;
        let name = job.output_blob_name.as_deref().unwrap_or(DEFAULT_BLOB_NAME);
        let exclude_keys = job.exclude_keys_in_export.unwrap_or(false);
        let mut writer = container.writer(name).await.map_err(|e| e.to_string())?;
        let total = store
            .device_counts()
            .await
            .map_err(|e| e.to_string())?
            .total
            .max(1);
        let mut after: Option<String> = None;
        let mut done = 0u64;
        loop {
            let page = store
                .list_devices(after.as_deref(), STEP)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = page.last() else { break };
            after = Some(last.device_id.clone());
            let mut text = Vec::new();
            for device in &page {
                let id = &device.device_id;
                let twin = store
                    .get_twin(id)
                    .await
                    .map_err(|e| e.to_string())?
                    .unwrap_or_else(|| crate::twin::empty_twin(id));
                push_line(&mut text, &device_line(device, &twin, exclude_keys))?;
                for module in store.list_modules(id).await.map_err(|e| e.to_string())? {
                    let twin = store
                        .get_module_twin(id, &module.module_id)
                        .await
                        .map_err(|e| e.to_string())?
                        .unwrap_or_else(|| crate::twin::empty_twin(id));
                    push_line(
                        &mut text,
                        &module_line(device, &module, &twin, exclude_keys),
                    )?;
                }
            }
            writer.write(&text).await.map_err(|e| e.to_string())?;
            done += page.len() as u64;
            let progress = u8::try_from(done * 100 / total).unwrap_or(99);
            if !self.checkpoint(progress).await? {
                writer.abandon().await;
                return Ok(false);
            }
        }
        writer.finish().await.map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Applies every line of the input blob; the rows that fail go to `importErrors.log`.
    async fn import(&mut self) -> Outcome {
        let job = self.stored.job.clone();
        let input =
            BlobContainer::open(job.input_blob_container_uri.as_deref().unwrap_or_default())
                .map_err(|e| e.to_string())?;
        let output =
            BlobContainer::open(job.output_blob_container_uri.as_deref().unwrap_or_default())
                .map_err(|e| e.to_string())?;
        let name = job.input_blob_name.as_deref().unwrap_or(DEFAULT_BLOB_NAME);
        let content = input
            .read(name, MAX_IMPORT_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&content);
        let rows: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .collect();
        let total = rows.len().max(1);
        let mut errors = Vec::new();
        for (i, (line_no, line)) in rows.iter().enumerate() {
            match serde_json::from_str::<ExportImportDevice>(line) {
                Ok(row) => {
                    if let Err(e) = self.hub.import_row(&row).await {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(ImportError {
                    device_id: String::new(),
                    module_id: None,
                    error_code: HubError::ArgumentInvalid(String::new()).name().to_owned(),
                    error_status: format!(
                        "Line {} of {name} is not a valid device: {e}",
                        line_no + 1
                    ),
                }),
            }
            if (i + 1) % STEP == 0 {
                let progress = u8::try_from((i + 1) * 100 / total).unwrap_or(99);
                if !self.checkpoint(progress).await? {
                    return Ok(false);
                }
            }
        }
        if !errors.is_empty() {
            let mut log = Vec::new();
            for e in &errors {
                push_line(&mut log, e)?;
            }
            output
                .write(IMPORT_ERRORS_BLOB, &log)
                .await
                .map_err(|e| e.to_string())?;
            self.stored.job.status_message = Some(format!(
                "{} of {} rows failed: see {IMPORT_ERRORS_BLOB} in the output container.",
                errors.len(),
                rows.len()
            ));
        }
        Ok(true)
    }
}

/// Appends `value` as one JSON line.
fn push_line<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), String> {
    serde_json::to_writer(&mut *out, value).map_err(|e| e.to_string())?;
    out.push(b'\n');
    Ok(())
}

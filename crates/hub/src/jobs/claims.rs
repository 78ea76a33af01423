//! Which node runs a job on a device, and what happens when that node dies. A device's record
//! is claimed with the id of the node that runs it, stored beside IoT Hub's fields (never
//! served: reading a record as a `DeviceJob` drops it). A node that dies between the claim
//! and the result leaves the record `running`; when that node starts again, or once its
//! heartbeat runs out ([`crate::node`]), its `running` records go back to `pending`
//! (compare-and-swap, so once), and the next pass of any node claims them again,
//! compare-and-swap as well. A node writes a result only over its own claim: if the record
//! was handed over meanwhile (the node was cut off past its lease), the result of the node
//! that took it stands.
//!
//! The guarantee: a job's twin update or method call reaches a device once, except the one a
//! node was running when it died — that one runs again on another node (it may or may not
//! have reached the device before: at least once). A device whose record is final is never
//! run again.

use ironhub_store::JobDeviceRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{status, to_doc};
use crate::model::{DeviceJob, azure_time};
use crate::{Hub, HubError};

/// A device's record as stored: IoT Hub's `DeviceJob` and the node running it.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    job: DeviceJob,
    /// The node running the job on the device (`running` only); absent in records written
    /// before nodes were recorded, which any node's restart releases.
    #[serde(
        rename = "ironhubNode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    node: Option<String>,
}

fn parse(record: &JobDeviceRecord) -> Result<Stored, HubError> {
    serde_json::from_value(record.doc.clone())
        .map_err(|e| HubError::ServerError(format!("a stored device job is unreadable: {e}")))
}

fn stored(job: &DeviceJob, node: Option<&str>) -> Result<JobDeviceRecord, HubError> {
    Ok(JobDeviceRecord {
        job_id: job.job_id.clone(),
        device_id: job.device_id.clone(),
        doc: to_doc(&Stored {
            job: job.clone(),
            node: node.map(str::to_owned),
        })?,
    })
}

impl Hub {
    /// Claims `running` (a device's record in state `running`) for this node: a device the
    /// job has no record of yet, or one left `pending` by a node that died. `existing` is the
    /// device's record as read at the start of the pass. Returns the claim, which the result
    /// replaces ([`Hub::record_job_result`]), or `None` when the device is not this node's
    /// to run (another node claimed it, or it is over).
    pub(super) async fn claim_for_job(
        &self,
        running: &DeviceJob,
        existing: Option<&JobDeviceRecord>,
    ) -> Result<Option<Value>, HubError> {
        let claim = stored(running, Some(self.node_id()))?;
        let doc = claim.doc.clone();
        let won = match existing {
            None => self.store.claim_job_device(claim).await?,
            Some(before) if parse(before)?.job.status == status::PENDING => {
                self.store.replace_job_device(claim, &before.doc).await?
            }
            Some(_) => false,
        };
        Ok(won.then_some(doc))
    }

    /// Writes a device's final record over this node's `claim`; if the claim was handed
    /// over meanwhile, the other node's record stands.
    pub(super) async fn record_job_result(
        &self,
        result: &DeviceJob,
        claim: &Value,
    ) -> Result<(), HubError> {
        if !self
            .store
            .replace_job_device(stored(result, None)?, claim)
            .await?
        {
            tracing::warn!(
                job_id = %result.job_id,
                device_id = %result.device_id,
                "a device's job record was handed to another node meanwhile; its result stands"
            );
        }
        Ok(())
    }

    /// Puts back to `pending` the devices `node` was running a job on (or no recorded node
    /// was), for any node to run again. Returns how many.
    pub(crate) async fn release_job_devices(&self, node: &str) -> Result<u64, HubError> {
        let mut released = 0;
        for record in self.store.list_job_devices(None).await? {
            let Stored {
                mut job,
                node: holder,
            } = parse(&record)?;
            if job.status != status::RUNNING || holder.as_deref().is_some_and(|h| h != node) {
                continue;
            }
            job.status = status::PENDING.to_owned();
            job.start_time_utc = None;
            job.last_updated_date_time_utc = Some(azure_time(Some(self.now())));
            if self
                .store
                .replace_job_device(stored(&job, None)?, &record.doc)
                .await?
            {
                released += 1;
            }
        }
        Ok(released)
    }
}

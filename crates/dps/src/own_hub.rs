//! A device assigned to the server's own hub, when that hub keeps its devices in the DPS's
//! store: the hub device and the registration record are written in one store transaction
//! (one durable commit instead of two, and never a device without its record or a record
//! without its device, not even between two writes). A hub reached over HTTPS, or one with a
//! store of its own, takes the two-step path of `register.rs` (the device, then the record).

use ironhub_hub::{Hub, HubError};
use ironhub_store::{DpsCollection, JointConflict};
use ironhub_wire::hub::DeviceSpec;

use crate::attestation::Attested;
use crate::linked::{HubCallError, HubRegistry};
use crate::model::DeviceRegistrationState;
use crate::register::{hub_failed, next_state, update_of};
use crate::registrations::{RegistrationRecord, load, registration_conflict, registration_write};
use crate::{Dps, DpsError};

/// How many times the pair is written again when the device or the record changed meanwhile.
const ATTEMPTS: usize = 4;

/// What the joint write is about: the device on the hub and the record that follows it.
pub(crate) struct Assignment<'a> {
    pub(crate) hub_name: &'a str,
    pub(crate) device_id: &'a str,
    pub(crate) identity: &'a DeviceSpec,
    /// The device had no hub before: it is created without reading it first.
    pub(crate) fresh: bool,
    /// The record as it should read (`assigned`, its hub and device).
    pub(crate) state: DeviceRegistrationState,
}

impl Dps {
    /// The in-process hub behind `registry`, when it keeps its devices in this DPS's store.
    pub(crate) fn joint_hub<'r>(&self, registry: &'r dyn HubRegistry) -> Option<&'r Hub> {
        registry
            .in_process()
            .filter(|hub| hub.shares_store(&self.store))
    }

    /// Creates the device on `hub` (or updates its credentials and capabilities, keeping its
    /// status, as `upsert_device` does) and writes its registration record over `previous`,
    /// in one transaction. Returns the record as written.
    pub(crate) async fn assign_jointly(
        &self,
        hub: &Hub,
        registry: &dyn HubRegistry,
        attested: &Attested,
        previous: &RegistrationRecord,
        assignment: Assignment<'_>,
    ) -> Result<DeviceRegistrationState, DpsError> {
        let Assignment {
            hub_name,
            device_id,
            identity,
            fresh,
            state,
        } = assignment;
        let failed = |e: HubError| hub_failed(hub_name, HubCallError::from(e));
        let mut previous = Some(previous.clone());
        let mut read_device = !fresh;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            // The device's half: created, or updated over the one read (its status stays).
            let (body, if_match) = if read_device {
                match registry
                    .get_device(device_id)
                    .await
                    .map_err(|e| hub_failed(hub_name, e))?
                {
                    None => (identity.clone(), None),
                    Some(existing) => {
                        let (body, etag) = update_of(identity, &existing);
                        (body, Some(etag))
                    }
                }
            } else {
                (identity.clone(), None)
            };
            let prepared = match hub
                .prepare_put_device(device_id, &body, if_match.as_deref())
                .await
            {
                Ok(p) => p,
                Err(
                    HubError::DeviceAlreadyExists(_)
                    | HubError::DeviceNotFound(_)
                    | HubError::PreconditionFailed(_),
                ) => {
                    read_device = true;
                    continue;
                }
                Err(e) => return Err(failed(e)),
            };
            // The record's half, over the one this registration knows.
            let p = previous.as_ref();
            let record_tag = p.and_then(|p| p.state.etag.clone());
            let write = registration_write(
                next_state(p, &state),
                attested.enrollment.group_id(),
                record_tag.as_deref(),
            )?;
            match self
                .store
                .dps_write_with_device(
                    prepared.write().clone(),
                    DpsCollection::Registrations,
                    write,
                )
                .await?
            {
                Ok((device, record)) => {
                    hub.finish_put_device(prepared, Ok(device))
                        .await
                        .map_err(failed)?;
                    let record = record
                        .ok_or_else(|| DpsError::ServerError("the store wrote nothing".into()))?;
                    return load(&record);
                }
                Err(JointConflict::Device(_)) => read_device = true,
                Err(JointConflict::Dps(conflict)) => {
                    last = Some((conflict, record_tag));
                    previous = self.find_registration(&state.registration_id).await?;
                }
            }
        }
        Err(match last {
            Some((conflict, tag)) => {
                registration_conflict(Some(conflict), state.registration_id, tag.as_deref())
            }
            None => hub_failed(
                hub_name,
                HubCallError::Status {
                    status: 409,
                    message: "the device kept changing while it was provisioned".into(),
                },
            ),
        })
    }
}

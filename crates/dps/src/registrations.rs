//! Registration records ("device registration states"): created and replaced by device
//! registrations, read, deleted and queried per enrollment group by the service API (created
//! automatically, can be deleted, cannot be updated by a client: Azure docs, IoT Hub Device
//! Provisioning Service (DPS) terminology, 'Registration').

use ironhub_store::{DpsCollection, DpsRecord, DpsWrite, WriteConflict};

use crate::model::DeviceRegistrationState;
use crate::query::{QueryPage, continuation_after, page_size, resume_after};
use crate::rules::{normalize_if_match, validate_group_id, validate_registration_id};
use crate::{Dps, DpsError, from_record, to_record};

/// A stored registration record's state, with the id's stored case and the etag.
pub(crate) fn load(record: &DpsRecord) -> Result<DeviceRegistrationState, DpsError> {
    let mut state: DeviceRegistrationState = from_record(record)?;
    // A record keeps the case of the id it was created with.
    state.registration_id.clone_from(&record.id);
    state.etag = Some(record.etag.clone());
    Ok(state)
}

/// A registration record as stored: the state, and the enrollment group it came through.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationRecord {
    pub state: DeviceRegistrationState,
    /// `None` for a device of an individual enrollment.
    pub enrollment_group_id: Option<String>,
}

impl RegistrationRecord {
    /// The record as stored.
    pub(crate) fn from_stored(record: &DpsRecord) -> Result<Self, DpsError> {
        Ok(RegistrationRecord {
            state: load(record)?,
            enrollment_group_id: record.group_id.clone(),
        })
    }
}

impl Dps {
    /// `GET /registrations/{id}`.
    pub async fn get_registration(&self, id: &str) -> Result<DeviceRegistrationState, DpsError> {
        Ok(self.load_registration(id).await?.state)
    }

    /// A registration record with the group it belongs to.
    pub async fn load_registration(&self, id: &str) -> Result<RegistrationRecord, DpsError> {
        let record = self
            .store
            .dps_get(DpsCollection::Registrations, id)
            .await?
            .ok_or_else(|| DpsError::RegistrationNotFound(id.to_owned()))?;
        RegistrationRecord::from_stored(&record)
    }

    /// A device's registration record, if it has one.
    pub async fn find_registration(
        &self,
        id: &str,
    ) -> Result<Option<RegistrationRecord>, DpsError> {
        match self.load_registration(id).await {
            Ok(r) => Ok(Some(r)),
            Err(DpsError::RegistrationNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The registration of a device of an individual enrollment, if it has one.
    pub(crate) async fn registration_of_individual(
        &self,
        registration_id: &str,
    ) -> Result<Option<DeviceRegistrationState>, DpsError> {
        match self
            .store
            .dps_get(DpsCollection::Registrations, registration_id)
            .await?
        {
            Some(r) if r.group_id.is_none() => Ok(Some(load(&r)?)),
            _ => Ok(None),
        }
    }

    /// `DELETE /registrations/{id}`, with an optional `If-Match`. The device stays in its hub
    /// (deprovisioning it there is the hub's business: Azure docs, How to deprovision devices
    /// that were previously auto-provisioned).
    pub async fn delete_registration(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), DpsError> {
        let tag = if_match.map(normalize_if_match).filter(|t| !t.is_empty());
        let write = DpsWrite::Delete {
            id: id.to_owned(),
            if_match: tag.clone(),
        };
        match self
            .store
            .dps_write(DpsCollection::Registrations, vec![write])
            .await?
        {
            Ok(_) => Ok(()),
            Err(failed) => Err(match failed.first().map(|(_, c)| *c) {
                Some(WriteConflict::EtagMismatch) => {
                    DpsError::PreconditionFailed(tag.unwrap_or_default())
                }
                _ => DpsError::RegistrationNotFound(id.to_owned()),
            }),
        }
    }

    /// `POST /registrations/{groupId}/query`: one page of the group's registrations, ordered by
    /// registration id.
    pub async fn query_registrations(
        &self,
        group_id: &str,
        max_items: Option<usize>,
        continuation: Option<&str>,
    ) -> Result<QueryPage<DeviceRegistrationState>, DpsError> {
        validate_group_id(group_id)?;
        let size = page_size(max_items);
        let after = resume_after(continuation)?;
        let mut records = self
            .store
            .dps_list(
                DpsCollection::Registrations,
                after.as_deref(),
                size + 1,
                Some(group_id),
            )
            .await?;
        let more = records.len() > size;
        records.truncate(size);
        let continuation = more
            .then(|| records.last().map(|r| continuation_after(&r.id)))
            .flatten();
        Ok(QueryPage {
            items: records.iter().map(load).collect::<Result<_, _>>()?,
            continuation,
        })
    }

    /// How many registrations a group has (all of them without a group), e.g. for a quota or
    /// the per-group counts of Azure docs, Best practices for large-scale IoT device
    /// deployments, 'Monitoring devices'.
    pub async fn registration_count(&self, group_id: Option<&str>) -> Result<u64, DpsError> {
        Ok(self
            .store
            .dps_count(DpsCollection::Registrations, group_id)
            .await?)
    }

    /// Writes a device's registration record (the registration flow's, never a client's):
    /// creates it when `if_match` is `None`, else replaces the record whose etag is that one.
    /// A registration keeps its `createdDateTimeUtc`; the store assigns the etag.
    pub async fn write_registration(
        &self,
        state: DeviceRegistrationState,
        enrollment_group_id: Option<&str>,
        if_match: Option<&str>,
    ) -> Result<DeviceRegistrationState, DpsError> {
        let id = state.registration_id.clone();
        let write = registration_write(state, enrollment_group_id, if_match)?;
        match self
            .store
            .dps_write(DpsCollection::Registrations, vec![write])
            .await?
        {
            Ok(mut done) => match done.pop().flatten() {
                Some(r) => load(&r),
                None => Err(DpsError::ServerError("the store wrote nothing".into())),
            },
            Err(failed) => Err(registration_conflict(
                failed.first().map(|(_, c)| *c),
                id,
                if_match,
            )),
        }
    }
}

/// The write of a device's registration record (see [`Dps::write_registration`]).
pub(crate) fn registration_write(
    state: DeviceRegistrationState,
    enrollment_group_id: Option<&str>,
    if_match: Option<&str>,
) -> Result<DpsWrite, DpsError> {
    validate_registration_id(&state.registration_id)?;
    let id = state.registration_id.clone();
    let stored = DeviceRegistrationState {
        etag: None,
        ..state
    };
    let record = to_record(&id, enrollment_group_id, &stored)?;
    Ok(match if_match {
        None => DpsWrite::Create(record),
        Some(tag) => DpsWrite::Replace {
            record,
            if_match: Some(normalize_if_match(tag)),
        },
    })
}

/// The error of a registration record's write the store refused.
pub(crate) fn registration_conflict(
    conflict: Option<WriteConflict>,
    id: String,
    if_match: Option<&str>,
) -> DpsError {
    match conflict {
        Some(WriteConflict::AlreadyExists) => DpsError::Conflict(format!(
            "The registration '{id}' changed while it was written; try again."
        )),
        Some(WriteConflict::NotFound) => DpsError::RegistrationNotFound(id),
        _ => DpsError::PreconditionFailed(if_match.unwrap_or_default().to_owned()),
    }
}

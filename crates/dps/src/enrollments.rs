//! Individual enrollments and enrollment groups: create or update with etags, get, delete,
//! query, bulk operations and the attestation mechanism, with DPS's rules
//! (`docs/protocol/dps-json.md` §3). Both kinds share the code through [`Enrollment`].

use std::collections::HashSet;

use chrono::Utc;
use ironhub_store::{DpsCollection, DpsRecord, DpsWrite, WriteConflict};

use crate::model::{
    AllocationPolicy, AttestationMechanism, BulkEnrollmentOperationError,
    BulkEnrollmentOperationResult, BulkMode, EnrollmentGroup, EnrollmentRecord, EnrollmentSettings,
    IndividualEnrollment, LinkedHub, QuerySpecification,
};
use crate::query::{QueryPage, check_query, continuation_after, page_size, resume_after};
use crate::rules::{self, Owner, normalize_if_match, same_id};
use crate::{Dps, DpsError, from_record, to_record};

/// Most items in one bulk operation (DPS REST API: "Bulk device enrollment operation with
/// maximum of 10 enrollments").
pub const MAX_BULK_ITEMS: usize = 10;

/// What individual enrollments and enrollment groups have in common for the service API.
pub trait Enrollment: EnrollmentRecord {
    /// Where the store keeps them.
    const COLLECTION: DpsCollection;
    /// How messages name one ("enrollment", "enrollment group").
    const KIND: &'static str;

    /// Checks an id of this kind.
    fn validate_id(id: &str) -> Result<(), DpsError>;
    /// The 404 for a missing one.
    fn not_found(id: &str) -> DpsError;
    /// An entry of a bulk result naming this one.
    fn bulk_error(id: &str, e: &DpsError) -> BulkEnrollmentOperationError;
    /// Rules of this kind alone, applied to a write (`previous` on an update).
    fn prepare(&mut self, previous: Option<&Self>) -> Result<(), DpsError>;
    /// Who owns the attestation, for its rules.
    fn owner(&self) -> Owner<'_>;

    /// As a read answers it: no keys, no certificate PEMs (certificate `info` stays).
    fn for_read(&self) -> Self {
        let mut e = self.clone();
        let s = e.settings_mut();
        s.attestation = s.attestation.without_secrets();
        e
    }

    /// As a write answers it: keys (generated ones too) but no certificate PEMs.
    fn for_write_answer(&self) -> Self {
        let mut e = self.clone();
        let s = e.settings_mut();
        s.attestation = s.attestation.without_certificates();
        e
    }
}

impl Enrollment for IndividualEnrollment {
    const COLLECTION: DpsCollection = DpsCollection::Enrollments;
    const KIND: &'static str = "enrollment";

    fn validate_id(id: &str) -> Result<(), DpsError> {
        rules::validate_registration_id(id)
    }
    fn not_found(id: &str) -> DpsError {
        DpsError::EnrollmentNotFound(id.to_owned())
    }
    fn bulk_error(id: &str, e: &DpsError) -> BulkEnrollmentOperationError {
        BulkEnrollmentOperationError {
            registration_id: Some(id.to_owned()),
            enrollment_group_id: None,
            error_code: e.code(),
            error_status: e.to_string(),
        }
    }
    fn prepare(&mut self, _previous: Option<&Self>) -> Result<(), DpsError> {
        // Read-only: the registration is the device's, not the client's to write.
        self.registration_state = None;
        self.device_id = self
            .device_id
            .take()
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty());
        if let Some(device_id) = &self.device_id {
            ironhub_hub::registry::validate_device_id(device_id).map_err(|e| {
                DpsError::BadRequest(format!(
                    "The deviceId is not a valid IoT Hub device id: {e}"
                ))
            })?;
        }
        Ok(())
    }
    fn owner(&self) -> Owner<'_> {
        Owner::Individual(&self.registration_id)
    }
}

impl Enrollment for EnrollmentGroup {
    const COLLECTION: DpsCollection = DpsCollection::EnrollmentGroups;
    const KIND: &'static str = "enrollment group";

    fn validate_id(id: &str) -> Result<(), DpsError> {
        rules::validate_group_id(id)
    }
    fn not_found(id: &str) -> DpsError {
        DpsError::EnrollmentGroupNotFound(id.to_owned())
    }
    fn bulk_error(id: &str, e: &DpsError) -> BulkEnrollmentOperationError {
        BulkEnrollmentOperationError {
            registration_id: None,
            enrollment_group_id: Some(id.to_owned()),
            error_code: e.code(),
            error_status: e.to_string(),
        }
    }
    fn prepare(&mut self, _previous: Option<&Self>) -> Result<(), DpsError> {
        Ok(())
    }
    fn owner(&self) -> Owner<'_> {
        Owner::Group
    }
}

/// A stored enrollment with its etag.
fn load<E: Enrollment>(record: &DpsRecord) -> Result<E, DpsError> {
    let mut e: E = from_record(record)?;
    e.settings_mut().etag = Some(record.etag.clone());
    Ok(e)
}

fn conflict<E: Enrollment>(c: WriteConflict, id: &str, tag: &str) -> DpsError {
    match c {
        WriteConflict::AlreadyExists => already_exists::<E>(id),
        WriteConflict::NotFound => E::not_found(id),
        WriteConflict::EtagMismatch => DpsError::PreconditionFailed(tag.to_owned()),
    }
}

fn already_exists<E: Enrollment>(id: &str) -> DpsError {
    DpsError::Conflict(format!(
        "The {} '{id}' already exists; send its etag in If-Match to update it.",
        E::KIND
    ))
}

/// Checks the hubs an enrollment names against the linked hubs (an unlinked hub is refused, as the
/// Azure docs' enrollment samples say: "Programmatically create a Device Provisioning Service
/// individual enrollment for TPM attestation") and writes them as they are linked; checks what the
/// allocation policy needs.
fn check_allocation(s: &mut EnrollmentSettings, linked: &[LinkedHub]) -> Result<(), DpsError> {
    let linked_name = |name: &str| {
        Dps::find_hub(linked, name)
            .map(|h| h.name.clone())
            .ok_or_else(|| {
                DpsError::BadRequest(format!(
                    "The IoT hub '{name}' is not linked to this provisioning service."
                ))
            })
    };
    s.iot_hub_host_name = match s.iot_hub_host_name.take().filter(|h| !h.trim().is_empty()) {
        Some(h) => Some(linked_name(&h)?),
        None => None,
    };
    if let Some(hubs) = s.iot_hubs.take() {
        let mut names: Vec<String> = Vec::with_capacity(hubs.len());
        for h in hubs.iter().filter(|h| !h.trim().is_empty()) {
            let n = linked_name(h)?;
            if !names.contains(&n) {
                names.push(n);
            }
        }
        s.iot_hubs = Some(names);
    }
    match s.allocation_policy {
        // Static allocation without a hub (neither iotHubHostName nor iotHubs) is accepted,
        // as DPS accepts it (the Node SDK's end-to-end suite creates such groups); the hub is
        // then found at registration (see `allocation::allocate`). Several hubs and no
        // iotHubHostName name no single hub, and are refused.
        Some(AllocationPolicy::Static) => {
            let listed = s.iot_hubs.as_deref().unwrap_or_default();
            if s.iot_hub_host_name.is_none() && listed.len() > 1 {
                return Err(DpsError::BadRequest(
                    "Static allocation needs one hub: iotHubHostName, or at most one entry in \
                     iotHubs."
                        .into(),
                ));
            }
        }
        Some(AllocationPolicy::Custom) => {
            let url = s
                .custom_allocation_definition
                .as_ref()
                .map(|d| d.webhook_url.trim())
                .unwrap_or_default();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(DpsError::BadRequest(
                    "Custom allocation needs customAllocationDefinition.webhookUrl, an http(s) \
                     URL."
                        .into(),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

impl Dps {
    /// The enrollment as stored, with certificates and keys (for attestation).
    pub(crate) async fn load<E: Enrollment>(&self, id: &str) -> Result<Option<E>, DpsError> {
        self.store
            .dps_get(E::COLLECTION, id)
            .await?
            .map(|r| load::<E>(&r))
            .transpose()
    }

    /// Applies the rules to a write: `body` as given, `current` the stored one on an update.
    async fn prepare<E: Enrollment>(
        &self,
        id: &str,
        mut body: E,
        current: Option<&E>,
        linked: &[LinkedHub],
    ) -> Result<E, DpsError> {
        body.set_id(current.map_or(id, |c| c.id()));
        body.prepare(current)?;
        let attestation = rules::attestation(
            &body.settings().attestation,
            current.map(|c| &c.settings().attestation),
            body.owner(),
        )?;
        let now = Utc::now();
        let s = body.settings_mut();
        s.attestation = attestation;
        check_allocation(s, linked)?;
        self.check_issuance_policy(s)?;
        s.provisioning_status = Some(s.provisioning_status.unwrap_or_default());
        s.created_date_time_utc = Some(
            current
                .and_then(|c| c.settings().created_date_time_utc)
                .unwrap_or(now),
        );
        s.last_updated_date_time_utc = Some(now);
        // The store assigns the etag.
        s.etag = None;
        Ok(body)
    }

    /// `PUT /enrollments/{id}` or `/enrollmentGroups/{id}`: creates the enrollment when there
    /// is no `If-Match`, updates it when there is one (`*`, or its etag, quoted or not). A body
    /// that carries the etag it was read with counts as `If-Match`, so a client may send back
    /// what it read (`docs/protocol/dps-json.md` §3). Creating one that exists is a 409 (Azure
    /// docs, "Troubleshooting with Azure IoT Hub Device Provisioning Service", section "Common
    /// error codes"), updating one that does not a 404, a stale etag a 412. Keys left out are
    /// generated on create and kept on update. Answers with keys but without certificate PEMs.
    pub(crate) async fn create_or_update_unobserved<E: Enrollment>(
        &self,
        id: &str,
        body: E,
        if_match: Option<&str>,
    ) -> Result<E, DpsError> {
        E::validate_id(id)?;
        if !body.id().is_empty() && !same_id(body.id(), id) {
            return Err(DpsError::BadRequest(format!(
                "The id in the body ('{}') is not the one in the URL ('{id}').",
                body.id()
            )));
        }
        let if_match = if_match
            .or(body.settings().etag.as_deref())
            .map(normalize_if_match)
            .filter(|t| !t.is_empty());
        let current = self.load::<E>(id).await?;
        let linked = self.list_linked_hubs().await?;
        let write = match (current, if_match) {
            (None, None) => DpsWrite::Create(self.prepare_record(id, body, None, &linked).await?),
            (None, Some(_)) => return Err(E::not_found(id)),
            (Some(_), None) => return Err(already_exists::<E>(id)),
            (Some(current), Some(tag)) => {
                let etag = current.settings().etag.clone().unwrap_or_default();
                if tag != "*" && tag != etag {
                    return Err(DpsError::PreconditionFailed(tag));
                }
                DpsWrite::Replace {
                    record: self
                        .prepare_record(id, body, Some(&current), &linked)
                        .await?,
                    // Compare-and-swap on what was read.
                    if_match: Some(etag),
                }
            }
        };
        let tag = match &write {
            DpsWrite::Replace { if_match, .. } => if_match.clone().unwrap_or_default(),
            _ => String::new(),
        };
        match self.store.dps_write(E::COLLECTION, vec![write]).await? {
            Ok(mut done) => match done.pop().flatten() {
                Some(r) => Ok(load::<E>(&r)?.for_write_answer()),
                None => Err(DpsError::ServerError("the store wrote nothing".into())),
            },
            Err(failed) => Err(failed
                .first()
                .map(|(_, c)| conflict::<E>(*c, id, &tag))
                .unwrap_or_else(|| DpsError::ServerError("the write failed".into()))),
        }
    }

    async fn prepare_record<E: Enrollment>(
        &self,
        id: &str,
        body: E,
        current: Option<&E>,
        linked: &[LinkedHub],
    ) -> Result<DpsRecord, DpsError> {
        let e = self.prepare(id, body, current, linked).await?;
        let record = to_record(e.id(), None, &e)?;
        if ironhub_hub::nul::contains_nul(&record.doc) {
            return Err(DpsError::BadRequest(ironhub_hub::nul::nul_message(
                &format!("the {}", E::KIND),
            )));
        }
        Ok(record)
    }

    /// `GET /enrollments/{id}` or `/enrollmentGroups/{id}`, as DPS answers it (no keys; see
    /// [`Enrollment::for_read`]). An individual enrollment carries the device's registration
    /// state once it has registered.
    pub(crate) async fn get_unobserved<E: Enrollment>(&self, id: &str) -> Result<E, DpsError> {
        let e = self.load::<E>(id).await?.ok_or_else(|| E::not_found(id))?;
        self.with_registration(e).await.map(|e| e.for_read())
    }

    /// Attaches an individual enrollment's registration state (a no-op for groups).
    async fn with_registration<E: Enrollment>(&self, e: E) -> Result<E, DpsError> {
        if E::COLLECTION != DpsCollection::Enrollments {
            return Ok(e);
        }
        let mut value = serde_json::to_value(&e)?;
        if let Some(state) = self.registration_of_individual(e.id()).await? {
            value["registrationState"] = serde_json::to_value(state)?;
        }
        Ok(serde_json::from_value(value)?)
    }

    /// `POST …/{id}/attestationmechanism`: the attestation with its keys (certificate `info`,
    /// no PEMs).
    pub async fn attestation_mechanism<E: Enrollment>(
        &self,
        id: &str,
    ) -> Result<AttestationMechanism, DpsError> {
        let e = self.load::<E>(id).await?.ok_or_else(|| E::not_found(id))?;
        Ok(e.settings().attestation.without_certificates())
    }

    /// `DELETE /enrollments/{id}` or `/enrollmentGroups/{id}`, with an optional `If-Match`.
    /// Registration records stay: deleting a group does not delete them (Azure docs, "How to
    /// manage device enrollments with Azure portal").
    pub(crate) async fn delete_unobserved<E: Enrollment>(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), DpsError> {
        let tag = if_match.map(normalize_if_match).filter(|t| !t.is_empty());
        let write = DpsWrite::Delete {
            id: id.to_owned(),
            if_match: tag.clone(),
        };
        match self.store.dps_write(E::COLLECTION, vec![write]).await? {
            Ok(_) => Ok(()),
            Err(failed) => Err(failed
                .first()
                .map(|(_, c)| conflict::<E>(*c, id, tag.as_deref().unwrap_or_default()))
                .unwrap_or_else(|| DpsError::ServerError("the delete failed".into()))),
        }
    }

    /// `POST /enrollments/query` or `/enrollmentGroups/query`: one page, ordered by id, as
    /// reads answer (no keys).
    pub(crate) async fn query_unobserved<E: Enrollment>(
        &self,
        spec: &QuerySpecification,
        max_items: Option<usize>,
        continuation: Option<&str>,
    ) -> Result<QueryPage<E>, DpsError> {
        check_query(spec)?;
        let size = page_size(max_items);
        let after = resume_after(continuation)?;
        let mut records = self
            .store
            .dps_list(E::COLLECTION, after.as_deref(), size + 1, None)
            .await?;
        let more = records.len() > size;
        records.truncate(size);
        let continuation = more
            .then(|| records.last().map(|r| continuation_after(&r.id)))
            .flatten();
        let mut items = Vec::with_capacity(records.len());
        for r in &records {
            items.push(self.with_registration(load::<E>(r)?).await?.for_read());
        }
        Ok(QueryPage {
            items,
            continuation,
        })
    }

    /// `POST /enrollments` or `/enrollmentGroups`: up to 10 items in one mode, applied all
    /// together or not at all (`DESIGN.md`); the result lists every item that failed. `Err` is
    /// for a request malformed as a whole (empty, too big, an id twice).
    pub async fn bulk<E: Enrollment>(
        &self,
        mode: BulkMode,
        items: &[E],
    ) -> Result<BulkEnrollmentOperationResult, DpsError> {
        if items.is_empty() {
            return Err(DpsError::BadRequest(
                "The bulk operation has no items.".into(),
            ));
        }
        if items.len() > MAX_BULK_ITEMS {
            return Err(DpsError::BadRequest(format!(
                "A bulk operation takes at most {MAX_BULK_ITEMS} items, not {}.",
                items.len()
            )));
        }
        let mut seen = HashSet::new();
        for item in items {
            if !seen.insert(item.id().to_ascii_lowercase()) {
                return Err(DpsError::BadRequest(format!(
                    "The {} '{}' appears more than once in the request.",
                    E::KIND,
                    item.id()
                )));
            }
        }
        let linked = self.list_linked_hubs().await?;
        let mut writes = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for item in items {
            match self.bulk_write(mode, item, &linked).await {
                Ok(w) => writes.push(w),
                Err(e) => errors.push(E::bulk_error(item.id(), &e)),
            }
        }
        if errors.is_empty() {
            let tags: Vec<String> = writes
                .iter()
                .map(|w| match w {
                    DpsWrite::Replace { if_match, .. } | DpsWrite::Delete { if_match, .. } => {
                        if_match.clone().unwrap_or_default()
                    }
                    DpsWrite::Create(_) => String::new(),
                })
                .collect();
            if let Err(failed) = self.store.dps_write(E::COLLECTION, writes).await? {
                for (i, c) in failed {
                    let id = items[i].id();
                    errors.push(E::bulk_error(id, &conflict::<E>(c, id, &tags[i])));
                }
            }
        }
        Ok(BulkEnrollmentOperationResult {
            is_successful: errors.is_empty(),
            errors,
        })
    }

    async fn bulk_write<E: Enrollment>(
        &self,
        mode: BulkMode,
        item: &E,
        linked: &[LinkedHub],
    ) -> Result<DpsWrite, DpsError> {
        let id = item.id();
        E::validate_id(id)?;
        let current = self.load::<E>(id).await?;
        let item_tag = item
            .settings()
            .etag
            .as_deref()
            .map(normalize_if_match)
            .filter(|t| !t.is_empty());
        let check_tag = |current: &E, needed: bool| -> Result<String, DpsError> {
            let etag = current.settings().etag.clone().unwrap_or_default();
            match &item_tag {
                Some(tag) if tag != "*" && *tag != etag => {
                    Err(DpsError::PreconditionFailed(tag.clone()))
                }
                None if needed => Err(DpsError::BadRequest(format!(
                    "The {} '{id}' needs its etag for updateIfMatchETag.",
                    E::KIND
                ))),
                _ => Ok(etag),
            }
        };
        match (mode, current) {
            (BulkMode::Create, Some(_)) => Err(already_exists::<E>(id)),
            (BulkMode::Create | BulkMode::Update, None) => Ok(DpsWrite::Create(
                self.prepare_record(id, item.clone(), None, linked).await?,
            )),
            (BulkMode::Update, Some(current)) => {
                let etag = current.settings().etag.clone();
                Ok(DpsWrite::Replace {
                    record: self
                        .prepare_record(id, item.clone(), Some(&current), linked)
                        .await?,
                    if_match: etag,
                })
            }
            (BulkMode::UpdateIfMatchEtag | BulkMode::Delete, None) => Err(E::not_found(id)),
            (BulkMode::UpdateIfMatchEtag, Some(current)) => {
                let etag = check_tag(&current, true)?;
                Ok(DpsWrite::Replace {
                    record: self
                        .prepare_record(id, item.clone(), Some(&current), linked)
                        .await?,
                    if_match: Some(etag),
                })
            }
            (BulkMode::Delete, Some(current)) => {
                let etag = check_tag(&current, false)?;
                Ok(DpsWrite::Delete {
                    id: id.to_owned(),
                    if_match: Some(etag),
                })
            }
        }
    }
}

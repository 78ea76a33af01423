//! The device registration API's logic, for every transport (Azure docs, "Communicate with your DPS
//! using the MQTT protocol"; `docs/protocol/dps-json.md` §1–§2): a register request starts an
//! operation and answers `assigning` at once (Tasmota needs exactly that,
//! `docs/protocol/dps-json.md` §2); the assignment (allocation, the hub side, the registration
//! record) runs in the background, because a custom allocation webhook may take seconds (as the
//! custom allocation tutorial's function logs show); the device polls the operation until it is
//! `assigned` or `failed`.
//!
//! Each device's latest operation is kept in the store (the `Operations` collection, keyed by
//! registration id), so any node can answer a poll, and a newer registration replaces an older one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ironhub_store::{DpsCollection, DpsRecord, DpsWrite};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::allocation::{
    Allocation, HubAction, Reprovision, allocate, decide, effective_policy, is_legacy_api_version,
};
use crate::attestation::{Attested, AttestedEnrollment, DeviceCredential};
use crate::enrollments::Enrollment;
use crate::linked::{HubCallError, HubRegistry};
use ironhub_hub::throttle::Operation;
use ironhub_wire::hub::{
    AuthType, AuthenticationSpec, CapabilitiesSpec, Device, DeviceSpec, DeviceStatus,
    SymmetricKeySpec, ThumbprintSpec, TwinPatch,
};

use crate::model::{
    CustomAllocationRequest, DeviceRegistration, DeviceRegistrationState, DeviceRuntimeContext,
    InitialTwin, LinkedHub, RegistrationOperationStatus, RegistrationStatus, TpmRegistrationResult,
};
use crate::own_hub::Assignment;
use crate::registrations::RegistrationRecord;
use crate::rules::same_id;
use crate::webhook::allocate_by_webhook;
use crate::{Dps, DpsError, from_record, to_record};

/// Limits on the device registration API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Operation status polls one device may make in `poll_window`: DPS allows 5 per 10 s
    /// per device (Azure docs, "What is Azure IoT Hub Device Provisioning Service?", section
    /// "Quotas and limits"); 0 for no limit.
    pub polls_per_window: u32,
    pub poll_window: Duration,
    /// Registrations the whole instance accepts per minute; 0 for no limit. Azure's default is 200
    /// ("Quotas and limits", as above); a self-hosted server has no reason to throttle by default.
    pub registrations_per_minute: u32,
    /// The `retry-after` a device is told while its operation is assigning, in seconds.
    pub retry_after_secs: u32,
    /// The largest request body, in bytes: 96 KB ("Quotas and limits", as above).
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            polls_per_window: 5,
            poll_window: Duration::from_secs(10),
            registrations_per_minute: 0,
            retry_after_secs: 2,
            max_message_bytes: 96 * 1024,
        }
    }
}

/// How long an operation's runner holds it without renewing: a poll answers `failed` for an
/// operation still `assigning` whose lease ran out (its node is gone).
pub const OPERATION_LEASE: Duration = Duration::from_secs(30);

/// What one running instance keeps in memory: who it is (its node, and this run of it, to
/// tell its own operations from ones a previous run left unfinished), the latencies measured
/// to the linked hubs, and the counters of the limits. The limits are counted per node.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) node_id: String,
    pub(crate) instance_id: String,
    pub(crate) latencies: RwLock<HashMap<String, Duration>>,
    polls: Mutex<HashMap<String, VecDeque<Instant>>>,
    registrations: Mutex<VecDeque<Instant>>,
}

impl Runtime {
    pub(crate) fn new(node_id: String) -> Self {
        Runtime {
            node_id,
            instance_id: hex(&ironhub_auth::random_bytes(8)),
            latencies: RwLock::default(),
            polls: Mutex::default(),
            registrations: Mutex::default(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new operation id in DPS's shape, `4.<16 hex>.<GUID>` (as the custom allocation
/// tutorial's device output shows one); only
/// `[0-9a-f.-]`, which every client passes in a URL or topic unencoded.
fn new_operation_id() -> String {
    let r = ironhub_auth::random_bytes(24);
    let g = hex(&r[8..]);
    format!(
        "4.{}.{}-{}-{}-{}-{}",
        hex(&r[..8]),
        &g[..8],
        &g[8..12],
        &g[12..16],
        &g[16..20],
        &g[20..32]
    )
}

/// A device's latest registration operation, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationRecord {
    operation_id: String,
    status: RegistrationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registration_state: Option<DeviceRegistrationState>,
    /// The run of the server (instance) that runs the assignment.
    worker: String,
    /// The node that runs it (absent in records of servers before node ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    /// Until when the runner holds the operation; it renews the lease while it works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_until: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
}

/// The end of a lease taken or renewed at `now`.
fn lease_from(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::TimeDelta::from_std(OPERATION_LEASE).unwrap_or_default()
}

impl OperationRecord {
    /// Whether an `assigning` operation will never finish, seen from the run `instance` of
    /// `node` at `now`: its runner was an earlier run of this node, or a node whose lease ran
    /// out. An operation another live node runs is not abandoned, whichever node is asked.
    fn abandoned(&self, node: &str, instance: &str, now: DateTime<Utc>) -> bool {
        self.status == RegistrationStatus::Assigning
            && self.worker != instance
            && (self.node.as_deref().is_none_or(|n| n == node)
                || self.lease_until.is_none_or(|until| until <= now))
    }

    fn answer(&self) -> RegistrationOperationStatus {
        RegistrationOperationStatus {
            operation_id: self.operation_id.clone(),
            status: self.status,
            registration_state: self.registration_state.clone(),
        }
    }
}

/// A registration state with nothing but its id and the time (status `unassigned`).
fn blank_state(registration_id: &str) -> DeviceRegistrationState {
    let now = Utc::now();
    DeviceRegistrationState {
        registration_id: registration_id.to_owned(),
        created_date_time_utc: Some(now),
        assigned_hub: None,
        device_id: None,
        status: RegistrationStatus::Unassigned,
        substatus: None,
        error_code: None,
        error_message: None,
        last_updated_date_time_utc: Some(now),
        etag: None,
        payload: None,
        tpm: None,
        issued_certificate_chain: None,
    }
}

/// The registration state of a registration that failed.
fn failed_state(registration_id: &str, e: &DpsError) -> DeviceRegistrationState {
    DeviceRegistrationState {
        status: RegistrationStatus::Failed,
        error_code: Some(e.code()),
        error_message: Some(e.to_string()),
        ..blank_state(registration_id)
    }
}

pub(crate) fn hub_failed(hub: &str, e: HubCallError) -> DpsError {
    tracing::warn!(target: "DeviceOperations", hub, error = %e, "a linked hub refused a provisioning call");
    DpsError::ServerError(format!(
        "The IoT hub '{hub}' could not register the device: {e}."
    ))
}

/// The hub device for an attested device: its credential, the enrollment's IoT Edge flag.
/// `issuing_ca` names the CA that issued the device a certificate, if one did.
fn device_identity(device_id: &str, attested: &Attested, issuing_ca: Option<&str>) -> DeviceSpec {
    let authentication = match &attested.credential {
        // A device given a certificate connects with it, whatever it attested with; the hub
        // renews it with the CA that issued it.
        _ if issuing_ca.is_some() => AuthenticationSpec {
            kind: Some(AuthType::CertificateAuthority.as_str().to_owned()),
            symmetric_key: None,
            x509_thumbprint: None,
            certificate_authority_name: issuing_ca.map(str::to_owned),
        },
        DeviceCredential::SymmetricKey([primary, secondary]) => AuthenticationSpec {
            kind: Some(AuthType::Sas.as_str().to_owned()),
            symmetric_key: Some(SymmetricKeySpec {
                primary_key: Some(primary.clone()),
                secondary_key: Some(secondary.clone()),
            }),
            x509_thumbprint: None,
            certificate_authority_name: None,
        },
        DeviceCredential::X509 { thumbprints, .. } => AuthenticationSpec {
            kind: Some(AuthType::SelfSigned.as_str().to_owned()),
            symmetric_key: None,
            x509_thumbprint: Some(ThumbprintSpec {
                primary_thumbprint: Some(thumbprints[0].clone()),
                secondary_thumbprint: Some(thumbprints[1].clone()),
            }),
            certificate_authority_name: None,
        },
    };
    DeviceSpec {
        device_id: Some(device_id.to_owned()),
        status: Some(DeviceStatus::Enabled.as_str().to_owned()),
        authentication: Some(authentication),
        capabilities: Some(CapabilitiesSpec {
            iot_edge: Some(attested.enrollment.settings().iot_edge()),
        }),
        ..DeviceSpec::default()
    }
}

/// A device's operation as this run last wrote it.
#[derive(Debug)]
struct TrackedOperation {
    record: OperationRecord,
    etag: String,
}

/// What [`Dps::register`] wrote before answering, handed to the assignment so that it reads
/// none of it again.
#[derive(Debug)]
struct Started {
    operation: TrackedOperation,
    /// The device's registration record: the one it had, or the claim.
    previous: RegistrationRecord,
    /// The claim's etag, when this registration made it.
    claimed: Option<String>,
}

/// What a registration hands the device besides its assignment.
#[derive(Debug)]
struct Extras {
    /// A TPM device's key, sealed to its TPM.
    tpm: Option<TpmRegistrationResult>,
    /// The CSR to sign once the device is assigned.
    csr: Option<ironhub_hub::credentials::VerifiedCsr>,
}

/// The update of an existing hub device to `identity`, and the etag it is conditioned on: its
/// status stays as the hub has it (its operator may have changed it).
pub(crate) fn update_of(identity: &DeviceSpec, existing: &Device) -> (DeviceSpec, String) {
    let body = DeviceSpec {
        status: Some(existing.status.as_str().to_owned()),
        ..identity.clone()
    };
    let etag = match existing.etag.as_str() {
        "" => "*",
        etag => etag,
    };
    (body, etag.to_owned())
}

/// Creates the device on the hub, or updates its credentials and capabilities (its status,
/// which the hub's operator may have changed, stays). Returns whether it was created.
/// `fresh`: the device had no registration record, so its hub device most likely does not
/// exist either; it is created without reading it first (a 409 falls back to the update).
async fn upsert_device(
    hub: &dyn HubRegistry,
    device_id: &str,
    identity: &DeviceSpec,
    fresh: bool,
) -> Result<bool, HubCallError> {
    if fresh {
        match hub.put_device(device_id, identity, None).await {
            Ok(_) => return Ok(true),
            Err(HubCallError::Status { status: 409, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    for _ in 0..3 {
        match hub.get_device(device_id).await? {
            None => match hub.put_device(device_id, identity, None).await {
                Ok(_) => return Ok(true),
                // Created meanwhile: update it instead.
                Err(HubCallError::Status { status: 409, .. }) => continue,
                Err(e) => return Err(e),
            },
            Some(existing) => {
                let (body, etag) = update_of(identity, &existing);
                match hub.put_device(device_id, &body, Some(&etag)).await {
                    Ok(_) => return Ok(false),
                    Err(HubCallError::Status {
                        status: 404 | 412, ..
                    }) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(HubCallError::Status {
        status: 409,
        message: "the device kept changing while it was provisioned".into(),
    })
}

/// The registration record to write over `previous` (if the device has one): `state`, with
/// the id's case and the `createdDateTimeUtc` of the one it replaces.
pub(crate) fn next_state(
    previous: Option<&RegistrationRecord>,
    state: &DeviceRegistrationState,
) -> DeviceRegistrationState {
    let now = Utc::now();
    DeviceRegistrationState {
        registration_id: previous.map_or_else(
            || state.registration_id.clone(),
            |p| p.state.registration_id.clone(),
        ),
        created_date_time_utc: Some(
            previous
                .and_then(|p| p.state.created_date_time_utc)
                .unwrap_or(now),
        ),
        last_updated_date_time_utc: Some(now),
        ..state.clone()
    }
}

/// A twin update with these tags and desired properties (`$metadata` and `$version` left
/// out: they are the hub's).
fn twin_doc(tags: Option<&Map<String, Value>>, desired: Option<&Map<String, Value>>) -> TwinPatch {
    let desired: Map<String, Value> = desired
        .map(|d| {
            d.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    TwinPatch::new(tags.cloned().unwrap_or_default(), desired)
}

fn initial_twin_doc(twin: &InitialTwin) -> TwinPatch {
    twin_doc(
        twin.tags.as_ref(),
        twin.properties.as_ref().and_then(|p| p.desired.as_ref()),
    )
}

/// Whether an initial twin sets anything.
fn is_empty_twin(twin: &InitialTwin) -> bool {
    twin.tags.as_ref().is_none_or(Map::is_empty)
        && twin
            .properties
            .as_ref()
            .and_then(|p| p.desired.as_ref())
            .is_none_or(Map::is_empty)
}

impl Dps {
    /// The limits the instance applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The round trip last measured to a linked hub, if it answered.
    pub fn latency_of(&self, hub: &str) -> Option<Duration> {
        self.runtime
            .latencies
            .read()
            .ok()?
            .get(&hub.to_ascii_lowercase())
            .copied()
    }

    /// The latencies last measured to the linked hubs, by lower-cased name.
    fn latencies(&self) -> HashMap<String, Duration> {
        self.runtime
            .latencies
            .read()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// The registry of a linked hub.
    fn registry(&self, linked: &[LinkedHub], name: &str) -> Result<Arc<dyn HubRegistry>, DpsError> {
        let hub = Dps::find_hub(linked, name)
            .ok_or_else(|| DpsError::LinkedHubNotFound(name.to_owned()))?;
        self.services
            .connector
            .connect(hub)
            .map_err(|e| hub_failed(name, e))
    }

    /// Counts a registration against the shared throttle's rates (`[throttling]`
    /// `dps_registrations`, per instance and per registration id) and the instance's per-minute limit.
    fn admit_registration(&self, registration_id: &str) -> Result<(), DpsError> {
        if let Some(throttle) = &self.throttle {
            throttle
                .admit(
                    Operation::DpsRegistration,
                    Some(&registration_id.to_ascii_lowercase()),
                )
                .map_err(|e| DpsError::Throttled(e.to_string(), e.retry_after()))?;
        }
        let limit = self.limits.registrations_per_minute;
        if limit == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut recent = self
            .runtime
            .registrations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            recent.pop_front();
        }
        if recent.len() >= limit as usize {
            return Err(DpsError::Throttled(
                format!(
                    "Too many registrations: this provisioning service accepts {limit} a minute."
                ),
                None,
            ));
        }
        recent.push_back(now);
        Ok(())
    }

    /// Counts a status poll against the device's limit ("Quotas and limits", as above).
    fn admit_poll(&self, registration_id: &str) -> Result<(), DpsError> {
        let limit = self.limits.polls_per_window;
        if limit == 0 {
            return Ok(());
        }
        let window = self.limits.poll_window;
        let now = Instant::now();
        let mut polls = self.runtime.polls.lock().unwrap_or_else(|e| e.into_inner());
        let recent = polls
            .entry(registration_id.to_ascii_lowercase())
            .or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            recent.pop_front();
        }
        if recent.len() >= limit as usize {
            return Err(DpsError::Throttled(
                format!(
                    "Too many status polls: a device may poll {limit} times in {} seconds.",
                    window.as_secs()
                ),
                None,
            ));
        }
        recent.push_back(now);
        if polls.len() > 10_000 {
            polls.retain(|_, r| r.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        Ok(())
    }

    /// The `retry-after` for an answer: the poll interval while assigning, the window for a
    /// throttled poll.
    pub fn retry_after(&self, error: Option<&DpsError>) -> u32 {
        match error {
            Some(DpsError::Throttled(_, Some(seconds))) => (*seconds).max(1),
            Some(DpsError::Throttled(_, None)) => {
                u32::try_from(self.limits.poll_window.as_secs().max(1)).unwrap_or(10)
            }
            _ => self.limits.retry_after_secs.max(1),
        }
    }

    /// `PUT /{idScope}/registrations/{registrationId}/register` (and its MQTT form): starts a
    /// registration of an attested device and answers `assigning` with the operation id. A
    /// registration id in the body must be the attested one.
    pub async fn register(
        &self,
        attested: Attested,
        request: DeviceRegistration,
        api_version: Option<&str>,
    ) -> Result<RegistrationOperationStatus, DpsError> {
        if let Some(body_id) = request
            .registration_id
            .as_deref()
            .filter(|b| !b.trim().is_empty())
            && !same_id(body_id, &attested.registration_id)
        {
            return Err(DpsError::BadRequest(format!(
                "The registration id in the body ('{body_id}') is not the one the device \
                 authenticated as ('{}').",
                attested.registration_id
            )));
        }
        let tpm = self.tpm_registration_result(&attested, request.tpm.as_ref())?;
        let csr = self.read_csr(&attested, request.csr.as_deref())?;
        self.admit_registration(&attested.registration_id)?;
        let mut record = OperationRecord {
            operation_id: new_operation_id(),
            status: RegistrationStatus::Assigning,
            registration_state: None,
            worker: self.runtime.instance_id.clone(),
            node: Some(self.runtime.node_id.clone()),
            lease_until: Some(lease_from(Utc::now())),
            started: Utc::now(),
        };
        // The device is answered `assigning` in every case (Tasmota needs it,
        // docs/protocol/dps-json.md §2); a disabled enrollment's outcome is known at once.
        let answer = record.answer();
        if !attested.is_enabled() {
            let state = self.record_disabled(&attested).await?;
            record.status = RegistrationStatus::Disabled;
            record.registration_state = Some(state);
            self.save_operation(&attested.registration_id, &record)
                .await?;
            tracing::info!(target: "DeviceOperations", registration_id = %attested.registration_id, "registration refused: the enrollment is disabled");
            return Ok(answer);
        }
        let started = self.begin(&attested, record).await?;
        tracing::info!(target: "DeviceOperations", registration_id = %attested.registration_id, operation_id = %started.operation.record.operation_id, "registration started");
        let legacy = api_version.is_some_and(is_legacy_api_version);
        let dps = self.clone();
        tokio::spawn(async move {
            let extras = Extras { tpm, csr };
            dps.complete(attested, request.payload, extras, legacy, started)
                .await;
        });
        Ok(answer)
    }

    /// A device of a disabled enrollment: its registration record says `disabled` (as real
    /// DPS keeps it, and `az iot dps enrollment registration show` reads it back), and no hub
    /// is touched.
    async fn record_disabled(
        &self,
        attested: &Attested,
    ) -> Result<DeviceRegistrationState, DpsError> {
        let previous = self.find_registration(&attested.registration_id).await?;
        self.record_registration(
            attested,
            previous.as_ref(),
            DeviceRegistrationState {
                status: RegistrationStatus::Disabled,
                ..blank_state(&attested.registration_id)
            },
        )
        .await
    }

    /// Writes the device's registration record, keeping the id's case and the
    /// `createdDateTimeUtc` of the one it replaces. When another registration of the device
    /// wrote the record meanwhile (the same id, in any case), this one, the later, replaces it.
    async fn record_registration(
        &self,
        attested: &Attested,
        previous: Option<&RegistrationRecord>,
        state: DeviceRegistrationState,
    ) -> Result<DeviceRegistrationState, DpsError> {
        let mut previous = previous.cloned();
        let mut attempts = 0;
        loop {
            let p = previous.as_ref();
            let next = next_state(p, &state);
            let written = self
                .write_registration(
                    next,
                    attested.enrollment.group_id(),
                    p.and_then(|p| p.state.etag.as_deref()),
                )
                .await;
            attempts += 1;
            match written {
                Err(DpsError::Conflict(_) | DpsError::PreconditionFailed(_)) if attempts < 3 => {
                    previous = self.find_registration(&state.registration_id).await?;
                }
                other => return other,
            }
        }
    }

    /// Writes the device's new operation and, when the device has no registration record yet,
    /// claims one in status `assigning`, in one store transaction, before any hub is touched:
    /// so two registrations whose ids differ only in case (DPS ids are case-insensitive) agree
    /// on one record, and the first one's case names the record and the hub device.
    async fn begin(
        &self,
        attested: &Attested,
        record: OperationRecord,
    ) -> Result<Started, DpsError> {
        let id = &attested.registration_id;
        let claim = DeviceRegistrationState {
            status: RegistrationStatus::Assigning,
            ..blank_state(id)
        };
        let begun = self
            .store
            .dps_begin_registration(
                to_record(id, None, &record)?,
                to_record(id, attested.enrollment.group_id(), &claim)?,
            )
            .await?;
        let previous = RegistrationRecord::from_stored(&begun.registration)?;
        Ok(Started {
            operation: TrackedOperation {
                record,
                etag: begun.operation.etag,
            },
            claimed: begun.claimed.then(|| begun.registration.etag.clone()),
            previous,
        })
    }

    /// Writes a device's operation, replacing the one it had.
    async fn save_operation(
        &self,
        registration_id: &str,
        record: &OperationRecord,
    ) -> Result<(), DpsError> {
        for _ in 0..3 {
            let current = self
                .store
                .dps_get(DpsCollection::Operations, registration_id)
                .await?;
            let stored = to_record(registration_id, None, record)?;
            let write = match current {
                None => DpsWrite::Create(stored),
                Some(c) => DpsWrite::Replace {
                    record: stored,
                    if_match: Some(c.etag),
                },
            };
            if self
                .store
                .dps_write(DpsCollection::Operations, vec![write])
                .await?
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(DpsError::ServerError(
            "The registration kept changing while it was written; register again.".into(),
        ))
    }

    /// The device's operation record, with the store's etag.
    async fn load_operation(
        &self,
        registration_id: &str,
    ) -> Result<Option<(OperationRecord, DpsRecord)>, DpsError> {
        match self
            .store
            .dps_get(DpsCollection::Operations, registration_id)
            .await?
        {
            Some(r) => Ok(Some((from_record(&r)?, r))),
            None => Ok(None),
        }
    }

    /// Runs the assignment and records its outcome in the operation (unless a newer
    /// registration of the device replaced it meanwhile).
    async fn complete(
        self,
        attested: Attested,
        payload: Option<Value>,
        extras: Extras,
        legacy: bool,
        started: Started,
    ) {
        let registration_id = attested.registration_id.clone();
        let Extras { tpm, csr } = extras;
        let Started {
            operation: mut tracked,
            previous,
            claimed,
        } = started;
        // The TPM's sealed key and the issued certificate go to the device in the operation,
        // not in the stored record. The certificate is signed first: a device whose
        // certificate could not be made is not switched to certificate authentication.
        let assignment = async {
            let issued = self.issue_for(&attested, csr.as_ref())?;
            let issuing_ca = issued.as_ref().map(|i| i.certificate_authority.as_str());
            self.assign_over(&attested, previous, payload, legacy, issuing_ca)
                .await
                .map(|state| DeviceRegistrationState {
                    tpm,
                    issued_certificate_chain: issued.map(|i| i.chain),
                    ..state
                })
        };
        tokio::pin!(assignment);
        // The lease is renewed while the assignment runs (a webhook may retry for minutes).
        let mut renew = tokio::time::interval(OPERATION_LEASE / 3);
        renew.tick().await;
        let outcome = loop {
            tokio::select! {
                outcome = &mut assignment => break outcome,
                _ = renew.tick() => self.renew_lease(&registration_id, &mut tracked).await,
            }
        };
        if let (Err(_), Some(etag)) = (&outcome, &claimed) {
            // Nothing was assigned: the record this run claimed goes (unless it changed).
            if let Err(e) = self.delete_registration(&registration_id, Some(etag)).await {
                tracing::warn!(target: "DeviceOperations", registration_id = %registration_id, error = %e, "could not release a claimed registration record");
            }
        }
        let state = match outcome {
            Ok(state) => {
                tracing::info!(target: "DeviceOperations", registration_id = %registration_id, hub = ?state.assigned_hub, substatus = ?state.substatus, "device assigned");
                self.registration_outcome(&registration_id, Ok(&state));
                state
            }
            Err(e) => {
                tracing::info!(target: "DeviceOperations", registration_id = %registration_id, error = %e, "registration failed");
                self.registration_outcome(&registration_id, Err(&e));
                failed_state(&registration_id, &e)
            }
        };
        let operation_id = tracked.record.operation_id.clone();
        if let Err(e) = self
            .finish_operation(&registration_id, &operation_id, state, Some(tracked))
            .await
        {
            tracing::warn!(target: "DeviceOperations", registration_id = %registration_id, error = %e, "could not record the outcome of a registration");
        }
    }

    /// Replaces the device's operation with `op` if its etag is still `etag`; returns the new
    /// etag, or `None` when the operation changed meanwhile.
    async fn replace_operation(
        &self,
        registration_id: &str,
        op: &OperationRecord,
        etag: &str,
    ) -> Result<Option<String>, DpsError> {
        let write = DpsWrite::Replace {
            record: to_record(registration_id, None, op)?,
            if_match: Some(etag.to_owned()),
        };
        Ok(self
            .store
            .dps_write(DpsCollection::Operations, vec![write])
            .await?
            .ok()
            .and_then(|mut done| done.pop().flatten())
            .map(|r| r.etag))
    }

    /// Extends the lease of the operation this run is assigning, if it is still the device's
    /// latest; a failure only logs (the next renewal tries again).
    async fn renew_lease(&self, registration_id: &str, tracked: &mut TrackedOperation) {
        let renewed = async {
            let mut op = tracked.record.clone();
            op.lease_until = Some(lease_from(Utc::now()));
            if let Some(etag) = self
                .replace_operation(registration_id, &op, &tracked.etag)
                .await?
            {
                *tracked = TrackedOperation { record: op, etag };
                return Ok(());
            }
            // Changed meanwhile: renewed only if it is still this run's and assigning.
            let Some((mut current, stored)) = self.load_operation(registration_id).await? else {
                return Ok(());
            };
            if current.operation_id != op.operation_id
                || current.status != RegistrationStatus::Assigning
            {
                return Ok(());
            }
            current.lease_until = op.lease_until;
            match self
                .replace_operation(registration_id, &current, &stored.etag)
                .await?
            {
                Some(etag) => {
                    *tracked = TrackedOperation {
                        record: current,
                        etag,
                    };
                    Ok(())
                }
                None => Err(DpsError::ServerError(
                    "the operation changed meanwhile".into(),
                )),
            }
        };
        if let Err(e) = renewed.await {
            tracing::warn!(target: "DeviceOperations", registration_id, error = %e, "could not renew the lease of a registration");
        }
    }

    /// Records a registration's outcome in its operation, unless a newer registration of the
    /// device replaced the operation. `known` is the operation as this run last wrote it (its
    /// first attempt then reads nothing).
    async fn finish_operation(
        &self,
        registration_id: &str,
        operation_id: &str,
        state: DeviceRegistrationState,
        mut known: Option<TrackedOperation>,
    ) -> Result<(), DpsError> {
        for _ in 0..3 {
            let (mut op, etag) = match known.take() {
                Some(t) => (t.record, t.etag),
                None => match self.load_operation(registration_id).await? {
                    Some((op, stored)) => (op, stored.etag),
                    None => return Ok(()),
                },
            };
            if op.operation_id != operation_id {
                return Ok(());
            }
            op.status = state.status;
            op.registration_state = Some(state.clone());
            if self
                .replace_operation(registration_id, &op, &etag)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(DpsError::ServerError("the operation kept changing".into()))
    }

    /// `GET /{idScope}/registrations/{registrationId}/operations/{operationId}` (and its MQTT
    /// form), for an attested device: `assigning` while the assignment runs, then `assigned`
    /// or `failed` with the registration state. Polls count against the device's limit.
    pub async fn operation_status(
        &self,
        registration_id: &str,
        operation_id: &str,
    ) -> Result<RegistrationOperationStatus, DpsError> {
        self.admit_poll(registration_id)?;
        let (op, _) = self
            .load_operation(registration_id)
            .await?
            .filter(|(op, _)| op.operation_id == operation_id.trim())
            .ok_or_else(|| DpsError::OperationNotFound(operation_id.to_owned()))?;
        if op.abandoned(&self.runtime.node_id, &self.runtime.instance_id, Utc::now()) {
            // An earlier run of this node, or a node whose lease ran out, started it: it will
            // never finish. Say so, and the device registers again. An operation another live
            // node runs stays `assigning`.
            let e = DpsError::ServerError(
                "The provisioning service restarted while this registration was assigned; \
                 register again."
                    .into(),
            );
            let state = failed_state(registration_id, &e);
            self.finish_operation(registration_id, &op.operation_id, state.clone(), None)
                .await?;
            self.fail_abandoned_claim(registration_id, &state, op.started)
                .await?;
            return Ok(RegistrationOperationStatus {
                operation_id: op.operation_id,
                status: RegistrationStatus::Failed,
                registration_state: Some(state),
            });
        }
        Ok(op.answer())
    }

    /// A registration record the dead run claimed and left `assigning` says `failed` too, so
    /// that no record stays half-done (the device registers again and replaces it). So does
    /// one the dead run wrote `assigned` (after the operation `started`) but died before
    /// telling the operation: the device is answered `failed`, and the record agrees.
    async fn fail_abandoned_claim(
        &self,
        registration_id: &str,
        failed: &DeviceRegistrationState,
        started: DateTime<Utc>,
    ) -> Result<(), DpsError> {
        let Some(record) = self.find_registration(registration_id).await? else {
            return Ok(());
        };
        let written_by_it = record.state.status == RegistrationStatus::Assigned
            && record
                .state
                .last_updated_date_time_utc
                .is_some_and(|at| at >= started);
        if record.state.status != RegistrationStatus::Assigning && !written_by_it {
            return Ok(());
        }
        let state = DeviceRegistrationState {
            registration_id: record.state.registration_id.clone(),
            created_date_time_utc: record.state.created_date_time_utc,
            last_updated_date_time_utc: Some(Utc::now()),
            ..failed.clone()
        };
        match self
            .write_registration(
                state,
                record.enrollment_group_id.as_deref(),
                record.state.etag.as_deref(),
            )
            .await
        {
            // Another registration wrote it meanwhile: that one is newer.
            Ok(_) | Err(DpsError::PreconditionFailed(_) | DpsError::RegistrationNotFound(_)) => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `POST /{idScope}/registrations/{registrationId}` (the device's registration status
    /// lookup; Azure docs, "Best practices for large-scale IoT device deployments"): the
    /// registration record of an attested device.
    pub async fn device_registration_status(
        &self,
        registration_id: &str,
    ) -> Result<DeviceRegistrationState, DpsError> {
        self.admit_poll(registration_id)?;
        self.get_registration(registration_id).await
    }

    /// Picks the hub, applies the reprovisioning policy on the hubs, and writes the
    /// registration record over `previous` (the device's record, or the claim
    /// [`Dps::register`] made). `issuing_ca` names the CA that issued the device a certificate.
    async fn assign_over(
        &self,
        attested: &Attested,
        previous: RegistrationRecord,
        payload: Option<Value>,
        legacy: bool,
        issuing_ca: Option<&str>,
    ) -> Result<DeviceRegistrationState, DpsError> {
        let registration_id = &attested.registration_id;
        let settings = attested.enrollment.settings();
        let linked = self.list_linked_hubs().await?;
        let policy = effective_policy(settings.reprovision_policy, legacy);
        // Never re-provision: a device with a hub stays there, so there is nothing to
        // allocate (and no webhook to call).
        let kept = Some(&previous.state)
            .filter(|_| !policy.update_hub_assignment)
            .filter(|s| s.status == RegistrationStatus::Assigned)
            .and_then(|s| s.assigned_hub.as_deref())
            .and_then(|h| Dps::find_hub(&linked, h));
        let allocation = match kept {
            Some(h) => Allocation::Hub(h.name.clone()),
            None => allocate(settings, registration_id, &linked, &self.latencies())?,
        };
        let (hub, initial_twin, device_payload) = match allocation {
            Allocation::Hub(h) => (h, settings.initial_twin.clone(), None),
            Allocation::Custom {
                definition,
                linked_hubs,
            } => {
                let request =
                    self.webhook_request(attested, Some(&previous), payload, &linked_hubs);
                let answer = allocate_by_webhook(
                    self.services.webhook.as_ref(),
                    &definition.webhook_url,
                    &request,
                    tokio::time::sleep,
                )
                .await?;
                let chosen = answer.iot_hub_host_name.clone().unwrap_or_default();
                let hub = Dps::find_hub(&linked, &chosen).ok_or_else(|| {
                    DpsError::CustomAllocationFailed(format!(
                        "Custom allocation failed: the webhook chose the IoT hub '{chosen}', \
                         which is not linked to this provisioning service."
                    ))
                })?;
                (
                    hub.name.clone(),
                    answer
                        .initial_twin
                        .or_else(|| settings.initial_twin.clone()),
                    answer.payload,
                )
            }
        };
        let decision = decide(policy, Some(&previous.state), &hub, |h| {
            Dps::find_hub(&linked, h).is_some()
        });
        let device_id = attested.device_id_after(Some(&previous.state)).to_owned();
        let previous_device = previous
            .state
            .device_id
            .clone()
            .unwrap_or_else(|| device_id.clone());
        let identity = device_identity(&device_id, attested, issuing_ca);
        // Never assigned before: its hub device is most likely not there.
        let fresh = previous.state.assigned_hub.is_none();
        let state = DeviceRegistrationState {
            assigned_hub: Some(decision.hub.clone()),
            device_id: Some(device_id.clone()),
            status: RegistrationStatus::Assigned,
            substatus: Some(decision.substatus),
            payload: device_payload,
            ..blank_state(registration_id)
        };
        let no_twin = initial_twin.as_ref().is_none_or(is_empty_twin);
        if matches!(decision.action, HubAction::Assign | HubAction::Keep) && no_twin {
            let target = self.registry(&linked, &decision.hub)?;
            if let Some(hub) = self.joint_hub(target.as_ref()) {
                let assignment = Assignment {
                    hub_name: &decision.hub,
                    device_id: &device_id,
                    identity: &identity,
                    fresh,
                    state,
                };
                return self
                    .assign_jointly(hub, target.as_ref(), attested, &previous, assignment)
                    .await;
            }
        }
        self.apply(
            &decision,
            &linked,
            &identity,
            &device_id,
            &previous_device,
            initial_twin.as_ref(),
            fresh,
        )
        .await?;
        self.record_registration(attested, Some(&previous), state)
            .await
    }

    /// Does what the decision says on the hubs; `fresh` when the device was never assigned
    /// (see `upsert_device`).
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        decision: &Reprovision,
        linked: &[LinkedHub],
        identity: &DeviceSpec,
        device_id: &str,
        previous_device: &str,
        initial_twin: Option<&InitialTwin>,
        fresh: bool,
    ) -> Result<(), DpsError> {
        let target = self.registry(linked, &decision.hub)?;
        let hub = decision.hub.as_str();
        let initial = initial_twin.filter(|t| !is_empty_twin(t));
        match &decision.action {
            HubAction::Assign | HubAction::Keep => {
                let created = upsert_device(target.as_ref(), device_id, identity, fresh)
                    .await
                    .map_err(|e| hub_failed(hub, e))?;
                // The initial twin is the device's starting point: on a first assignment,
                // and whenever its device had to be created again.
                if let Some(twin) = initial
                    && (created || decision.action == HubAction::Assign)
                {
                    target
                        .update_twin(device_id, &initial_twin_doc(twin), false)
                        .await
                        .map_err(|e| hub_failed(hub, e))?;
                }
            }
            HubAction::Migrate { from } => {
                let source = self.registry(linked, from)?;
                let old_twin = match source.get_twin(previous_device).await {
                    Ok(t) => Some(t),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(hub_failed(from, e)),
                };
                upsert_device(target.as_ref(), device_id, identity, fresh)
                    .await
                    .map_err(|e| hub_failed(hub, e))?;
                let doc = match &old_twin {
                    Some(t) => Some(twin_doc(Some(&t.tags), Some(&t.properties.desired))),
                    None => initial.map(initial_twin_doc),
                };
                if let Some(doc) = doc {
                    target
                        .update_twin(device_id, &doc, true)
                        .await
                        .map_err(|e| hub_failed(hub, e))?;
                }
                source
                    .delete_device(previous_device)
                    .await
                    .map_err(|e| hub_failed(from, e))?;
            }
            HubAction::Reset { from } => {
                upsert_device(target.as_ref(), device_id, identity, fresh)
                    .await
                    .map_err(|e| hub_failed(hub, e))?;
                let doc = initial.map_or_else(|| twin_doc(None, None), initial_twin_doc);
                target
                    .update_twin(device_id, &doc, true)
                    .await
                    .map_err(|e| hub_failed(hub, e))?;
                if let Some(from) = from {
                    self.registry(linked, from)?
                        .delete_device(previous_device)
                        .await
                        .map_err(|e| hub_failed(from, e))?;
                }
            }
        }
        Ok(())
    }

    /// The body of a custom allocation call: the enrollment without its secrets, the device's
    /// runtime context and the candidate hubs (Azure docs, "Tutorial: Use custom allocation
    /// policies with Device Provisioning Service (DPS)").
    fn webhook_request(
        &self,
        attested: &Attested,
        previous: Option<&RegistrationRecord>,
        payload: Option<Value>,
        linked_hubs: &[String],
    ) -> CustomAllocationRequest {
        // Keys are never sent: a symmetric key attestation is just its type; the device's
        // registration is not part of the enrollment sent.
        let mut individual_enrollment = None;
        let mut enrollment_group = None;
        match &attested.enrollment {
            AttestedEnrollment::Individual(e) => {
                let mut e = e.for_read();
                e.settings.attestation.symmetric_key = None;
                e.registration_state = None;
                individual_enrollment = Some(e);
            }
            AttestedEnrollment::Group(g) => {
                let mut g = g.for_read();
                g.settings.attestation.symmetric_key = None;
                enrollment_group = Some(g);
            }
        }
        let assigned = previous
            .map(|p| &p.state)
            .filter(|s| s.status == RegistrationStatus::Assigned);
        let context = DeviceRuntimeContext {
            registration_id: attested.registration_id.clone(),
            current_iot_hub_host_name: assigned.and_then(|s| s.assigned_hub.clone()),
            current_device_id: assigned.and_then(|s| s.device_id.clone()),
            symmetric_key: match attested.credential {
                DeviceCredential::SymmetricKey(_) => Some(Map::new()),
                DeviceCredential::X509 { .. } => None,
            },
            x509: match &attested.credential {
                DeviceCredential::X509 { certificate, .. } => Some(certificate.clone()),
                DeviceCredential::SymmetricKey(_) => None,
            },
            payload,
        };
        CustomAllocationRequest {
            individual_enrollment,
            enrollment_group,
            device_runtime_context: context,
            linked_hubs: linked_hubs.to_vec(),
        }
    }

    /// Measures the round trip to every linked hub, for lowest-latency allocation. A hub
    /// that cannot be reached is left out (never picked by latency) until it answers again.
    pub async fn measure_latencies(&self) -> Result<HashMap<String, Duration>, DpsError> {
        let mut measured = HashMap::new();
        for hub in self.list_linked_hubs().await? {
            let Ok(registry) = self.services.connector.connect(&hub) else {
                continue;
            };
            // The first call may open a connection: the second is the round trip.
            let _ = registry.ping().await;
            match registry.ping().await {
                Ok(rtt) => {
                    measured.insert(hub.name.to_ascii_lowercase(), rtt);
                }
                Err(e) => {
                    tracing::info!(hub = %hub.name, error = %e, "linked hub did not answer the latency probe");
                }
            }
        }
        if let Ok(mut l) = self.runtime.latencies.write() {
            l.clone_from(&measured);
        }
        Ok(measured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(node: Option<&str>, lease_until: Option<DateTime<Utc>>) -> OperationRecord {
        OperationRecord {
            operation_id: "4.x".into(),
            status: RegistrationStatus::Assigning,
            registration_state: None,
            worker: "run-1".into(),
            node: node.map(Into::into),
            lease_until,
            started: Utc::now(),
        }
    }

    #[test]
    fn an_operation_is_abandoned_when_its_runner_is_gone() {
        let now = Utc::now();
        let live = Some(lease_from(now));
        let ran_out = Some(now);
        // This very run is running it.
        assert!(!op(Some("a"), live).abandoned("a", "run-1", now));
        // An earlier run of this node: gone, whatever its lease says.
        assert!(op(Some("a"), live).abandoned("a", "run-2", now));
        // Another node, still renewing its lease, is running it.
        assert!(!op(Some("a"), live).abandoned("b", "run-9", now));
        // Another node whose lease ran out is gone.
        assert!(op(Some("a"), ran_out).abandoned("b", "run-9", now));
        // A record of a server before node ids has no runner left.
        assert!(op(None, None).abandoned("b", "run-9", now));
        let mut done = op(Some("a"), ran_out);
        done.status = RegistrationStatus::Assigned;
        assert!(!done.abandoned("b", "run-9", now));
    }
}

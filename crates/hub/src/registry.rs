//! The device registry: IoT Hub's rules for creating, updating, deleting and listing devices.

use std::collections::HashSet;

use chrono::Utc;
use ironhub_auth::{generate_key, normalize_thumbprint, random_bytes, validate_key};
use ironhub_store::{
    AuthType, Authentication, ConnectionState, DeviceRecord, DeviceStatus, DeviceWrite,
    SymmetricKey, WriteConflict, X509Thumbprint,
};

use crate::model::{
    AuthenticationSpec, BulkError, BulkResult, DeviceSpec, ExportImportDevice, RegistryStatistics,
    ServiceStatistics,
};
use crate::routing::RoutingSource;
use crate::{Hub, HubError};

/// Most devices one `POST /devices` may carry, as IoT Hub.
pub const MAX_BULK_DEVICES: usize = 100;
/// Most devices one `GET /devices` returns, as IoT Hub.
pub const MAX_LIST_DEVICES: usize = 1000;

/// The characters besides ASCII letters and digits a device id may hold. Source: Microsoft's
/// "Understand the identity registry in your IoT hub" (azure-docs
/// `articles/iot-hub/iot-hub-devguide-identity-registry.md`, "Device identity properties"):
/// "`- . % _ * ? ! ( ) , : = @ $ '`. The special characters: `+ #` are not supported." Older
/// versions of that page, and the Event Grid event schemas, list `+ #` (and `;`) as allowed;
/// the device SDKs cannot use `+ #` (MQTT wildcards), so they are refused, as the page now says.
const ID_SPECIALS: &str = "-.%_*?!(),:=@$'";

/// Checks a device id against IoT Hub's rules: 1–128 characters, ASCII letters and digits and
/// `- . % _ * ? ! ( ) , : = @ $ '`.
pub fn validate_device_id(id: &str) -> Result<(), HubError> {
    validate_id("device", id)
}

/// Checks a device's or module's (`what`) id against IoT Hub's rules, which are the same.
pub(crate) fn validate_id(what: &str, id: &str) -> Result<(), HubError> {
    if id.is_empty() {
        return Err(HubError::ArgumentNull(format!(
            "The {what} id must not be empty."
        )));
    }
    if id.len() > 128 {
        return Err(HubError::ArgumentInvalid(format!(
            "The {what} id '{id}' is longer than 128 characters."
        )));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ID_SPECIALS.contains(*c)))
    {
        return Err(HubError::ArgumentInvalid(format!(
            "The {what} id '{id}' contains '{bad}'; a {what} id may contain ASCII letters, digits and {ID_SPECIALS}"
        )));
    }
    Ok(())
}

/// An `If-Match` value with quotes and a weak marker removed; `*` matches any etag.
pub fn normalize_if_match(value: &str) -> String {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
        .to_owned()
}

fn parse_status(text: Option<&str>) -> Result<Option<DeviceStatus>, HubError> {
    match text {
        None => Ok(None),
        Some(s) if s.eq_ignore_ascii_case("enabled") => Ok(Some(DeviceStatus::Enabled)),
        Some(s) if s.eq_ignore_ascii_case("disabled") => Ok(Some(DeviceStatus::Disabled)),
        Some(s) => Err(HubError::ArgumentInvalid(format!(
            "The status '{s}' is not valid; use 'enabled' or 'disabled'."
        ))),
    }
}

fn parse_auth_type(text: Option<&str>) -> Result<AuthType, HubError> {
    let Some(t) = text else {
        return Ok(AuthType::Sas);
    };
    [
        ("sas", AuthType::Sas),
        ("selfSigned", AuthType::SelfSigned),
        ("certificateAuthority", AuthType::CertificateAuthority),
        ("none", AuthType::None),
    ]
    .into_iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(t))
    .map(|(_, kind)| kind)
    .ok_or_else(|| {
        HubError::ArgumentInvalid(format!(
            "The authentication type '{t}' is not valid; use sas, selfSigned, certificateAuthority or none."
        ))
    })
}

/// A supplied value, with `""` treated as absent (SDKs send empty strings for "generate").
fn supplied(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn checked_key(key: &str, which: &str) -> Result<String, HubError> {
    validate_key(key)
        .map(|()| key.to_owned())
        .map_err(|e| HubError::ArgumentInvalid(format!("The {which} key is not valid: {e}.")))
}

fn checked_thumbprint(tp: &str, which: &str) -> Result<String, HubError> {
    normalize_thumbprint(tp).map_err(|e| {
        HubError::ArgumentInvalid(format!("The {which} thumbprint is not valid: {e}."))
    })
}

/// The credentials a spec asks for. `previous` supplies keys a client left out on an update,
/// so that an update never rotates keys by surprise; on create, missing keys are generated.
pub(crate) fn build_authentication(
    spec: Option<&AuthenticationSpec>,
    previous: Option<&Authentication>,
) -> Result<Authentication, HubError> {
    let default = AuthenticationSpec::default();
    let spec = spec.unwrap_or(&default);
    let kind = parse_auth_type(spec.kind.as_deref())?;
    let mut auth = Authentication {
        kind,
        ..Authentication::default()
    };
    match kind {
        AuthType::Sas => {
            let keys = spec.symmetric_key.clone().unwrap_or_default();
            let old = previous
                .filter(|p| p.kind == AuthType::Sas)
                .map(|p| p.symmetric_key.clone())
                .unwrap_or_default();
            let pick = |given: &Option<String>, old: &Option<String>, which| match supplied(given) {
                Some(k) => checked_key(k, which),
                None => Ok(old.clone().unwrap_or_else(|| generate_key(32))),
            };
            auth.symmetric_key = SymmetricKey {
                primary_key: Some(pick(&keys.primary_key, &old.primary_key, "primary")?),
                secondary_key: Some(pick(&keys.secondary_key, &old.secondary_key, "secondary")?),
            };
        }
        AuthType::SelfSigned => {
            let tps = spec.x509_thumbprint.clone().unwrap_or_default();
            let primary = supplied(&tps.primary_thumbprint).ok_or_else(|| {
                HubError::ArgumentInvalid(
                    "A selfSigned device needs authentication.x509Thumbprint.primaryThumbprint."
                        .into(),
                )
            })?;
            auth.x509_thumbprint = X509Thumbprint {
                primary_thumbprint: Some(checked_thumbprint(primary, "primary")?),
                secondary_thumbprint: supplied(&tps.secondary_thumbprint)
                    .map(|t| checked_thumbprint(t, "secondary"))
                    .transpose()?,
            };
        }
        AuthType::CertificateAuthority => {
            // A client that leaves the name out (the Azure SDKs know nothing of it) keeps the
            // CA that issued the device's certificate.
            auth.certificate_authority_name = match supplied(&spec.certificate_authority_name) {
                Some(name) if !crate::issuing_cas::is_ca_name(name) => {
                    return Err(HubError::ArgumentInvalid(format!(
                        "The certificate authority name '{name}' is not valid: use 1 to 64 \
                         letters, digits, '-', '_' or '.'."
                    )));
                }
                Some(name) => Some(name.to_owned()),
                None => previous
                    .filter(|p| p.kind == AuthType::CertificateAuthority)
                    .and_then(|p| p.certificate_authority_name.clone()),
            };
        }
        AuthType::None => {}
    }
    Ok(auth)
}

/// An IoT Edge device's scope, which is its own and never changes: the one it had, or on
/// creation the one given if it names the device (an import of an exported device), else IoT
/// Hub's `ms-azure-iot-edge://{id}-{generation}`. A device that is not an edge device keeps a
/// scope only if one was given (it names its parent; see `scopes`).
fn edge_scope(
    iot_edge: bool,
    given: Option<String>,
    had: Option<&str>,
    id: &str,
    generation_id: &str,
) -> Option<String> {
    let given = given.filter(|s| !s.is_empty());
    if !iot_edge {
        return given;
    }
    if let Some(had) = had {
        return Some(had.to_owned());
    }
    Some(
        given
            .filter(|s| crate::scopes::scope_device_id(s) == Some(id))
            .unwrap_or_else(|| format!("{}{id}-{generation_id}", crate::scopes::EDGE_SCOPE_PREFIX)),
    )
}

pub(crate) fn new_generation_id() -> String {
    // IoT Hub's generation ids are 18-digit decimal numbers.
    let bytes = random_bytes(8);
    let n = u64::from_le_bytes(bytes.try_into().unwrap_or([7; 8]));
    format!("6{:017}", n % 100_000_000_000_000_000)
}

/// The fields a write sets, validated.
struct Validated {
    status: Option<DeviceStatus>,
    status_reason: Option<String>,
    authentication: Option<AuthenticationSpec>,
    iot_edge: Option<bool>,
    device_scope: Option<String>,
    parent_scopes: Option<Vec<String>>,
}

impl Validated {
    fn from_spec(spec: &DeviceSpec) -> Result<Self, HubError> {
        Validated {
            status: parse_status(spec.status.as_deref())?,
            status_reason: spec.status_reason.clone(),
            authentication: spec.authentication.clone(),
            iot_edge: spec.capabilities.as_ref().and_then(|c| c.iot_edge),
            device_scope: spec.device_scope.clone(),
            parent_scopes: spec.parent_scopes.clone(),
        }
        .without_nul()
    }

    fn from_import(item: &ExportImportDevice) -> Result<Self, HubError> {
        Validated {
            status: parse_status(item.status.as_deref())?,
            status_reason: item.status_reason.clone(),
            authentication: item.authentication.clone(),
            iot_edge: item.capabilities.as_ref().and_then(|c| c.iot_edge),
            device_scope: item.device_scope.clone(),
            parent_scopes: item.parent_scopes.clone(),
        }
        .without_nul()
    }

    /// Itself, unless a free-text field holds the NUL character (see [`crate::nul`]).
    fn without_nul(self) -> Result<Self, HubError> {
        let texts = serde_json::json!([
            self.status_reason,
            self.device_scope,
            self.parent_scopes,
            self.authentication
        ]);
        crate::nul::reject_nul(&texts, "the device")?;
        Ok(self)
    }

    /// A new device with these fields.
    fn create(self, id: &str) -> Result<DeviceRecord, HubError> {
        let status = self.status.unwrap_or_default();
        let generation_id = new_generation_id();
        let iot_edge = self.iot_edge.unwrap_or(false);
        Ok(DeviceRecord {
            device_id: id.to_owned(),
            device_scope: edge_scope(iot_edge, self.device_scope, None, id, &generation_id),
            generation_id,
            etag: String::new(),
            status,
            status_reason: self.status_reason,
            status_updated_time: (status == DeviceStatus::Disabled).then(Utc::now),
            connection_state: ConnectionState::Disconnected,
            connection_node: None,
            connection_state_updated_time: None,
            last_activity_time: None,
            cloud_to_device_message_count: 0,
            authentication: build_authentication(self.authentication.as_ref(), None)?,
            iot_edge,
            parent_scopes: self.parent_scopes.unwrap_or_default(),
        })
    }

    /// `current` updated with these fields. A PUT replaces the writable fields; runtime fields
    /// (generation, connection state, counters) are kept.
    fn update(self, current: &DeviceRecord) -> Result<DeviceRecord, HubError> {
        let mut next = current.clone();
        let status = self.status.unwrap_or(current.status);
        if status != current.status {
            next.status_updated_time = Some(Utc::now());
        }
        next.status = status;
        next.status_reason = self.status_reason;
        next.authentication =
            build_authentication(self.authentication.as_ref(), Some(&current.authentication))?;
        next.iot_edge = self.iot_edge.unwrap_or(false);
        next.device_scope = edge_scope(
            next.iot_edge,
            self.device_scope,
            current.device_scope.as_deref().filter(|_| current.iot_edge),
            &current.device_id,
            &current.generation_id,
        );
        next.parent_scopes = self.parent_scopes.unwrap_or_default();
        Ok(next)
    }
}

/// Whether an update ends the device's current connection, as IoT Hub does when a device is
/// disabled or its credentials change.
fn revokes(before: &DeviceRecord, after: &DeviceRecord) -> bool {
    after.status == DeviceStatus::Disabled || before.authentication != after.authentication
}

fn conflict_error(conflict: WriteConflict, id: &str, etag: &str) -> HubError {
    match conflict {
        WriteConflict::AlreadyExists => HubError::DeviceAlreadyExists(id.to_owned()),
        WriteConflict::NotFound => HubError::DeviceNotFound(id.to_owned()),
        WriteConflict::EtagMismatch => HubError::PreconditionFailed(etag.to_owned()),
    }
}

/// A device write the hub's rules allowed, not yet applied: see [`Hub::prepare_put_device`].
#[derive(Debug, Clone)]
pub struct PreparedDevice {
    write: DeviceWrite,
    /// The device the write replaces, as read.
    before: Option<DeviceRecord>,
    /// When the request began (for its diagnostic record).
    pub(crate) started: std::time::Instant,
}

impl PreparedDevice {
    /// The write to apply.
    pub fn write(&self) -> &DeviceWrite {
        &self.write
    }

    /// Whether the write creates the device.
    pub fn creates(&self) -> bool {
        matches!(self.write, DeviceWrite::Create(_))
    }
}

/// How one bulk entry is applied (IoT Hub's `importMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImportMode {
    Create,
    CreateOrUpdate,
    Update,
    UpdateIfMatchETag,
    Delete,
    DeleteIfMatchETag,
}

impl ImportMode {
    fn parse(text: Option<&str>) -> Result<Self, HubError> {
        use ImportMode::*;
        let Some(t) = text else {
            return Ok(CreateOrUpdate);
        };
        [
            ("create", Create),
            ("createOrUpdate", CreateOrUpdate),
            ("update", Update),
            ("updateIfMatchETag", UpdateIfMatchETag),
            ("delete", Delete),
            ("deleteIfMatchETag", DeleteIfMatchETag),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(t))
        .map(|(_, m)| m)
        .ok_or_else(|| {
            HubError::ArgumentInvalid(format!(
                "The importMode '{t}' is not supported; use create, createOrUpdate, update, \
                 updateIfMatchETag, delete or deleteIfMatchETag."
            ))
        })
    }
}

impl Hub {
    /// `GET /devices/{id}`: one device (a registry operation, throttled as one).
    pub async fn get_device(&self, id: &str) -> Result<DeviceRecord, HubError> {
        self.admit(crate::throttle::Operation::Registry, Some(id))?;
        self.device_record(id).await
    }

    /// One device, for the hub's own rules (not throttled).
    pub(crate) async fn device_record(&self, id: &str) -> Result<DeviceRecord, HubError> {
        self.store
            .get_device(id)
            .await?
            .ok_or_else(|| HubError::DeviceNotFound(id.to_owned()))
    }

    /// `PUT /devices/{id}`: creates the device when there is no `If-Match`, updates it when
    /// there is one (`*` or its etag). Nothing is written when the request is refused.
    pub(crate) async fn put_device_unobserved(
        &self,
        id: &str,
        spec: &DeviceSpec,
        if_match: Option<&str>,
    ) -> Result<DeviceRecord, HubError> {
        let prepared = self.prepare_put_device(id, spec, if_match).await?;
        let written = match self
            .store
            .write_devices(vec![prepared.write.clone()])
            .await?
        {
            Ok(mut done) => Ok(done.pop().flatten()),
            Err(failed) => Err(failed.first().map_or(WriteConflict::NotFound, |(_, c)| *c)),
        };
        self.finish_put_device_unobserved(prepared, written).await
    }

    /// The first half of `PUT /devices/{id}`: the request checked by the hub's rules (it is
    /// admitted by the throttle) and turned into the write to apply, which nothing has
    /// written yet. A caller that writes it in one transaction with records of its own (DPS
    /// with a device's registration record, through the store the hub uses: see
    /// [`Hub::shares_store`]) hands the outcome to [`Hub::finish_put_device`].
    pub async fn prepare_put_device(
        &self,
        id: &str,
        spec: &DeviceSpec,
        if_match: Option<&str>,
    ) -> Result<PreparedDevice, HubError> {
        let started = std::time::Instant::now();
        self.admit(crate::throttle::Operation::Registry, Some(id))?;
        validate_device_id(id)?;
        if let Some(body_id) = spec.device_id.as_deref()
            && body_id != id
        {
            return Err(HubError::ArgumentInvalid(format!(
                "The device id in the body ('{body_id}') does not match the one in the URL ('{id}')."
            )));
        }
        let fields = Validated::from_spec(spec)?;
        let if_match = if_match.map(normalize_if_match);
        let mut before = None;
        // A create reads nothing first: the store refuses a device that exists
        // (`DeviceAlreadyExists`, as the read would have).
        let current = match if_match {
            None => None,
            Some(_) => self.store.get_device(id).await?,
        };
        let write = match (current, if_match) {
            (_, None) => {
                let scope_given = fields.device_scope.is_some();
                let mut record = fields.create(id)?;
                self.settle_scopes(&mut record, None, scope_given).await?;
                DeviceWrite::Create(record)
            }
            (None, Some(_)) => return Err(HubError::DeviceNotFound(id.to_owned())),
            (Some(current), Some(tag)) => {
                if tag != "*" && tag != current.etag {
                    return Err(HubError::PreconditionFailed(tag));
                }
                let scope_given = fields.device_scope.is_some();
                let mut record = fields.update(&current)?;
                self.settle_scopes(&mut record, Some(&current), scope_given)
                    .await?;
                // Compare-and-swap on what was read, so a concurrent write is not lost: what
                // the write replaces is `current`, so it is what revocation compares with.
                let if_match = Some(current.etag.clone());
                before = Some(current);
                DeviceWrite::Replace { record, if_match }
            }
        };
        Ok(PreparedDevice {
            write,
            before,
            started,
        })
    }

    /// The second half of `PUT /devices/{id}` (see [`Hub::prepare_put_device`]), once its
    /// write was applied (`written`) or refused: what follows a written device (its lifecycle
    /// event, an IoT Edge device's modules, the end of a connection whose credentials
    /// changed), or the refusal as the hub's error.
    pub(crate) async fn finish_put_device_unobserved(
        &self,
        prepared: PreparedDevice,
        written: Result<Option<DeviceRecord>, WriteConflict>,
    ) -> Result<DeviceRecord, HubError> {
        let PreparedDevice { write, before, .. } = prepared;
        let id = write.device_id();
        let etag = match &write {
            DeviceWrite::Replace { if_match, .. } => if_match.clone().unwrap_or_default(),
            _ => String::new(),
        };
        let written = written
            .map_err(|c| conflict_error(c, id, &etag))?
            .ok_or_else(|| HubError::ServerError("the store wrote no device".into()))?;
        if matches!(write, DeviceWrite::Create(_)) {
            self.emit_lifecycle(id, None, true, self.twin_json(id))
                .await;
        }
        if written.iot_edge {
            self.ensure_edge_modules(&written).await?;
            self.kick_configurations();
        }
        if let Some(before) = before
            && revokes(&before, &written)
        {
            self.revoke(id).await;
        }
        Ok(written)
    }

    /// Whether the hub keeps its devices in `store` (the very same store object), so that a
    /// caller may write a [`PreparedDevice`] there together with records of its own.
    pub fn shares_store(&self, store: &std::sync::Arc<dyn ironhub_store::Store>) -> bool {
        std::ptr::addr_eq(
            std::sync::Arc::as_ptr(&self.store),
            std::sync::Arc::as_ptr(store),
        )
    }

    /// `DELETE /devices/{id}`, with an optional `If-Match`.
    pub(crate) async fn delete_device_unobserved(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), HubError> {
        self.admit(crate::throttle::Operation::Registry, Some(id))?;
        let write = DeviceWrite::Delete {
            id: id.to_owned(),
            if_match: if_match.map(normalize_if_match),
        };
        // The twin as it was, read only when a route takes lifecycle events.
        let before = if self.routes_take(RoutingSource::DeviceLifecycleEvents).await {
            self.twin_json(id).await
        } else {
            None
        };
        let modules = self.store.list_modules(id).await?;
        self.write_one(write).await?;
        self.revoke(id).await;
        // Its modules went with it, and so do their connections.
        for m in modules {
            self.revoke(&format!("{id}/{}", m.module_id)).await;
        }
        if let Some(twin) = before {
            self.emit_lifecycle(id, None, false, async { Some(twin) })
                .await;
        }
        Ok(())
    }

    /// Closes the device's connection, if it has one (it was deleted, disabled or re-keyed).
    pub(crate) async fn revoke(&self, id: &str) {
        let _ = self.bus.send(id, ironhub_store::BusMessage::Revoked).await;
    }

    /// Applies one write; the device as written (`None` for a delete).
    async fn write_one(&self, write: DeviceWrite) -> Result<Option<DeviceRecord>, HubError> {
        let id = write.device_id().to_owned();
        let etag = match &write {
            DeviceWrite::Replace { if_match, .. } | DeviceWrite::Delete { if_match, .. } => {
                if_match.clone().unwrap_or_default()
            }
            DeviceWrite::Create(_) => String::new(),
        };
        match self.store.write_devices(vec![write]).await? {
            Ok(mut done) => Ok(done.pop().flatten()),
            Err(failed) => Err(failed
                .first()
                .map(|(_, c)| conflict_error(*c, &id, &etag))
                .unwrap_or_else(|| HubError::ServerError("the write failed".into()))),
        }
    }

    /// `GET /devices?top=N`: at most `top` devices (IoT Hub caps it at 1000), ordered by id.
    pub async fn list_devices(&self, top: Option<usize>) -> Result<Vec<DeviceRecord>, HubError> {
        self.admit(crate::throttle::Operation::Registry, None)?;
        let top = top.unwrap_or(MAX_LIST_DEVICES).min(MAX_LIST_DEVICES);
        Ok(self.store.list_devices(None, top).await?)
    }

    /// `GET /statistics/devices`.
    pub async fn registry_statistics(&self) -> Result<RegistryStatistics, HubError> {
        let c = self.store.device_counts().await?;
        Ok(RegistryStatistics {
            total_device_count: c.total,
            enabled_device_count: c.enabled,
            disabled_device_count: c.disabled,
        })
    }

    /// `GET /statistics/service`.
    pub async fn service_statistics(&self) -> Result<ServiceStatistics, HubError> {
        let c = self.store.device_counts().await?;
        Ok(ServiceStatistics {
            connected_device_count: c.connected,
        })
    }

    /// `POST /devices`: up to 100 creates, updates and deletes, applied all together or not at
    /// all. `Err` is for a request that is malformed as a whole.
    pub async fn bulk(&self, items: &[ExportImportDevice]) -> Result<BulkResult, HubError> {
        self.admit(crate::throttle::Operation::Registry, None)?;
        if items.is_empty() {
            return Err(HubError::ArgumentNull("The request has no devices.".into()));
        }
        if items.len() > MAX_BULK_DEVICES {
            return Err(HubError::ArgumentInvalid(format!(
                "A bulk operation takes at most {MAX_BULK_DEVICES} devices, not {}.",
                items.len()
            )));
        }
        self.apply_bulk(items).await
    }

    /// Applies bulk entries all together or not at all (`POST /devices` once its request is
    /// admitted and checked; one row of an import job).
    pub(crate) async fn apply_bulk(
        &self,
        items: &[ExportImportDevice],
    ) -> Result<BulkResult, HubError> {
        let mut seen = HashSet::new();
        let mut writes = Vec::with_capacity(items.len());
        let mut revoked = Vec::new();
        let mut errors = Vec::new();
        for item in items {
            let id = item.id.clone().unwrap_or_default();
            if !seen.insert(id.clone()) {
                return Err(HubError::DeviceDefinedMultipleTimes(format!(
                    "The device '{id}' appears more than once in the request."
                )));
            }
            match self.bulk_write(&id, item).await {
                Ok((w, revoke)) => {
                    if revoke {
                        revoked.push(id);
                    }
                    writes.push(w);
                }
                Err(e) => errors.push(BulkError {
                    device_id: id,
                    error_code: e.name().to_owned(),
                    error_status: e.to_string(),
                }),
            }
        }
        if errors.is_empty() {
            // Lifecycle events, when a route takes them: the twins of the devices to delete
            // are read before they go.
            let lifecycle = self.routes_take(RoutingSource::DeviceLifecycleEvents).await;
            let mut deleted_twins = Vec::new();
            if lifecycle {
                for w in &writes {
                    if let DeviceWrite::Delete { id, .. } = w {
                        deleted_twins.push((id.clone(), self.twin_json(id).await));
                    }
                }
            }
            match self.store.write_devices(writes.clone()).await? {
                Ok(written) => {
                    for id in revoked {
                        self.revoke(&id).await;
                    }
                    for device in written.iter().flatten().filter(|d| d.iot_edge) {
                        self.ensure_edge_modules(device).await?;
                        self.kick_configurations();
                    }
                    if lifecycle {
                        for w in &writes {
                            if let DeviceWrite::Create(record) = w {
                                let id = &record.device_id;
                                self.emit_lifecycle(id, None, true, self.twin_json(id))
                                    .await;
                            }
                        }
                        for (id, twin) in deleted_twins {
                            self.emit_lifecycle(&id, None, false, async { twin }).await;
                        }
                    }
                }
                Err(failed) => {
                    for (i, conflict) in failed {
                        let id = writes[i].device_id().to_owned();
                        let etag = items[i].e_tag.clone().unwrap_or_default();
                        let e = conflict_error(conflict, &id, &etag);
                        errors.push(BulkError {
                            device_id: id,
                            error_code: e.name().to_owned(),
                            error_status: e.to_string(),
                        });
                    }
                }
            }
        }
        Ok(BulkResult {
            is_successful: errors.is_empty(),
            errors,
            warnings: vec![],
        })
    }

    /// The write for one bulk entry, and whether it ends the device's connection.
    async fn bulk_write(
        &self,
        id: &str,
        item: &ExportImportDevice,
    ) -> Result<(DeviceWrite, bool), HubError> {
        validate_device_id(id)?;
        let mode = ImportMode::parse(item.import_mode.as_deref())?;
        let fields = Validated::from_import(item)?;
        let etag = item.e_tag.as_deref().map(normalize_if_match);
        let needs_etag = || {
            etag.clone().ok_or_else(|| {
                HubError::ArgumentNull(format!(
                    "The device '{id}' needs an eTag for this importMode."
                ))
            })
        };
        let current = self.store.get_device(id).await?;
        let replace = async |current: DeviceRecord,
                             fields: Validated|
               -> Result<(DeviceWrite, bool), HubError> {
            let scope_given = fields.device_scope.is_some();
            let mut record = fields.update(&current)?;
            self.settle_scopes(&mut record, Some(&current), scope_given)
                .await?;
            let revoke = revokes(&current, &record);
            Ok((
                DeviceWrite::Replace {
                    record,
                    if_match: Some(current.etag),
                },
                revoke,
            ))
        };
        match (mode, current) {
            (ImportMode::Delete, _) => Ok((
                DeviceWrite::Delete {
                    id: id.to_owned(),
                    if_match: None,
                },
                true,
            )),
            (ImportMode::DeleteIfMatchETag, _) => Ok((
                DeviceWrite::Delete {
                    id: id.to_owned(),
                    if_match: Some(needs_etag()?),
                },
                true,
            )),
            (ImportMode::Create | ImportMode::CreateOrUpdate, None) => {
                let scope_given = fields.device_scope.is_some();
                let mut record = fields.create(id)?;
                self.settle_scopes(&mut record, None, scope_given).await?;
                Ok((DeviceWrite::Create(record), false))
            }
            (ImportMode::Create, Some(_)) => Err(HubError::DeviceAlreadyExists(id.into())),
            (ImportMode::Update | ImportMode::UpdateIfMatchETag, None) => {
                Err(HubError::DeviceNotFound(id.into()))
            }
            (ImportMode::CreateOrUpdate | ImportMode::Update, Some(current)) => {
                replace(current, fields).await
            }
            (ImportMode::UpdateIfMatchETag, Some(current)) => {
                let tag = needs_etag()?;
                if tag != "*" && tag != current.etag {
                    return Err(HubError::PreconditionFailed(tag));
                }
                replace(current, fields).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_rules() {
        for ok in ["d1", "a-b.c%d_e*f?g!h(i)j,k:l=m@n$o'p", &"x".repeat(128)] {
            validate_device_id(ok).unwrap();
        }
        for bad in ["", "a b", "a/b", "a#b", "a+b", "é", &"x".repeat(129)] {
            assert!(
                validate_device_id(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(validate_device_id("").unwrap_err().code(), 400_005);
        assert_eq!(validate_device_id("a b").unwrap_err().code(), 400_004);
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(normalize_if_match("\"*\""), "*");
        assert_eq!(normalize_if_match("*"), "*");
        assert_eq!(normalize_if_match("\"MA==\""), "MA==");
        assert_eq!(normalize_if_match("W/\"MA==\""), "MA==");
        assert_eq!(normalize_if_match(" MA== "), "MA==");
    }

    #[test]
    fn generation_ids_look_like_iot_hubs() {
        let g = new_generation_id();
        assert_eq!(g.len(), 18);
        assert!(g.chars().all(|c| c.is_ascii_digit()));
        assert_ne!(g, new_generation_id());
    }
}

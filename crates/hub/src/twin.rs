//! Device twins: tags and desired properties set by services, reported properties set by the
//! device, each with a `$version` and per-property `$metadata`, and IoT Hub's limits.

use base64::Engine as _;
use chrono::Utc;
use ironhub_store::{BusMessage, DeviceRecord, TwinRecord, WriteConflict};
use serde_json::{Map, Value, json};

use crate::model::{Capabilities, Thumbprint, Twin, TwinProperties, azure_time};
use crate::routing::hub_events::TwinOp;
use crate::{Hub, HubError};

/// IoT Hub's limits (Azure docs, "Understand and use device twins in IoT Hub", sections
/// "Tags and properties format" and "Device twin size").
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
pub const MAX_PROPERTIES_BYTES: usize = 32 * 1024;
pub const MAX_DEPTH: usize = 10;
pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_STRING_BYTES: usize = 4 * 1024;
const MAX_SAFE_INTEGER: i64 = 4_503_599_627_370_495;

/// Which part of a twin a document is, for limits and messages.
#[derive(Debug, Clone, Copy)]
enum Section {
    Tags,
    Desired,
    Reported,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Tags => "Tags",
            Section::Desired => "Properties.Desired",
            Section::Reported => "Properties.Reported",
        }
    }

    fn limit(self) -> usize {
        match self {
            Section::Tags => MAX_TAGS_BYTES,
            Section::Desired | Section::Reported => MAX_PROPERTIES_BYTES,
        }
    }
}

fn invalid(msg: String) -> HubError {
    HubError::ArgumentInvalid(msg)
}

/// Checks keys, depth, strings and numbers of a patch or document (nulls allowed: they delete).
fn validate(value: &Map<String, Value>, section: Section, depth: usize) -> Result<(), HubError> {
    if depth > MAX_DEPTH {
        return Err(invalid(format!(
            "{} is nested deeper than {MAX_DEPTH} levels.",
            section.name()
        )));
    }
    for (key, v) in value {
        if key.is_empty()
            || key.len() > MAX_KEY_BYTES
            || key
                .chars()
                .any(|c| c.is_control() || matches!(c, '.' | '$' | ' '))
        {
            return Err(invalid(format!(
                "The key '{key}' in {} is not valid: keys are 1 to {MAX_KEY_BYTES} bytes, without '.', '$', spaces or control characters.",
                section.name()
            )));
        }
        validate_value(v, section, depth)?;
    }
    Ok(())
}

fn validate_value(v: &Value, section: Section, depth: usize) -> Result<(), HubError> {
    match v {
        Value::Object(o) => validate(o, section, depth + 1),
        Value::Array(items) => items
            .iter()
            .try_for_each(|i| validate_value(i, section, depth + 1)),
        Value::String(s) if s.len() > MAX_STRING_BYTES => Err(invalid(format!(
            "A string value in {} is longer than {MAX_STRING_BYTES} bytes.",
            section.name()
        ))),
        // No engine's JSON column need hold it (PostgreSQL's `jsonb` cannot), and IoT Hub
        // refuses it too: one rule here, for every engine.
        Value::String(s) if s.contains('\0') => Err(invalid(format!(
            "A string value in {} contains the NUL character (\\u0000).",
            section.name()
        ))),
        Value::Number(n)
            if n.as_i64()
                .is_some_and(|i| !(-MAX_SAFE_INTEGER - 1..=MAX_SAFE_INTEGER).contains(&i)) =>
        {
            Err(invalid(format!(
                "An integer in {} is out of range.",
                section.name()
            )))
        }
        _ => Ok(()),
    }
}

/// IoT Hub's size accounting: UTF-8 key lengths plus values (numbers 8, booleans 4, strings
/// their length without control characters).
fn size(value: &Value) -> usize {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 4,
        Value::Number(_) => 8,
        Value::String(s) => s
            .chars()
            .filter(|c| !c.is_control())
            .map(char::len_utf8)
            .sum(),
        Value::Array(items) => items.iter().map(size).sum(),
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + size(v)).sum(),
    }
}

fn check_size(doc: &Map<String, Value>, section: Section) -> Result<(), HubError> {
    let bytes: usize = doc.iter().map(|(k, v)| k.len() + size(v)).sum();
    if bytes > section.limit() {
        return Err(invalid(format!(
            "'{}' size should be less than {} bytes.",
            section.name(),
            section.limit()
        )));
    }
    Ok(())
}

/// Merges `patch` into `doc` (JSON merge patch: `null` removes) and keeps `metadata` in step:
/// every property touched gets `$lastUpdated` (and `$lastUpdatedVersion`, when given).
fn merge(
    doc: &mut Map<String, Value>,
    metadata: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    now: &str,
    version: Option<u64>,
) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                doc.remove(key);
                metadata.remove(key);
            }
            Value::Object(sub) => {
                let target = doc.entry(key.clone()).or_insert_with(|| json!({}));
                if !target.is_object() {
                    *target = json!({});
                }
                let meta = metadata.entry(key.clone()).or_insert_with(|| json!({}));
                if !meta.is_object() {
                    *meta = json!({});
                }
                if let (Value::Object(t), Value::Object(m)) = (target, meta) {
                    merge(t, m, sub, now, version);
                    stamp(m, now, version);
                }
            }
            leaf => {
                doc.insert(key.clone(), leaf.clone());
                let mut m = Map::new();
                stamp(&mut m, now, version);
                metadata.insert(key.clone(), Value::Object(m));
            }
        }
    }
}

fn stamp(meta: &mut Map<String, Value>, now: &str, version: Option<u64>) {
    meta.insert("$lastUpdated".into(), json!(now));
    if let Some(v) = version {
        meta.insert("$lastUpdatedVersion".into(), json!(v));
    }
}

/// What a replacement of `old` by `new` merges into the twin and sends to the device: new
/// values, and `null` for every key that disappeared, at any depth (a merge patch keeps what
/// it does not name, so a layered deployment's module removed from `modules` must be named).
pub(crate) fn replacement_patch(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
) -> Map<String, Value> {
    let mut patch: Map<String, Value> = new
        .iter()
        .map(|(key, value)| {
            let value = match (old.get(key), value) {
                (Some(Value::Object(was)), Value::Object(is)) => {
                    Value::Object(replacement_patch(was, is))
                }
                _ => value.clone(),
            };
            (key.clone(), value)
        })
        .collect();
    for key in old.keys() {
        if !new.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    patch
}

fn object(value: Option<&Value>, what: &str) -> Result<Map<String, Value>, HubError> {
    match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(_) => Err(invalid(format!("{what} must be a JSON object."))),
    }
}

/// What an update does to a section of the twin (`tags` or `properties.desired`).
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// Merge these values (`null` values remove their keys).
    Merge(Map<String, Value>),
    /// `null` for the whole section: remove every key, as IoT Hub does.
    Clear,
}

impl Change {
    /// The section as a document gives it: absent, `null`, or an object.
    fn of(value: Option<&Value>, what: &str) -> Result<Option<Self>, HubError> {
        match value {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(Change::Clear)),
            Some(v) => object(Some(v), what).map(|o| Some(Change::Merge(o))),
        }
    }
}

/// `properties.desired` of a twin document. What a service cannot write is ignored, as IoT Hub
/// ignores it, so that the twin `GET /twins/{id}` returned can be sent back as it is
/// (`replace_twin(id, get_twin(id))`, `az iot hub device-twin replace -j <show's output>`):
/// `properties.reported` (the device's), desired's own `$metadata` and `$version` (the hub's),
/// and every top-level field but `tags` and `properties` (`deviceId`, `etag`, `version`,
/// `status`, … are never read).
fn desired_of(doc: &Value) -> Result<Option<Change>, HubError> {
    let Some(props) = doc.get("properties") else {
        return Ok(None);
    };
    let props = props
        .as_object()
        .ok_or_else(|| invalid("properties must be a JSON object.".into()))?;
    let mut desired = Change::of(props.get("desired"), "properties.desired")?;
    if let Some(Change::Merge(d)) = &mut desired {
        d.remove("$metadata");
        d.remove("$version");
    }
    Ok(desired)
}

fn section_with_version(
    doc: &Map<String, Value>,
    metadata: Option<&Map<String, Value>>,
    version: u64,
    now: &str,
) -> Map<String, Value> {
    let mut out = doc.clone();
    if let Some(meta) = metadata {
        let mut meta = meta.clone();
        meta.insert("$lastUpdated".into(), json!(now));
        out.insert("$metadata".into(), Value::Object(meta));
    }
    out.insert("$version".into(), json!(version));
    out
}

pub(crate) fn empty_twin(device_id: &str) -> TwinRecord {
    TwinRecord {
        device_id: device_id.to_owned(),
        desired_version: 1,
        reported_version: 1,
        version: 1,
        ..TwinRecord::default()
    }
}

/// The twin's etag. A twin that was never written (every device has one from its creation,
/// as in IoT Hub) has an etag of its own too: one made from the device's generation id, which
/// no store etag (a counter) can equal, and which changes when the device is created again.
pub fn twin_etag(device: &DeviceRecord, twin: &TwinRecord) -> String {
    if twin.etag.is_empty() {
        base64::engine::general_purpose::STANDARD.encode(format!("twin:{}", device.generation_id))
    } else {
        twin.etag.clone()
    }
}

/// The twin as `GET /twins/{id}` returns it (IoT Hub's `Twin`: the twin's own fields, and the
/// device's status, authentication, capabilities and scopes).
pub fn twin_view(device: &DeviceRecord, twin: &TwinRecord) -> Twin {
    let updated = twin_updated(twin);
    Twin {
        device_id: device.device_id.clone(),
        etag: twin_etag(device, twin),
        device_etag: device.etag.clone(),
        status: device.status,
        status_reason: device.status_reason.clone(),
        status_update_time: azure_time(device.status_updated_time),
        connection_state: device.connection_state,
        last_activity_time: azure_time(device.last_activity_time),
        cloud_to_device_message_count: device.cloud_to_device_message_count,
        authentication_type: device.authentication.kind,
        x509_thumbprint: Thumbprint {
            primary_thumbprint: device
                .authentication
                .x509_thumbprint
                .primary_thumbprint
                .clone(),
            secondary_thumbprint: device
                .authentication
                .x509_thumbprint
                .secondary_thumbprint
                .clone(),
        },
        model_id: twin.model_id.clone().unwrap_or_default(),
        module_id: None,
        version: twin.version,
        tags: twin.tags.clone(),
        properties: TwinProperties {
            desired: section_with_version(
                &twin.desired,
                Some(&twin.desired_metadata),
                twin.desired_version,
                &updated.0,
            ),
            reported: section_with_version(
                &twin.reported,
                Some(&twin.reported_metadata),
                twin.reported_version,
                &updated.1,
            ),
        },
        capabilities: Capabilities {
            iot_edge: device.iot_edge,
        },
        device_scope: device.device_scope.clone(),
        parent_scopes: device.parent_scopes.clone(),
        other: configurations_field(twin),
    }
}

/// The twin's `configurations` (see `configurations::apply`), when any targets it.
fn configurations_field(twin: &TwinRecord) -> Map<String, Value> {
    let mut other = Map::new();
    if !twin.configurations.is_empty() {
        other.insert(
            "configurations".into(),
            Value::Object(crate::configurations::apply::visible_entries(
                &twin.configurations,
            )),
        );
    }
    other
}

/// When desired and reported last changed (from their metadata), as IoT Hub renders time.
fn twin_updated(twin: &TwinRecord) -> (String, String) {
    let latest = |meta: &Map<String, Value>| {
        meta.values()
            .filter_map(|m| m.get("$lastUpdated").and_then(Value::as_str))
            .max()
            .map_or_else(|| azure_time(None), str::to_owned)
    };
    (
        latest(&twin.desired_metadata),
        latest(&twin.reported_metadata),
    )
}

/// A desired properties patch to push to a device, with its `$version`.
pub(crate) type DesiredPush = (u64, Map<String, Value>);

/// A service's `PATCH` (`replace == false`) or `PUT` (`replace == true`) of a twin's tags and
/// desired properties applied to `current` (device's or module's): the next twin, and the
/// desired patch with its version to push to the device, if desired properties changed.
/// `now` (an [`azure_time`]) stamps the changed properties' `$metadata`.
pub(crate) fn service_update(
    current: &TwinRecord,
    doc: &Value,
    replace: bool,
    now: &str,
) -> Result<(TwinRecord, Option<DesiredPush>), HubError> {
    if !doc.is_object() {
        return Err(invalid("The twin must be a JSON object.".into()));
    }
    let tags = Change::of(doc.get("tags"), "tags")?;
    let desired = desired_of(doc)?;
    if let Some(Change::Merge(t)) = &tags {
        validate(t, Section::Tags, 1)?;
    }
    if let Some(Change::Merge(d)) = &desired {
        validate(d, Section::Desired, 1)?;
    }
    let mut next = current.clone();
    let mut pushed = None;
    match tags {
        Some(Change::Merge(t)) => {
            let mut unused = Map::new();
            if replace {
                next.tags = Map::new();
            }
            merge(&mut next.tags, &mut unused, &t, now, None);
            check_size(&next.tags, Section::Tags)?;
        }
        Some(Change::Clear) => next.tags = Map::new(),
        None if replace => next.tags = Map::new(),
        None => {}
    }
    let desired_patch = match (desired, replace) {
        (Some(Change::Merge(d)), false) => Some(d),
        (Some(Change::Merge(d)), true) => Some(replacement_patch(&current.desired, &d)),
        (Some(Change::Clear), _) | (None, true) => {
            Some(replacement_patch(&current.desired, &Map::new()))
        }
        (None, false) => None,
    };
    if let Some(patch) = desired_patch.filter(|p| !p.is_empty()) {
        next.desired_version += 1;
        let v = next.desired_version;
        merge(
            &mut next.desired,
            &mut next.desired_metadata,
            &patch,
            now,
            Some(v),
        );
        check_size(&next.desired, Section::Desired)?;
        pushed = Some((v, patch));
    }
    next.version += 1;
    Ok((next, pushed))
}

impl Hub {
    pub(crate) async fn load_twin(
        &self,
        device_id: &str,
    ) -> Result<(DeviceRecord, TwinRecord), HubError> {
        let device = self.device_record(device_id).await?;
        let twin = self
            .store
            .get_twin(device_id)
            .await?
            .unwrap_or_else(|| empty_twin(device_id));
        Ok((device, twin))
    }

    pub(crate) async fn save_twin(
        &self,
        twin: TwinRecord,
        if_match: Option<String>,
    ) -> Result<TwinRecord, HubError> {
        let id = twin.device_id.clone();
        let tag = if_match.clone().unwrap_or_default();
        match self.store.put_twin(twin, if_match).await? {
            Ok(t) => Ok(t),
            Err(WriteConflict::NotFound) => Err(HubError::DeviceNotFound(id)),
            Err(_) => Err(HubError::PreconditionFailed(tag)),
        }
    }

    /// `GET /twins/{id}` (a service twin operation, throttled as one).
    pub(crate) async fn get_twin_unobserved(&self, device_id: &str) -> Result<Twin, HubError> {
        self.admit(crate::throttle::Operation::ServiceTwin, Some(device_id))?;
        self.twin_of(device_id).await
    }

    /// A device's twin, for the hub's own rules (not throttled).
    pub(crate) async fn twin_of(&self, device_id: &str) -> Result<Twin, HubError> {
        let (device, twin) = self.load_twin(device_id).await?;
        Ok(twin_view(&device, &twin))
    }

    /// `PATCH /twins/{id}` (`replace == false`) or `PUT /twins/{id}` (`replace == true`): tags and
    /// desired properties. A change of desired properties is pushed to the device.
    pub(crate) async fn update_twin_unobserved(
        &self,
        device_id: &str,
        doc: &Value,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<Twin, HubError> {
        self.admit(crate::throttle::Operation::ServiceTwin, Some(device_id))?;
        let if_match = if_match.map(crate::registry::normalize_if_match);
        let (device, current) = self.load_twin(device_id).await?;
        if let Some(tag) = &if_match
            && tag != "*"
            && *tag != twin_etag(&device, &current)
        {
            return Err(HubError::PreconditionFailed(tag.clone()));
        }
        // One time for the stored `$metadata` and the change notification.
        let now = azure_time(Some(Utc::now()));
        let (next, pushed) = service_update(&current, doc, replace, &now)?;
        // Compare-and-swap on what was read (the client's etag was checked above).
        let saved = self.save_twin(next, Some(current.etag.clone())).await?;
        let notification = service_change_notification(&current, &saved, pushed.as_ref(), &now);
        self.emit_twin_change(device_id, None, TwinOp::of(replace), notification)
            .await;
        self.push_desired(device_id, pushed).await;
        if saved.tags != current.tags {
            // The twin may have moved in or out of a configuration's target.
            self.kick_configurations();
        }
        Ok(twin_view(&device, &saved))
    }

    /// Sends a desired properties patch to the device or module connected as `key` (see
    /// [`crate::DeviceIdentity::key`]). Not queued for one that is offline: it reads its twin
    /// when it reconnects.
    pub(crate) async fn push_desired(&self, key: &str, pushed: Option<DesiredPush>) {
        if let Some((version, mut patch)) = pushed {
            patch.insert("$version".into(), json!(version));
            let body = serde_json::to_vec(&patch).unwrap_or_default();
            let _ = self
                .bus
                .send(key, BusMessage::DesiredPatch { version, body })
                .await;
        }
    }

    /// A device's `GET` of its twin: `{"desired": {…, "$version"}, "reported": {…, "$version"}}`.
    pub(crate) async fn device_twin_unobserved(&self, device_id: &str) -> Result<Value, HubError> {
        self.admit(crate::throttle::Operation::DeviceTwin, Some(device_id))?;
        let (_, twin) = self.load_twin(device_id).await?;
        Ok(device_twin_doc(&twin))
    }

    /// A device's patch of its reported properties; returns the new reported `$version`.
    pub(crate) async fn patch_reported_unobserved(
        &self,
        device_id: &str,
        body: &[u8],
    ) -> Result<u64, HubError> {
        self.admit(crate::throttle::Operation::DeviceTwin, Some(device_id))?;
        let patch = reported_patch(body)?;
        // Compare-and-swap, retried: a service may update the same twin meanwhile.
        for _ in 0..5 {
            let (_, current) = self.load_twin(device_id).await?;
            let now = azure_time(Some(Utc::now()));
            let next = apply_reported(&current, &patch, &now)?;
            match self.save_twin(next, Some(current.etag.clone())).await {
                Ok(saved) => {
                    let body = reported_change_notification(&patch, &saved, &now);
                    self.emit_twin_change(device_id, None, TwinOp::Update, body)
                        .await;
                    return Ok(saved.reported_version);
                }
                Err(HubError::PreconditionFailed(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(too_busy())
    }
}

/// The body of the twin change notification of a service's update (device's or module's):
/// `version`, the tags when they changed, the desired patch when desired properties changed.
pub(crate) fn service_change_notification(
    current: &TwinRecord,
    saved: &TwinRecord,
    pushed: Option<&DesiredPush>,
    now: &str,
) -> Value {
    let mut notification = json!({ "version": saved.version });
    if saved.tags != current.tags {
        notification["tags"] = Value::Object(saved.tags.clone());
    }
    if let Some((version, patch)) = pushed {
        notification["properties"] = json!({ "desired": notified_section(patch, *version, now) });
    }
    notification
}

/// The body of the twin change notification of a reported properties patch.
pub(crate) fn reported_change_notification(
    patch: &Map<String, Value>,
    saved: &TwinRecord,
    now: &str,
) -> Value {
    json!({
        "version": saved.version,
        "properties": { "reported": notified_section(patch, saved.reported_version, now) },
    })
}

/// A changed section as a twin change notification carries it: the patch, its `$metadata`
/// (`$lastUpdated` of the section and of each property changed) and the section's new
/// `$version`.
fn notified_section(patch: &Map<String, Value>, version: u64, now: &str) -> Value {
    let mut metadata = Map::new();
    metadata.insert("$lastUpdated".into(), json!(now));
    for key in patch.keys() {
        metadata.insert(key.clone(), json!({ "$lastUpdated": now }));
    }
    let mut section = patch.clone();
    section.insert("$metadata".into(), Value::Object(metadata));
    section.insert("$version".into(), json!(version));
    Value::Object(section)
}

/// The error of a twin that kept changing under a compare-and-swap.
pub(crate) fn too_busy() -> HubError {
    HubError::ServerError("The twin is being changed too often; try again.".into())
}

/// A device's (or module's) reported properties patch, parsed and checked.
pub(crate) fn reported_patch(body: &[u8]) -> Result<Map<String, Value>, HubError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("The reported properties are not valid JSON: {e}.")))?;
    let patch = object(Some(&patch), "The reported properties patch")?;
    validate(&patch, Section::Reported, 1)?;
    Ok(patch)
}

/// `current` with a reported properties patch merged at `now` (an [`azure_time`]), its versions
/// counted up.
pub(crate) fn apply_reported(
    current: &TwinRecord,
    patch: &Map<String, Value>,
    now: &str,
) -> Result<TwinRecord, HubError> {
    let mut next = current.clone();
    next.reported_version += 1;
    next.version += 1;
    let v = next.reported_version;
    merge(
        &mut next.reported,
        &mut next.reported_metadata,
        patch,
        now,
        Some(v),
    );
    check_size(&next.reported, Section::Reported)?;
    Ok(next)
}

/// What a device's `GET` of its twin returns: `{"desired": {…, "$version"}, "reported": …}`.
pub(crate) fn device_twin_doc(twin: &TwinRecord) -> Value {
    let now = azure_time(None);
    json!({
        "desired": section_with_version(&twin.desired, None, twin.desired_version, &now),
        "reported": section_with_version(&twin.reported, None, twin.reported_version, &now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn merge_patch_with_metadata() {
        let mut doc = obj(json!({"a": 1, "nested": {"x": 1, "y": 2}}));
        let mut meta = Map::new();
        merge(
            &mut doc,
            &mut meta,
            &obj(json!({"a": null, "b": "s", "nested": {"y": null, "z": true}})),
            "T",
            Some(3),
        );
        assert_eq!(
            Value::Object(doc),
            json!({"b": "s", "nested": {"x": 1, "z": true}})
        );
        assert_eq!(
            meta["b"],
            json!({"$lastUpdated": "T", "$lastUpdatedVersion": 3})
        );
        assert_eq!(meta["nested"]["z"]["$lastUpdatedVersion"], json!(3));
        assert_eq!(meta["nested"]["$lastUpdated"], json!("T"));
        assert!(meta.get("a").is_none());
    }

    #[test]
    fn limits() {
        assert!(validate(&obj(json!({"ok": {"fine": [1, "x"]}})), Section::Desired, 1).is_ok());
        for bad in [
            json!({"a.b": 1}),
            json!({"$x": 1}),
            json!({"a b": 1}),
            json!({"": 1}),
        ] {
            assert!(
                validate(&obj(bad.clone()), Section::Desired, 1).is_err(),
                "{bad}"
            );
        }
        let mut deep = json!(1);
        for _ in 0..11 {
            deep = json!({"k": deep});
        }
        assert!(validate(&obj(deep), Section::Tags, 1).is_err());
        assert!(validate(&obj(json!({"s": "x".repeat(4097)})), Section::Reported, 1).is_err());
        for nul in [json!({"s": "a\u{0}b"}), json!({"a": [{"s": "\u{0}"}]})] {
            let e = validate(&obj(nul.clone()), Section::Tags, 1).unwrap_err();
            assert!(matches!(e, HubError::ArgumentInvalid(_)), "{nul}: {e:?}");
        }
        assert!(
            validate(
                &obj(json!({"n": 4_503_599_627_370_496_i64})),
                Section::Reported,
                1
            )
            .is_err()
        );
        let big = obj(json!({"s": "x".repeat(4000), "t": "x".repeat(4000), "u": "x".repeat(400)}));
        assert!(check_size(&big, Section::Tags).is_err());
        assert!(check_size(&big, Section::Desired).is_ok());
    }

    #[test]
    fn read_only_parts_of_a_twin_are_ignored() {
        let doc = json!({
            "deviceId": "d", "etag": "AAAA", "version": 7, "status": "enabled",
            "properties": {
                "desired": {"fw": "2", "$metadata": {"$lastUpdated": "T"}, "$version": 4},
                "reported": {"temp": 21, "$version": 9},
            },
        });
        assert_eq!(
            desired_of(&doc).unwrap(),
            Some(Change::Merge(obj(json!({"fw": "2"}))))
        );
        assert_eq!(
            desired_of(&json!({"properties": {"desired": null}})).unwrap(),
            Some(Change::Clear)
        );
        assert_eq!(
            desired_of(&json!({"properties": {"reported": {"x": 1}}})).unwrap(),
            None
        );
        assert!(desired_of(&json!({"properties": {"desired": 3}})).is_err());
    }

    #[test]
    fn replacement_nulls_removed_keys() {
        let p = replacement_patch(&obj(json!({"a": 1, "b": 2})), &obj(json!({"b": 3})));
        assert_eq!(Value::Object(p), json!({"a": null, "b": 3}));
        // Nested keys that disappear are named too, or merging the patch would keep them.
        let was = obj(json!({"modules": {"sensor": {"v": 1}, "filter": {"v": 2}}, "x": {"y": 1}}));
        let is = obj(json!({"modules": {"filter": {"v": 3}}, "x": 5}));
        let p = replacement_patch(&was, &is);
        assert_eq!(
            Value::Object(p),
            json!({"modules": {"sensor": null, "filter": {"v": 3}}, "x": 5})
        );
    }
}

//! IoT Plug and Play: the model a device announces when it connects, and the digital-twin view
//! of its twin (`/digitaltwins/{id}`), as IoT Hub maps one onto the other.
//!
//! A digital twin is a projection of the device twin. Its properties are the reported
//! properties; a writable property's `$metadata` also carries the desired value and version and
//! the device's acknowledgement (a reported `{"value", "ac", "av", "ad"}`). A top-level twin
//! property holding `"__t": "c"` is a component: a digital-twin object of its own, with its own
//! `$metadata`. Updates are JSON Patch documents, applied as a desired-properties patch; commands
//! are direct methods, named `{component}*{command}` for a component's.

use ironhub_store::TwinRecord;
use serde_json::{Map, Value, json};

use crate::methods::{MethodRequest, MethodResult};
use crate::twin::twin_etag;
use crate::{Hub, HubError};

/// The marker IoT Hub puts in a twin property that is a component.
const COMPONENT_MARKER: &str = "__t";

/// Longest model id kept (a DTMI is at most 4096 characters; IoT Hub stores far shorter ones).
const MAX_MODEL_ID: usize = 4096;

/// Whether `id` is shaped as a Digital Twins Model Identifier: `dtmi:` path segments of letters,
/// digits and `_` separated by `:`, then `;` and a version number.
pub fn is_dtmi(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("dtmi:") else {
        return false;
    };
    let Some((path, version)) = rest.split_once(';') else {
        return false;
    };
    id.len() <= MAX_MODEL_ID
        && !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_digit())
        && path.split(':').all(|segment| {
            segment
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

fn is_component(value: &Value) -> bool {
    value.get(COMPONENT_MARKER).and_then(Value::as_str) == Some("c")
}

/// A reported value as a device acknowledges a writable property: `{"value", "ac", "av", "ad"}`.
fn acknowledgement(value: &Value) -> Option<(&Value, &Map<String, Value>)> {
    let o = value.as_object()?;
    (o.contains_key("value") && o.contains_key("ac") && o.contains_key("av"))
        .then(|| (&o["value"], o))
}

/// `$lastUpdated` of one property in a twin section's metadata.
fn last_updated<'a>(meta: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    meta?.get(key)?.get("$lastUpdated")
}

/// The properties and `$metadata` of one digital-twin object (the root or a component) from
/// the matching parts of the twin's sections.
fn project(
    reported: &Map<String, Value>,
    reported_meta: Option<&Value>,
    desired: &Map<String, Value>,
    desired_meta: Option<&Value>,
    desired_version: u64,
    out: &mut Map<String, Value>,
    metadata: &mut Map<String, Value>,
) {
    for (key, value) in reported {
        if key == COMPONENT_MARKER || key.starts_with('$') || is_component(value) {
            continue;
        }
        let mut meta = Map::new();
        match acknowledgement(value) {
            Some((v, ack)) => {
                out.insert(key.clone(), v.clone());
                meta.insert("ackCode".into(), ack["ac"].clone());
                meta.insert("ackVersion".into(), ack["av"].clone());
                if let Some(d) = ack.get("ad") {
                    meta.insert("ackDescription".into(), d.clone());
                }
            }
            None => {
                out.insert(key.clone(), value.clone());
            }
        }
        if let Some(t) = last_updated(reported_meta, key) {
            meta.insert("lastUpdateTime".into(), t.clone());
        }
        metadata.insert(key.clone(), Value::Object(meta));
    }
    for (key, value) in desired {
        if key == COMPONENT_MARKER || key.starts_with('$') || is_component(value) {
            continue;
        }
        let entry = metadata
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = entry {
            meta.insert("desiredValue".into(), value.clone());
            let version = desired_meta
                .and_then(|m| m.get(key))
                .and_then(|m| m.get("$lastUpdatedVersion"))
                .cloned()
                .unwrap_or_else(|| json!(desired_version));
            meta.insert("desiredVersion".into(), version);
            if !meta.contains_key("lastUpdateTime")
                && let Some(t) = last_updated(desired_meta, key)
            {
                meta.insert("lastUpdateTime".into(), t.clone());
            }
        }
    }
}

/// The digital twin of a device, as `GET /digitaltwins/{id}` returns it.
pub fn digital_twin_view(twin: &TwinRecord) -> Value {
    let mut root = Map::new();
    root.insert("$dtId".into(), json!(twin.device_id));
    let mut root_meta = Map::new();
    if let Some(model) = &twin.model_id {
        root_meta.insert("$model".into(), json!(model));
    }
    let reported_meta = Value::Object(twin.reported_metadata.clone());
    let desired_meta = Value::Object(twin.desired_metadata.clone());
    let mut properties = Map::new();
    project(
        &twin.reported,
        Some(&reported_meta),
        &twin.desired,
        Some(&desired_meta),
        twin.desired_version,
        &mut properties,
        &mut root_meta,
    );
    let mut components: Vec<&String> = twin
        .reported
        .iter()
        .chain(twin.desired.iter())
        .filter(|(_, v)| is_component(v))
        .map(|(k, _)| k)
        .collect();
    components.sort();
    components.dedup();
    for name in components {
        let section = |doc: &Map<String, Value>| {
            doc.get(name)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let mut out = Map::new();
        let mut meta = Map::new();
        project(
            &section(&twin.reported),
            reported_meta.get(name),
            &section(&twin.desired),
            desired_meta.get(name),
            twin.desired_version,
            &mut out,
            &mut meta,
        );
        out.insert("$metadata".into(), Value::Object(meta));
        properties.insert(name.clone(), Value::Object(out));
    }
    root.insert("$metadata".into(), Value::Object(root_meta));
    root.extend(properties);
    Value::Object(root)
}

fn invalid(msg: impl Into<String>) -> HubError {
    HubError::ArgumentInvalid(msg.into())
}

/// The segments of a JSON Pointer (RFC 6901), unescaped.
fn pointer(path: &str) -> Result<Vec<String>, HubError> {
    let rest = path.strip_prefix('/').ok_or_else(|| {
        invalid(format!(
            "The path '{path}' is not a JSON Pointer: it must start with '/'."
        ))
    })?;
    let segments: Vec<String> = rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    if segments.iter().any(String::is_empty) {
        return Err(invalid(format!(
            "The path '{path}' names an empty property."
        )));
    }
    Ok(segments)
}

/// Sets `value` at `segments` in a merge patch, creating objects on the way.
fn set_in(patch: &mut Map<String, Value>, segments: &[String], value: Value) {
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut target = patch;
    for s in parents {
        let entry = target
            .entry(s.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else { return };
        target = next;
    }
    target.insert(last.clone(), value);
}

/// Turns a JSON Patch on a digital twin into a desired-properties merge patch of its twin, by
/// the rules of Microsoft Learn's "Manage IoT Plug and Play digital twins": `add` and `replace`
/// set a value, `remove` sets `null`; names are DTDL names and values hold no arrays and at
/// most five levels. A path whose first segment names a component of the twin marks it with
/// `"__t": "c"`, as IoT Hub writes it; an `add` or `replace` of a whole component (an object
/// carrying the `$metadata` marker) sets its values and clears the desired values it leaves out.
pub fn desired_patch(
    twin: &TwinRecord,
    operations: &Value,
) -> Result<Map<String, Value>, HubError> {
    let operations = operations.as_array().ok_or_else(|| {
        invalid("A digital twin update is a JSON Patch: a JSON array of operations.")
    })?;
    let known_component = |name: &str| {
        [&twin.desired, &twin.reported]
            .iter()
            .any(|doc| doc.get(name).is_some_and(is_component))
    };
    let mut patch = Map::new();
    for op in operations {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("Every operation of the patch needs a 'path'."))?;
        let segments = pointer(path)?;
        let value = match kind {
            "add" | "replace" => op.get("value").cloned().ok_or_else(|| {
                invalid(format!(
                    "The '{kind}' operation on '{path}' has no 'value'."
                ))
            })?,
            "remove" => Value::Null,
            other => {
                return Err(invalid(format!(
                    "The operation '{other}' is not supported on a digital twin: use add, replace or remove."
                )));
            }
        };
        if segments.iter().any(|s| s.starts_with('$')) {
            return Err(invalid(format!(
                "The path '{path}' names a read-only part of the digital twin."
            )));
        }
        if let Some(bad) = segments.iter().find(|s| !is_dtdl_name(s)) {
            return Err(not_conformant(bad));
        }
        let is_component_value =
            segments.len() == 1 && value.get("$metadata").is_some_and(Value::is_object);
        let mut value = value;
        if let Value::Object(o) = &mut value
            && is_component_value
        {
            o.remove("$metadata");
        }
        validate_property_value(&value, 1)?;
        if is_component_value {
            // A component's add or replace sets what it gives and clears the desired values it
            // leaves out.
            let mut component = Map::new();
            if let Some(Value::Object(current)) = twin.desired.get(&segments[0]) {
                for key in current.keys().filter(|k| *k != COMPONENT_MARKER) {
                    component.insert(key.clone(), Value::Null);
                }
            }
            component.extend(value.as_object().cloned().unwrap_or_default());
            component.insert(COMPONENT_MARKER.into(), json!("c"));
            set_in(&mut patch, &segments, Value::Object(component));
        } else if segments.len() > 1 && known_component(&segments[0]) {
            let component = patch_component_marker(patch.get(&segments[0]));
            set_in(&mut patch, &segments[..1], component);
            set_in(&mut patch, &segments, value);
        } else {
            set_in(&mut patch, &segments, value);
        }
    }
    Ok(patch)
}

/// A DTDL name (what the digital-twin API accepts for components, properties and the fields
/// of their values): 1 to 64 letters, digits and underscores, not starting with a digit or an
/// underscore, not ending with an underscore.
pub fn is_dtdl_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=64).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.last().is_some_and(|c| *c != b'_')
}

/// Most levels of a complex property value.
const MAX_VALUE_DEPTH: usize = 5;

fn not_conformant(name: &str) -> HubError {
    invalid(format!(
        "'{name}' is not a digital twin conformant name: use 1 to 64 letters, digits and underscores, starting with a letter and not ending with an underscore."
    ))
}

/// A property value as DTDL allows it: no arrays, at most five levels of objects, every field
/// name a DTDL name.
fn validate_property_value(value: &Value, depth: usize) -> Result<(), HubError> {
    match value {
        Value::Array(_) => Err(invalid(
            "Digital twin properties cannot hold arrays.".to_owned(),
        )),
        Value::Object(o) => {
            if depth > MAX_VALUE_DEPTH {
                return Err(invalid(format!(
                    "A digital twin property value is nested deeper than {MAX_VALUE_DEPTH} levels."
                )));
            }
            for (k, v) in o {
                if !is_dtdl_name(k) {
                    return Err(not_conformant(k));
                }
                validate_property_value(v, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The component's entry in a patch being built, with its marker.
fn patch_component_marker(current: Option<&Value>) -> Value {
    let mut component = current
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    component.insert(COMPONENT_MARKER.into(), json!("c"));
    Value::Object(component)
}

/// The direct-method name a digital-twin command is invoked as.
pub fn command_method_name(component: Option<&str>, command: &str) -> String {
    match component {
        Some(c) => format!("{c}*{command}"),
        None => command.to_owned(),
    }
}

impl Hub {
    /// Keeps the model a connecting device announced as its twin's `modelId` (written only when
    /// it changes). A device that announces none keeps the model it announced before.
    pub async fn announce_model(&self, device_id: &str, model_id: &str) -> Result<(), HubError> {
        if !is_dtmi(model_id) {
            return Err(invalid(format!(
                "The model id '{model_id}' is not a DTMI (dtmi:<path>;<version>)."
            )));
        }
        for _ in 0..5 {
            let (_, current) = self.load_twin(device_id).await?;
            if current.model_id.as_deref() == Some(model_id) {
                return Ok(());
            }
            let mut next = current.clone();
            next.model_id = Some(model_id.to_owned());
            next.version += 1;
            match self.save_twin(next, Some(current.etag.clone())).await {
                Ok(_) => return Ok(()),
                Err(HubError::PreconditionFailed(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(HubError::ServerError(
            "The twin is being changed too often; try again.".into(),
        ))
    }

    /// `GET /digitaltwins/{id}`: the digital twin and its etag (the twin's, which it has from
    /// the device's creation).
    pub async fn get_digital_twin(&self, device_id: &str) -> Result<(Value, String), HubError> {
        let (device, twin) = self.load_twin(device_id).await?;
        Ok((digital_twin_view(&twin), twin_etag(&device, &twin)))
    }

    /// `PATCH /digitaltwins/{id}`: applies a JSON Patch as a desired-properties update (with
    /// the twin's rules, etag check and device notification); returns the new etag.
    pub async fn update_digital_twin(
        &self,
        device_id: &str,
        operations: &Value,
        if_match: Option<&str>,
    ) -> Result<String, HubError> {
        let (device, twin) = self.load_twin(device_id).await?;
        let patch = desired_patch(&twin, operations)?;
        if patch.is_empty() {
            return Ok(twin_etag(&device, &twin));
        }
        let doc = json!({ "properties": { "desired": patch } });
        let updated = self.update_twin(device_id, &doc, if_match, false).await?;
        Ok(updated.etag)
    }

    /// `POST /digitaltwins/{id}[/components/{component}]/commands/{command}`: the direct method
    /// `command` (or `component*command`), with the command's payload as its payload.
    pub async fn invoke_command(
        &self,
        device_id: &str,
        component: Option<&str>,
        command: &str,
        payload: Value,
        connect_timeout_in_seconds: Option<i64>,
        response_timeout_in_seconds: Option<i64>,
    ) -> Result<MethodResult, HubError> {
        let request = MethodRequest {
            method_name: Some(command_method_name(component, command)),
            payload,
            response_timeout_in_seconds,
            connect_timeout_in_seconds,
        };
        self.invoke_method(device_id, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twin(desired: Value, reported: Value) -> TwinRecord {
        TwinRecord {
            device_id: "thermo".into(),
            etag: "AAAA".into(),
            version: 3,
            desired: desired.as_object().cloned().unwrap_or_default(),
            desired_version: 2,
            reported: reported.as_object().cloned().unwrap_or_default(),
            reported_version: 4,
            model_id: Some("dtmi:com:example:TemperatureController;2".into()),
            ..TwinRecord::default()
        }
    }

    #[test]
    fn dtmi_shape() {
        assert!(is_dtmi("dtmi:com:example:Thermostat;1"));
        assert!(is_dtmi("dtmi:a_b:C2;12"));
        for bad in [
            "",
            "dtmi:com:example:Thermostat",
            "urn:com:x;1",
            "dtmi::x;1",
            "dtmi:com:ex-ample;1",
            "dtmi:1com;1",
            "dtmi:com;x",
        ] {
            assert!(!is_dtmi(bad), "{bad}");
        }
    }

    #[test]
    fn reported_properties_components_and_acknowledgements_are_projected() {
        let t = twin(
            json!({"targetTemperature": 21, "thermostat1": {"__t": "c", "targetTemperature": 30}}),
            json!({
                "serialNumber": "SN1",
                "targetTemperature": {"value": 21, "ac": 200, "av": 2, "ad": "done"},
                "thermostat1": {"__t": "c", "maxTempSinceLastReboot": 33.5},
            }),
        );
        let dt = digital_twin_view(&t);
        assert_eq!(dt["$dtId"], "thermo");
        assert_eq!(
            dt["$metadata"]["$model"],
            "dtmi:com:example:TemperatureController;2"
        );
        assert_eq!(dt["serialNumber"], "SN1");
        assert_eq!(dt["targetTemperature"], 21);
        let meta = &dt["$metadata"]["targetTemperature"];
        assert_eq!(meta["desiredValue"], 21);
        assert_eq!(meta["desiredVersion"], 2);
        assert_eq!(meta["ackCode"], 200);
        assert_eq!(meta["ackVersion"], 2);
        assert_eq!(meta["ackDescription"], "done");
        let c = &dt["thermostat1"];
        assert_eq!(c["maxTempSinceLastReboot"], 33.5);
        assert!(c.get("__t").is_none());
        assert_eq!(c["$metadata"]["targetTemperature"]["desiredValue"], 30);
        assert!(c["$metadata"].get("maxTempSinceLastReboot").is_some());
    }

    #[test]
    fn json_patch_becomes_a_desired_patch() {
        let t = twin(json!({}), json!({"thermostat1": {"__t": "c"}}));
        let ops = json!([
            {"op": "add", "path": "/targetTemperature", "value": 42},
            {"op": "replace", "path": "/thermostat1/targetTemperature", "value": 50},
            {"op": "remove", "path": "/old"},
            {"op": "add", "path": "/thermostat2", "value": {"targetTemperature": 5, "$metadata": {}}},
            {"op": "add", "path": "/settings/mode", "value": true},
        ]);
        let patch = desired_patch(&t, &ops).unwrap();
        assert_eq!(
            Value::Object(patch),
            json!({
                "targetTemperature": 42,
                "thermostat1": {"__t": "c", "targetTemperature": 50},
                "old": null,
                "thermostat2": {"__t": "c", "targetTemperature": 5},
                "settings": {"mode": true},
            })
        );
    }

    #[test]
    fn a_component_replaced_clears_what_it_leaves_out() {
        let t = twin(
            json!({"thermostat1": {"__t": "c", "targetTemperature": 30, "other": 1}}),
            json!({}),
        );
        let ops = json!([{"op": "replace", "path": "/thermostat1", "value": {"targetTemperature": 21.5, "$metadata": {}}}]);
        assert_eq!(
            Value::Object(desired_patch(&t, &ops).unwrap()),
            json!({"thermostat1": {"__t": "c", "targetTemperature": 21.5, "other": null}})
        );
        let ops = json!([{"op": "remove", "path": "/thermostat1"}]);
        assert_eq!(
            Value::Object(desired_patch(&t, &ops).unwrap()),
            json!({"thermostat1": null})
        );
    }

    #[test]
    fn dtdl_names() {
        for ok in ["a", "targetTemperature", "thermostat_1", &"x".repeat(64)] {
            assert!(is_dtdl_name(ok), "{ok}");
        }
        for bad in ["", "1a", "_a", "a_", "a-b", "a b", &"x".repeat(65)] {
            assert!(!is_dtdl_name(bad), "{bad}");
        }
    }

    #[test]
    fn bad_patches_are_refused() {
        let t = twin(json!({}), json!({}));
        for bad in [
            json!({"op": "add"}),
            json!([{"op": "move", "from": "/a", "path": "/b"}]),
            json!([{"op": "add", "path": "a", "value": 1}]),
            json!([{"op": "add", "path": "/a"}]),
            json!([{"op": "add", "path": "/$metadata", "value": 1}]),
            json!([{"op": "remove", "path": "/a//b"}]),
            json!([{"op": "add", "path": "/a~1b", "value": 1}]),
            json!([{"op": "add", "path": "/a-b", "value": 1}]),
            json!([{"op": "add", "path": "/a", "value": [1, 2]}]),
            json!([{"op": "add", "path": "/a", "value": {"bad key": 1}}]),
            json!([{"op": "add", "path": "/a", "value": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}]),
        ] {
            assert!(desired_patch(&t, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_are_methods() {
        assert_eq!(command_method_name(None, "reboot"), "reboot");
        assert_eq!(
            command_method_name(Some("thermostat1"), "getMaxMinReport"),
            "thermostat1*getMaxMinReport"
        );
    }
}

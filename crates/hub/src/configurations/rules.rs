//! What a configuration may hold, as IoT Hub checks it: its id, a target condition in the
//! query language, content whose keys are `properties.desired…` twin paths, metric queries
//! that parse, a priority of zero or more. A configuration that passes is [`Parsed`]: the
//! shape the application rules (`apply`) work on.

use std::collections::BTreeMap;

use ironhub_query::{Condition, Dialect, Query};
use serde_json::{Map, Value};

use crate::HubError;
use crate::model::Configuration;

/// The prefix of every content key.
const DESIRED: &str = "properties.desired";
/// The prefix a module configuration's target condition may carry.
const MODULES_FROM: &str = "from devices.modules where";

/// What a configuration targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Device twins (`deviceContent`).
    Device,
    /// Module twins (`moduleContent`).
    Module,
    /// The `$edgeAgent`, `$edgeHub` and other module twins of IoT Edge devices
    /// (`modulesContent`): a deployment.
    Edge,
}

/// A twin path below `properties.desired` (`["a", "b"]` for `properties.desired.a.b`; empty
/// for the whole section).
pub type DesiredPath = Vec<String>;

/// A valid configuration, ready to apply.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub id: String,
    /// The stored configuration's etag (empty before it is stored).
    pub etag: String,
    pub kind: Kind,
    pub priority: i64,
    /// When it was created (an RFC 3339 time, so it orders as text); the newer wins a tie.
    pub created: String,
    /// `None` when the condition is empty: it targets nothing.
    pub condition: Option<Condition>,
    /// The condition's text as the metric queries use it.
    pub condition_text: String,
    /// Device or module content: desired paths and their values.
    pub paths: Vec<(DesiredPath, Value)>,
    /// A deployment's content: module id → desired paths and values.
    pub modules: BTreeMap<String, Vec<(DesiredPath, Value)>>,
    /// A layered deployment: its `$edgeAgent` content sets paths below `properties.desired`
    /// instead of the whole section.
    pub layered: bool,
}

/// Checks a configuration id: 1 to 128 characters, lower-case letters, digits and
/// `-:+%_#*?!(),=@;$'`.
pub fn validate_id(id: &str) -> Result<(), HubError> {
    let ok = !id.is_empty()
        && id.chars().count() <= 128
        && id.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || "-:+%_#*?!(),=@;$'.".contains(c)
        });
    if ok {
        Ok(())
    } else {
        Err(HubError::ArgumentInvalid(format!(
            "The configuration id '{id}' is invalid: it must be 1 to 128 lower-case letters, \
             digits and the characters -:+%_#*?!(),=@;$'."
        )))
    }
}

fn invalid(message: String) -> HubError {
    HubError::ArgumentInvalid(message)
}

/// `properties.desired.a.b` → `["a", "b"]`; `None` for a key outside desired properties.
fn desired_path(key: &str) -> Option<DesiredPath> {
    let rest = key.strip_prefix(DESIRED)?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let rest = rest.strip_prefix('.')?;
    let parts: Vec<String> = rest.split('.').map(str::to_owned).collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || p.starts_with('$') || p.contains(' '))
    {
        return None;
    }
    Some(parts)
}

/// The paths of one content object; `whole` allows `properties.desired` itself.
fn content_paths(
    what: &str,
    content: &Map<String, Value>,
    whole: bool,
) -> Result<Vec<(DesiredPath, Value)>, HubError> {
    let mut out = Vec::new();
    for (key, value) in content {
        match desired_path(key) {
            Some(path) if !path.is_empty() || (whole && value.is_object()) => {
                out.push((path, value.clone()));
            }
            _ => {
                return Err(invalid(format!(
                    "The {what} key '{key}' is invalid: content keys are twin paths that start \
                     with '{DESIRED}.'{}.",
                    if whole {
                        " (or are 'properties.desired' with an object)"
                    } else {
                        ""
                    }
                )));
            }
        }
    }
    Ok(out)
}

impl Parsed {
    /// Checks a configuration as IoT Hub does; the first mistake is the error.
    pub fn parse(config: &Configuration) -> Result<Parsed, HubError> {
        let content = &config.content;
        let given = [
            content.device_content.is_some(),
            content.module_content.is_some(),
            content.modules_content.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(invalid(
                "A configuration's content must hold exactly one of deviceContent, \
                 moduleContent and modulesContent."
                    .into(),
            ));
        }
        if config.priority < 0 {
            return Err(invalid(format!(
                "The priority {} is invalid: it must be zero or more.",
                config.priority
            )));
        }
        let mut parsed = Parsed {
            id: config.id.clone(),
            etag: config.etag.clone().unwrap_or_default(),
            kind: Kind::Device,
            priority: config.priority,
            created: config.created_time_utc.clone().unwrap_or_default(),
            condition: None,
            condition_text: String::new(),
            paths: Vec::new(),
            modules: BTreeMap::new(),
            layered: false,
        };
        let mut condition = config.target_condition.trim().to_owned();
        if let Some(c) = &content.device_content {
            parsed.paths = content_paths("deviceContent", c, false)?;
        } else if let Some(c) = &content.module_content {
            parsed.kind = Kind::Module;
            parsed.paths = content_paths("moduleContent", c, false)?;
            let lower = condition.to_ascii_lowercase();
            if !condition.is_empty() && !lower.starts_with(MODULES_FROM) {
                return Err(invalid(format!(
                    "The target condition of a module configuration must start with \
                     'FROM devices.modules WHERE': '{condition}'."
                )));
            }
            condition = condition
                .get(MODULES_FROM.len()..)
                .unwrap_or("")
                .trim()
                .to_owned();
        } else if let Some(modules) = &content.modules_content {
            parsed.kind = Kind::Edge;
            for (module, c) in modules {
                let paths = content_paths(&format!("modulesContent.{module}"), c, true)?;
                if paths.iter().any(|(p, _)| !p.is_empty()) {
                    parsed.layered = true;
                }
                parsed.modules.insert(module.clone(), paths);
            }
            if !parsed.layered {
                for required in ["$edgeAgent", "$edgeHub"] {
                    if !modules.contains_key(required) {
                        return Err(invalid(format!(
                            "A deployment's modulesContent must hold '{required}' with its \
                             'properties.desired' (or, for a layered deployment, paths below it)."
                        )));
                    }
                }
            }
        }
        if !condition.is_empty() {
            let parsed_condition = Condition::parse(&condition, Dialect::Twin).map_err(|e| {
                invalid(format!(
                    "The target condition '{condition}' is invalid: {e}"
                ))
            })?;
            parsed.condition = Some(parsed_condition);
        }
        parsed.condition_text = condition;
        for (name, query) in &config.metrics.queries {
            Query::parse(query).map_err(|e| {
                invalid(format!(
                    "The metric query '{name}' ('{query}') is invalid: {e}"
                ))
            })?;
        }
        Ok(parsed)
    }

    /// Whether the configuration targets a twin (its query document).
    pub fn targets(&self, doc: &Value) -> bool {
        self.condition.as_ref().is_some_and(|c| c.matches(doc))
    }

    /// The system metrics' queries, by the name of their result.
    pub fn system_queries(&self) -> BTreeMap<String, String> {
        let id = &self.id;
        let condition = if self.condition_text.is_empty() {
            "false".to_owned()
        } else {
            format!("({})", self.condition_text)
        };
        let mut out = BTreeMap::new();
        match self.kind {
            Kind::Device => {
                out.insert(
                    "targetedCount".into(),
                    format!("SELECT deviceId FROM devices WHERE {condition}"),
                );
                out.insert(
                    "appliedCount".into(),
                    format!(
                        "SELECT deviceId FROM devices WHERE configurations.[[{id}]].status = 'Applied'"
                    ),
                );
            }
            Kind::Module => {
                out.insert(
                    "targetedCount".into(),
                    format!("SELECT deviceId, moduleId FROM devices.modules WHERE {condition}"),
                );
                out.insert(
                    "appliedCount".into(),
                    format!(
                        "SELECT deviceId, moduleId FROM devices.modules WHERE configurations.[[{id}]].status = 'Applied'"
                    ),
                );
            }
            Kind::Edge => {
                out.insert(
                    "targetedCount".into(),
                    format!(
                        "SELECT deviceId FROM devices WHERE capabilities.iotEdge = true AND {condition}"
                    ),
                );
                let applied = format!(
                    "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[{id}]].status = 'Applied'"
                );
                out.insert(
                    "reportedSuccessfulCount".into(),
                    format!(
                        "{applied} AND properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code = 200"
                    ),
                );
                out.insert(
                    "reportedFailedCount".into(),
                    format!(
                        "{applied} AND properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code != 200"
                    ),
                );
                out.insert("appliedCount".into(), applied);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: Value) -> Configuration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ids_follow_iot_hub_rules() {
        assert!(validate_id("fw-update_1").is_ok());
        assert!(validate_id("Upper").is_err());
        assert!(validate_id("").is_err());
        assert!(validate_id("a/b").is_err());
        assert!(validate_id(&"a".repeat(129)).is_err());
    }

    #[test]
    fn content_keys_are_desired_paths() {
        let good = config(json!({"id": "c", "content": {"deviceContent": {
            "properties.desired.fw": {"v": 1}}}, "targetCondition": "tags.a = 1", "priority": 2}));
        let parsed = Parsed::parse(&good).unwrap();
        assert_eq!(parsed.kind, Kind::Device);
        assert_eq!(parsed.paths, vec![(vec!["fw".to_owned()], json!({"v": 1}))]);
        assert!(parsed.targets(&json!({"tags": {"a": 1}})));
        assert!(!parsed.targets(&json!({"tags": {"a": 2}})));
        for bad in [
            json!({"content": {"deviceContent": {"tags.x": 1}}}),
            json!({"content": {"deviceContent": {"properties.desired": {}}}}),
            json!({"content": {"deviceContent": {"properties.reported.x": 1}}}),
            json!({"content": {}}),
            json!({"content": {"deviceContent": {}}, "targetCondition": "tags.a = "}),
            json!({"content": {"deviceContent": {}}, "priority": -1}),
            json!({"content": {"deviceContent": {}}, "metrics": {"queries": {"m": "SELECT"}}}),
            json!({"content": {"moduleContent": {}}, "targetCondition": "tags.a = 1"}),
            json!({"content": {"modulesContent": {"$edgeAgent": {"properties.desired": {}}}}}),
        ] {
            assert!(Parsed::parse(&config(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn deployments_are_whole_or_layered() {
        let base = config(json!({"id": "d", "content": {"modulesContent": {
            "$edgeAgent": {"properties.desired": {"modules": {}}},
            "$edgeHub": {"properties.desired": {"routes": {}}}}}, "targetCondition": "tags.x = 1"}));
        let parsed = Parsed::parse(&base).unwrap();
        assert_eq!(parsed.kind, Kind::Edge);
        assert!(!parsed.layered);
        let layered = config(json!({"id": "l", "content": {"modulesContent": {
            "$edgeAgent": {"properties.desired.modules.sensor": {"type": "docker"}}}}}));
        assert!(Parsed::parse(&layered).unwrap().layered);
    }
}

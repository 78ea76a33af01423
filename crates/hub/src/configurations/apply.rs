//! How configurations reach twins, as IoT Hub applies them: a pass reads every configuration
//! and every twin from the store, and writes to each twin only what it lacks. Per twin, the
//! configurations whose target condition it matches are ranked by priority (the newer wins a
//! tie); each desired path goes to the highest-ranked configuration that sets it. The twin's
//! `configurations` names every configuration that targets it, `Applied` when it won a path,
//! else `Targeted`, and remembers (in keys starting with `$`, which no view shows) the
//! configuration's etag and the paths it wrote, so a path is written again only when its
//! configuration changed or it newly won the path: a service's own later change of that
//! property stands, and a pass repeated after a crash writes nothing twice. A configuration
//! that stops targeting a twin, or is deleted, leaves the desired properties it wrote.
//!
//! A pass runs when this node changes a configuration or a twin's tags (`kick`), and every
//! [`PASS_INTERVAL`] on every node, so a change made through another node is applied too: all state is
//! in the store, writes are compare-and-swap, and a pass is idempotent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use ironhub_store::{DeviceRecord, TwinRecord, TwinScan, WriteConflict};
use serde_json::{Map, Value, json};

use super::rules::{DesiredPath, Kind, Parsed};
use crate::model::azure_time;
use crate::module_twin::module_twin_view;
use crate::routing::hub_events::TwinOp;
use crate::twin::{empty_twin, service_change_notification, service_update, twin_view};
use crate::{Hub, HubError};

/// How often every node runs a pass without being kicked (changes made through other nodes).
pub const PASS_INTERVAL: Duration = Duration::from_secs(60);
/// Twins read from the store at a time.
const BATCH: usize = 500;
/// Tries of one twin's compare-and-swap write before the pass leaves it to the next.
const TRIES: usize = 3;
/// An entry's hidden keys: the configuration's etag and the paths it wrote.
pub(crate) const ETAG_KEY: &str = "$etag";
pub(crate) const PATHS_KEY: &str = "$paths";

/// `["a", "b"]` → `a.b`.
fn joined(path: &DesiredPath) -> String {
    path.join(".")
}

/// The value at `path` in `doc`.
fn lookup<'a>(doc: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let value = doc.get(first)?;
    if rest.is_empty() {
        Some(value)
    } else {
        lookup(value.as_object()?, rest)
    }
}

/// Sets `path` in `doc` to `value`, making objects on the way.
pub(crate) fn set_path(doc: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        doc.insert(first.clone(), value);
        return;
    }
    let entry = doc.entry(first.clone()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    if let Value::Object(sub) = entry {
        set_path(sub, rest, value);
    }
}

/// The twin's entries as the API shows them: without the hidden `$` keys.
pub(crate) fn visible_entries(entries: &Map<String, Value>) -> Map<String, Value> {
    entries
        .iter()
        .map(|(id, entry)| {
            let shown = entry
                .as_object()
                .map(|e| {
                    e.iter()
                        .filter(|(k, _)| !k.starts_with('$'))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<Map<String, Value>>()
                })
                .unwrap_or_default();
            (id.clone(), Value::Object(shown))
        })
        .collect()
}

/// One configuration's entry in a twin's `configurations`.
fn entry(config: &Parsed, status: &str, paths: &[String]) -> Value {
    json!({"status": status, ETAG_KEY: config.etag, PATHS_KEY: paths})
}

/// Ranks configurations: highest priority first, the newer first on a tie.
pub fn rank(configs: &mut [Parsed]) {
    configs.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| b.created.cmp(&a.created))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// What device or module configurations `ranked` (see [`rank`]) do to one twin, whose query
/// document is `doc`: the desired patch to write and the twin's next `configurations`, or
/// `None` when the twin already has both.
pub fn plan(
    ranked: &[Parsed],
    doc: &Value,
    twin: &TwinRecord,
) -> Option<(Map<String, Value>, Map<String, Value>)> {
    let targeting: Vec<&Parsed> = ranked.iter().filter(|c| c.targets(doc)).collect();
    // Each path goes to the first (highest-ranked) configuration that sets it.
    let mut winners: BTreeMap<String, usize> = BTreeMap::new();
    for (i, config) in targeting.iter().enumerate() {
        for (path, _) in &config.paths {
            winners.entry(joined(path)).or_insert(i);
        }
    }
    let mut patch = Map::new();
    let mut entries = Map::new();
    for (i, config) in targeting.iter().enumerate() {
        let old = twin.configurations.get(&config.id);
        let old_etag = old.and_then(|o| o.get(ETAG_KEY)).and_then(Value::as_str);
        let old_paths: BTreeSet<&str> = old
            .and_then(|o| o.get(PATHS_KEY))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut won = Vec::new();
        for (path, value) in &config.paths {
            let key = joined(path);
            if winners.get(&key) != Some(&i) {
                continue;
            }
            let fresh = old_etag != Some(config.etag.as_str()) || !old_paths.contains(key.as_str());
            if fresh && lookup(&twin.desired, path) != Some(value) {
                set_path(&mut patch, path, value.clone());
            }
            won.push(key);
        }
        let status = if won.is_empty() {
            "Targeted"
        } else {
            "Applied"
        };
        entries.insert(config.id.clone(), entry(config, status, &won));
    }
    (!patch.is_empty() || entries != twin.configurations).then_some((patch, entries))
}

/// A deployment's desired properties for each module: the highest-ranked whole deployment's,
/// then the layered deployments' paths from the lowest-ranked up, and the `$edgeAgent`
/// twin's next `configurations`. `targeting` is ranked (see [`rank`]).
pub fn plan_edge(
    targeting: &[&Parsed],
    current: &BTreeMap<String, Map<String, Value>>,
) -> (BTreeMap<String, Map<String, Value>>, Map<String, Value>) {
    let base = targeting.iter().find(|c| !c.layered);
    let mut desired: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut entries = Map::new();
    if let Some(base) = base {
        for (module, paths) in &base.modules {
            let mut doc = Map::new();
            for (path, value) in paths {
                match (path.is_empty(), value) {
                    (true, Value::Object(whole)) => doc = whole.clone(),
                    (true, _) => {}
                    (false, v) => set_path(&mut doc, path, v.clone()),
                }
            }
            desired.insert(module.clone(), doc);
        }
    }
    for config in targeting.iter().rev().filter(|c| c.layered) {
        for (module, paths) in &config.modules {
            let doc = desired
                .entry(module.clone())
                .or_insert_with(|| current.get(module).cloned().unwrap_or_default());
            for (path, value) in paths {
                match (path.is_empty(), value) {
                    // A module's whole desired properties, beside the layer's paths.
                    (true, Value::Object(whole)) => *doc = whole.clone(),
                    (true, _) => {}
                    (false, v) => set_path(doc, path, v.clone()),
                }
            }
        }
    }
    for config in targeting {
        let applied = config.layered || base.is_some_and(|b| b.id == config.id);
        let status = if applied { "Applied" } else { "Targeted" };
        entries.insert(config.id.clone(), entry(config, status, &[]));
    }
    (desired, entries)
}

impl Hub {
    /// Asks for a pass soon (a configuration or a twin's tags changed on this node).
    pub fn kick_configurations(&self) {
        self.configurations_idle
            .store(false, std::sync::atomic::Ordering::Release);
        self.configurations_kick.notify_one();
    }

    /// Applies configurations until `stop` turns true: a pass on every kick and every `every`.
    pub async fn run_configurations(
        self,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.apply_configurations().await {
                tracing::warn!(error = %e, "configurations pass failed; retried on the next");
            }
            tokio::select! {
                () = self.configurations_kick.notified() => {}
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One pass over every twin (see the module's notes). A failure on one twin is logged and
    /// left to the next pass.
    pub async fn apply_configurations(&self) -> Result<(), HubError> {
        let mut configs = Vec::new();
        for record in self.store.list_configurations().await? {
            let mut view: crate::model::Configuration = match serde_json::from_value(record.doc) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(id = %record.id, error = %e, "unreadable configuration skipped");
                    continue;
                }
            };
            view.etag = Some(record.etag);
            match Parsed::parse(&view) {
                Ok(parsed) => configs.push(parsed),
                Err(e) => {
                    tracing::warn!(id = %record.id, error = %e, "invalid configuration skipped")
                }
            }
        }
        // With no configuration, a pass only clears what deleted ones left on twins: after one
        // such pass, the next ones skip the scan until a kick or a restart (a configuration
        // created through another node is seen by the next pass: the skip needs none stored).
        let idle = configs.is_empty();
        if idle
            && self
                .configurations_idle
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return Ok(());
        }
        rank(&mut configs);
        let devices: Vec<Parsed> = configs
            .iter()
            .filter(|c| c.kind == Kind::Device)
            .cloned()
            .collect();
        let modules: Vec<Parsed> = configs
            .iter()
            .filter(|c| c.kind == Kind::Module)
            .cloned()
            .collect();
        let edge: Vec<Parsed> = configs
            .iter()
            .filter(|c| c.kind == Kind::Edge)
            .cloned()
            .collect();
        let mut after = None;
        loop {
            let rows = self
                .store
                .scan_twins(&TwinScan {
                    after: after.clone(),
                    limit: BATCH,
                    conditions: Vec::new(),
                })
                .await?;
            let done = rows.len() < BATCH;
            for (device, twin) in rows {
                after = Some(device.device_id.clone());
                let twin = twin.unwrap_or_else(|| empty_twin(&device.device_id));
                if let Err(e) = self.apply_to_device(&device, twin, &devices, &edge).await {
                    tracing::warn!(device_id = %device.device_id, error = %e, "configurations not applied yet");
                }
                if !modules.is_empty()
                    && let Err(e) = self.apply_to_modules(&device, &modules).await
                {
                    tracing::warn!(device_id = %device.device_id, error = %e, "module configurations not applied yet");
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    async fn apply_to_device(
        &self,
        device: &DeviceRecord,
        mut twin: TwinRecord,
        ranked: &[Parsed],
        edge: &[Parsed],
    ) -> Result<(), HubError> {
        let id = &device.device_id;
        if device.iot_edge {
            let doc = serde_json::to_value(twin_view(device, &twin))
                .map_err(|e| HubError::ServerError(e.to_string()))?;
            self.ensure_edge_modules(device).await?;
            self.apply_deployments(device, &doc, edge).await?;
        }
        for _ in 0..TRIES {
            let doc = serde_json::to_value(twin_view(device, &twin))
                .map_err(|e| HubError::ServerError(e.to_string()))?;
            let Some((patch, entries)) = plan(ranked, &doc, &twin) else {
                return Ok(());
            };
            let now = azure_time(Some(Utc::now()));
            let (mut next, pushed) = service_update(
                &twin,
                &json!({"properties": {"desired": patch}}),
                false,
                &now,
            )?;
            next.configurations = entries;
            match self.store.put_twin(next, Some(twin.etag.clone())).await? {
                Ok(saved) => {
                    if pushed.is_some() {
                        let body =
                            service_change_notification(&twin, &saved, pushed.as_ref(), &now);
                        self.emit_twin_change(id, None, TwinOp::Update, body).await;
                        self.push_desired(id, pushed).await;
                    }
                    return Ok(());
                }
                Err(WriteConflict::NotFound) => return Ok(()),
                Err(_) => {
                    twin = self
                        .store
                        .get_twin(id)
                        .await?
                        .unwrap_or_else(|| empty_twin(id));
                }
            }
        }
        Err(HubError::PreconditionFailed(
            "the twin kept changing".into(),
        ))
    }

    async fn apply_to_modules(
        &self,
        device: &DeviceRecord,
        ranked: &[Parsed],
    ) -> Result<(), HubError> {
        let id = &device.device_id;
        for module in self.store.list_modules(id).await? {
            let mid = &module.module_id;
            for _ in 0..TRIES {
                let twin = self
                    .store
                    .get_module_twin(id, mid)
                    .await?
                    .unwrap_or_else(|| empty_twin(id));
                let doc = serde_json::to_value(module_twin_view(device, &module, &twin))
                    .map_err(|e| HubError::ServerError(e.to_string()))?;
                let Some((patch, entries)) = plan(ranked, &doc, &twin) else {
                    break;
                };
                if self
                    .write_module_twin(id, mid, &twin, patch, entries)
                    .await?
                {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Writes a desired patch and the `configurations` of a module twin read as `twin`,
    /// compare-and-swap; `false` when the twin changed meanwhile.
    pub(crate) async fn write_module_twin(
        &self,
        device_id: &str,
        module_id: &str,
        twin: &TwinRecord,
        patch: Map<String, Value>,
        entries: Map<String, Value>,
    ) -> Result<bool, HubError> {
        let now = azure_time(Some(Utc::now()));
        let (mut next, pushed) = service_update(
            twin,
            &json!({"properties": {"desired": patch}}),
            false,
            &now,
        )?;
        next.configurations = entries;
        match self
            .store
            .put_module_twin(module_id, next, Some(twin.etag.clone()))
            .await?
        {
            Ok(saved) => {
                if pushed.is_some() {
                    let body = service_change_notification(twin, &saved, pushed.as_ref(), &now);
                    self.emit_twin_change(device_id, Some(module_id), TwinOp::Update, body)
                        .await;
                    self.push_desired(&format!("{device_id}/{module_id}"), pushed)
                        .await;
                }
                Ok(true)
            }
            Err(WriteConflict::NotFound) => Err(HubError::ModuleNotFound(
                device_id.to_owned(),
                module_id.to_owned(),
            )),
            Err(_) => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Configuration;

    fn parsed(id: &str, priority: i64, condition: &str, content: Value, etag: &str) -> Parsed {
        let config: Configuration = serde_json::from_value(json!({
            "id": id, "priority": priority, "targetCondition": condition,
            "content": {"deviceContent": content}, "etag": etag,
            "createdTimeUtc": format!("2026-01-01T00:00:0{priority}Z"),
        }))
        .unwrap();
        Parsed::parse(&config).unwrap()
    }

    fn doc(tags: Value) -> Value {
        json!({"tags": tags})
    }

    #[test]
    fn the_highest_priority_wins_each_path_and_others_are_targeted() {
        let mut configs = vec![
            parsed(
                "low",
                1,
                "tags.a = 1",
                json!({"properties.desired.x": 1, "properties.desired.y": 1}),
                "e1",
            ),
            parsed(
                "high",
                5,
                "tags.a = 1",
                json!({"properties.desired.x": 5}),
                "e2",
            ),
            parsed(
                "other",
                9,
                "tags.a = 2",
                json!({"properties.desired.x": 9}),
                "e3",
            ),
        ];
        rank(&mut configs);
        let twin = TwinRecord::default();
        let (patch, entries) = plan(&configs, &doc(json!({"a": 1})), &twin).unwrap();
        assert_eq!(Value::Object(patch), json!({"x": 5, "y": 1}));
        assert_eq!(entries["high"]["status"], "Applied");
        assert_eq!(entries["low"]["status"], "Applied");
        assert!(!entries.contains_key("other"));
        // Applied again, nothing is left to write.
        let mut applied = twin.clone();
        applied.desired = json!({"x": 5, "y": 1}).as_object().unwrap().clone();
        applied.configurations = entries;
        assert!(plan(&configs, &doc(json!({"a": 1})), &applied).is_none());
        // A service's own change of a written property stands.
        applied.desired.insert("x".into(), json!(42));
        assert!(plan(&configs, &doc(json!({"a": 1})), &applied).is_none());
        // Out of the target: the entries go, the properties stay.
        let (patch, entries) = plan(&configs, &doc(json!({"a": 3})), &applied).unwrap();
        assert!(patch.is_empty() && entries.is_empty());
    }

    #[test]
    fn a_path_lost_by_a_deleted_configuration_goes_to_the_next() {
        let mut configs = vec![
            parsed(
                "low",
                1,
                "tags.a = 1",
                json!({"properties.desired.x": 1}),
                "e1",
            ),
            parsed(
                "high",
                5,
                "tags.a = 1",
                json!({"properties.desired.x": 5}),
                "e2",
            ),
        ];
        rank(&mut configs);
        let mut twin = TwinRecord::default();
        let (patch, entries) = plan(&configs, &doc(json!({"a": 1})), &twin).unwrap();
        assert_eq!(entries["low"]["status"], "Targeted");
        twin.desired = patch;
        twin.configurations = entries;
        configs.retain(|c| c.id == "low");
        let (patch, entries) = plan(&configs, &doc(json!({"a": 1})), &twin).unwrap();
        assert_eq!(Value::Object(patch), json!({"x": 1}));
        assert_eq!(entries["low"]["status"], "Applied");
    }

    #[test]
    fn layered_deployments_add_paths_to_the_base() {
        let deployment = |id: &str, priority: i64, content: Value| {
            let config: Configuration = serde_json::from_value(json!({
                "id": id, "priority": priority, "targetCondition": "tags.e = 1",
                "content": {"modulesContent": content},
            }))
            .unwrap();
            Parsed::parse(&config).unwrap()
        };
        let base = deployment(
            "base",
            1,
            json!({
            "$edgeAgent": {"properties.desired": {"modules": {"a": {"v": 1}}}},
            "$edgeHub": {"properties.desired": {"routes": {}}}}),
        );
        let older = deployment(
            "old",
            0,
            json!({
            "$edgeAgent": {"properties.desired": {"modules": {}}},
            "$edgeHub": {"properties.desired": {}}}),
        );
        let layer = deployment(
            "layer",
            3,
            json!({
            "$edgeAgent": {"properties.desired.modules.b": {"v": 2}}}),
        );
        let mut all = vec![older, base, layer];
        rank(&mut all);
        let targeting: Vec<&Parsed> = all.iter().collect();
        let (desired, entries) = plan_edge(&targeting, &BTreeMap::new());
        assert_eq!(
            Value::Object(desired["$edgeAgent"].clone()),
            json!({"modules": {"a": {"v": 1}, "b": {"v": 2}}})
        );
        assert_eq!(entries["base"]["status"], "Applied");
        assert_eq!(entries["layer"]["status"], "Applied");
        assert_eq!(entries["old"]["status"], "Targeted");
    }
}

//! Module inputs: a module's message reaches other modules' inputs by the routes of its
//! device's `$edgeHub` twin, as IoT Edge's hub routes them (Azure docs, "Deploy modules and
//! establish routes in IoT Edge": `FROM /messages/modules/{m}/outputs/{o} [WHERE …] INTO
//! BrokeredEndpoint("/modules/{t}/inputs/{i}")`, the routes in `properties.desired.routes`,
//! each a string (schema 1.0) or an object with `route` (1.1)).
//!
//! ironhub plays that part for the modules of its devices: a module's telemetry is stored as
//! ever (as if every route also went `$upstream`), and each route whose source and condition
//! match appends it to the target module's input queue in the store, where it waits, as IoT
//! Edge's hub stores and forwards it, until the module takes it (acknowledged: a PUBACK, an
//! AMQP accept) or its time to live runs out (`storeAndForwardConfiguration.timeToLiveSecs` of
//! the `$edgeHub` desired properties, 7,200 s by default). The bus only says "look at your
//! input queue" (`BusMessage::InputsAvailable`) to the module's connection, wherever it is.

use std::collections::BTreeMap;

use chrono::Duration;
use ironhub_query::routing::{MessageParts, RoutingQuery, message_view};
use ironhub_store::{BusMessage, InputMessage, QueuedInput};
use serde_json::Value;

use crate::configurations::edge::EDGE_HUB;
use crate::{DeviceIdentity, Hub, HubError};

/// One route of an IoT Edge hub, as far as module inputs go.
#[derive(Debug)]
pub struct EdgeRoute {
    source: Source,
    condition: Option<RoutingQuery>,
    /// The target module and input, for a `BrokeredEndpoint` sink; `None` for `$upstream`.
    target: Option<(String, String)>,
}

/// The messages a route takes.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    /// `/*`, `/messages/*`, `/messages/modules/*`: every module message.
    Any,
    /// `/messages/modules/{m}/*` or `…/outputs/*`: every message of module `m` (with an
    /// output, for `outputs/*`).
    Module { module: String, outputs: bool },
    /// `/messages/modules/{m}/outputs/{o}`.
    Output { module: String, output: String },
}

impl EdgeRoute {
    /// Parses `FROM <source> [WHERE <condition>] INTO <sink>` (keywords in any case); `None`
    /// for a route this hub cannot take (another source, such as twin change notifications,
    /// a condition that does not parse, or another sink).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let rest = strip_keyword(text, "FROM")?.trim_start();
        let (source, rest) = rest.split_once(char::is_whitespace)?;
        let rest = rest.trim_start();
        let into = find_keyword(rest, "INTO")?;
        let condition = match strip_keyword(rest, "WHERE") {
            Some(_) => {
                let text = rest.get(5..into)?.trim();
                Some(RoutingQuery::parse(text).ok()?)
            }
            None if into == 0 => None,
            None => return None,
        };
        let sink = rest[into + 4..].trim();
        let target = if sink.eq_ignore_ascii_case("$upstream") {
            None
        } else {
            Some(brokered_endpoint(sink)?)
        };
        Some(EdgeRoute {
            source: parse_source(source)?,
            condition,
            target,
        })
    }

    /// The input this route sends a message of `module` (sent to `output`, if any) to, when
    /// it takes it; `view` is the message as a routing condition sees it.
    fn input_for(&self, module: &str, output: Option<&str>, view: &Value) -> Option<(&str, &str)> {
        let (target, input) = self.target.as_ref()?;
        let takes = match &self.source {
            Source::Any => true,
            Source::Module { module: m, outputs } => m == module && (!outputs || output.is_some()),
            Source::Output {
                module: m,
                output: o,
            } => m == module && output == Some(o.as_str()),
        };
        (takes && self.condition.as_ref().is_none_or(|c| c.matches(view)))
            .then_some((target.as_str(), input.as_str()))
    }
}

/// `text` without its leading `keyword` (any case), if it starts with it as a whole word.
fn strip_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let head = text.get(..keyword.len())?;
    let rest = &text[keyword.len()..];
    (head.eq_ignore_ascii_case(keyword) && rest.starts_with(char::is_whitespace)).then_some(rest)
}

/// Where ` INTO ` (any case, whitespace around) starts in `text`: its last occurrence, so a
/// condition may mention the word in a string. At 0 when `text` starts with it.
fn find_keyword(text: &str, keyword: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let keyword = keyword.to_ascii_lowercase();
    lower.rmatch_indices(&keyword).map(|(i, _)| i).find(|&i| {
        let before = i == 0 || lower[..i].ends_with(char::is_whitespace);
        let after = lower[i + keyword.len()..].starts_with(char::is_whitespace);
        before && after
    })
}

fn parse_source(source: &str) -> Option<Source> {
    let parts: Vec<&str> = source.trim_matches('/').split('/').collect();
    let is = |part: &str, name: &str| part.eq_ignore_ascii_case(name);
    Some(match parts.as_slice() {
        ["*"] => Source::Any,
        [messages, "*"] if is(messages, "messages") => Source::Any,
        [messages, modules, "*"] if is(messages, "messages") && is(modules, "modules") => {
            Source::Any
        }
        [messages, modules, m, "*"] if is(messages, "messages") && is(modules, "modules") => {
            Source::Module {
                module: (*m).to_owned(),
                outputs: false,
            }
        }
        [messages, modules, m, outputs, o]
            if is(messages, "messages") && is(modules, "modules") && is(outputs, "outputs") =>
        {
            if *o == "*" {
                Source::Module {
                    module: (*m).to_owned(),
                    outputs: true,
                }
            } else {
                Source::Output {
                    module: (*m).to_owned(),
                    output: (*o).to_owned(),
                }
            }
        }
        _ => return None,
    })
}

/// The module and input of `BrokeredEndpoint("/modules/{m}/inputs/{i}")`.
fn brokered_endpoint(sink: &str) -> Option<(String, String)> {
    let open = sink.find('(')?;
    if !sink[..open].trim().eq_ignore_ascii_case("BrokeredEndpoint") {
        return None;
    }
    let inner = sink[open + 1..].strip_suffix(')')?.trim();
    let path = inner
        .strip_prefix('"')
        .and_then(|p| p.strip_suffix('"'))
        .or_else(|| inner.strip_prefix('\'').and_then(|p| p.strip_suffix('\'')))?;
    match path
        .trim_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        [modules, m, inputs, i]
            if modules.eq_ignore_ascii_case("modules")
                && inputs.eq_ignore_ascii_case("inputs")
                && !m.is_empty()
                && !i.is_empty() =>
        {
            Some(((*m).to_owned(), (*i).to_owned()))
        }
        _ => None,
    }
}

/// The routes of an `$edgeHub` twin's desired properties.
pub fn edge_routes(desired: &serde_json::Map<String, Value>) -> Vec<EdgeRoute> {
    let Some(Value::Object(routes)) = desired.get("routes") else {
        return Vec::new();
    };
    routes
        .values()
        .filter_map(|route| match route {
            Value::String(text) => Some(text.as_str()),
            Value::Object(o) => o.get("route").and_then(Value::as_str),
            _ => None,
        })
        .filter_map(EdgeRoute::parse)
        .collect()
}

/// How long a module input message waits when the `$edgeHub` twin names no time to live
/// (IoT Edge's default, two hours).
pub const DEFAULT_INPUT_TTL_SECS: i64 = 7200;

/// The time to live of module input messages: the `$edgeHub` desired properties'
/// `storeAndForwardConfiguration.timeToLiveSecs`, if a positive number, else the default.
pub fn input_ttl(desired: &serde_json::Map<String, Value>) -> Duration {
    let secs = desired
        .get("storeAndForwardConfiguration")
        .and_then(|c| c.get("timeToLiveSecs"))
        .and_then(Value::as_i64)
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_INPUT_TTL_SECS);
    Duration::try_seconds(secs).unwrap_or(Duration::MAX)
}

impl Hub {
    /// Queues a module's message for the inputs its device's `$edgeHub` routes name (see the
    /// module documentation) and tells each target module's connection; `system` and
    /// `application` are the message's properties as stored. Called before the sender's
    /// message is acknowledged; a failure is logged, never the sender's (its message is in
    /// the event log already).
    pub(crate) async fn route_to_inputs(
        &self,
        who: &DeviceIdentity,
        system: &BTreeMap<String, String>,
        application: &BTreeMap<String, Option<String>>,
        body: &[u8],
    ) {
        let Some(module) = who.module_id.as_deref() else {
            return;
        };
        if module.starts_with('$') {
            return;
        }
        let twin = match self.store.get_module_twin(&who.device_id, EDGE_HUB).await {
            Ok(Some(twin)) => twin,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(device = %who.device_id, error = %e, "reading the $edgeHub routes failed");
                return;
            }
        };
        let routes = edge_routes(&twin.desired);
        if routes.is_empty() {
            return;
        }
        // No engine need hold NUL (see `crate::nul`): such a message reaches no input on any.
        let properties = serde_json::json!([system, application]);
        if crate::nul::contains_nul(&properties) {
            tracing::warn!(device = %who.device_id, module, "{}; not queued for module inputs", crate::nul::nul_message("the message's properties"));
            return;
        }
        let expiry = self.now() + input_ttl(&twin.desired);
        let view = message_view(MessageParts {
            system,
            application,
            body,
            twin: None,
        });
        let output = system.get("iothub-outputname").map(String::as_str);
        let mut sent = Vec::new();
        for route in &routes {
            let Some(target) = route.input_for(module, output, &view) else {
                continue;
            };
            // One copy per input, however many routes name it.
            if sent.contains(&target) {
                continue;
            }
            sent.push(target);
            let (target_module, input) = target;
            let message = InputMessage {
                input: input.to_owned(),
                system: system.clone(),
                application: application.clone(),
                body: body.to_vec(),
            };
            let key = format!("{}/{target_module}", who.device_id);
            match self
                .store
                .input_enqueue(&who.device_id, target_module, &message, expiry)
                .await
            {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::debug!(module = %key, input, "a route names a module that does not exist");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(module = %key, input, error = %e, "a module input message was not queued");
                    continue;
                }
            }
            if let Err(e) = self.bus.send(&key, BusMessage::InputsAvailable).await {
                tracing::debug!(module = %key, error = %e, "the module is not connected; its input message waits");
            }
        }
    }

    /// Up to `max` messages waiting at the inputs of module `who`, oldest first, after
    /// sequence number `after` (0 for all): what a module's connection delivers next.
    pub async fn pending_inputs(
        &self,
        who: &DeviceIdentity,
        after: u64,
        max: usize,
    ) -> Result<Vec<QueuedInput>, HubError> {
        let Some(module) = who.module_id.as_deref() else {
            return Ok(Vec::new());
        };
        Ok(self
            .store
            .input_pending(&who.device_id, module, after, max, self.now())
            .await?)
    }

    /// Removes an input message module `who` acknowledged; `false` when it was gone already
    /// (expired, or acknowledged on another connection).
    pub async fn complete_input(
        &self,
        who: &DeviceIdentity,
        sequence_number: u64,
    ) -> Result<bool, HubError> {
        let Some(module) = who.module_id.as_deref() else {
            return Ok(false);
        };
        Ok(self
            .store
            .input_remove(&who.device_id, module, sequence_number)
            .await?)
    }

    /// Drops the input messages whose time to live ran out; returns how many. The server runs
    /// it with the cloud-to-device expiry ([`Hub::expire_c2d_until`]).
    pub async fn expire_inputs(&self) -> Result<u64, HubError> {
        Ok(self.store.input_expire(self.now()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(route: &str, module: &str, output: Option<&str>, view: Value) -> Option<String> {
        let route = EdgeRoute::parse(route).unwrap_or_else(|| panic!("{route}"));
        route
            .input_for(module, output, &view)
            .map(|(m, i)| format!("{m}/{i}"))
    }

    #[test]
    fn sources_and_sinks() {
        let sink = r#"INTO BrokeredEndpoint("/modules/b/inputs/in1")"#;
        let none = json!({});
        for source in [
            "/*",
            "/messages/*",
            "/messages/modules/*",
            "/messages/modules/a/*",
            "/messages/modules/a/outputs/*",
            "/messages/modules/a/outputs/out1",
        ] {
            let route = format!("FROM {source} {sink}");
            assert_eq!(
                target(&route, "a", Some("out1"), none.clone()).as_deref(),
                Some("b/in1"),
                "{route}"
            );
        }
        let r = format!("FROM /messages/modules/a/outputs/out1 {sink}");
        assert_eq!(target(&r, "a", Some("out2"), none.clone()), None);
        assert_eq!(target(&r, "c", Some("out1"), none.clone()), None);
        assert_eq!(target(&r, "a", None, none.clone()), None);
        let r = format!("FROM /messages/modules/a/outputs/* {sink}");
        assert_eq!(target(&r, "a", None, none.clone()), None);
        // Keywords in any case, single quotes; `$upstream` goes to no input.
        let r = "from /messages/* into brokeredendpoint('/modules/b/inputs/x')";
        assert_eq!(target(r, "a", None, none.clone()).as_deref(), Some("b/x"));
        assert_eq!(target("FROM /* INTO $upstream", "a", None, none), None);
    }

    #[test]
    fn the_time_to_live_comes_from_store_and_forward() {
        let ttl = |desired: Value| input_ttl(desired.as_object().unwrap()).num_seconds();
        assert_eq!(ttl(json!({})), 7200);
        let set = json!({"storeAndForwardConfiguration": {"timeToLiveSecs": 30}});
        assert_eq!(ttl(set), 30);
        let bad = json!({"storeAndForwardConfiguration": {"timeToLiveSecs": -1}});
        assert_eq!(ttl(bad), 7200);
        let text = json!({"storeAndForwardConfiguration": {"timeToLiveSecs": "30"}});
        assert_eq!(ttl(text), 7200);
    }

    #[test]
    fn conditions() {
        let r = r#"FROM /messages/* WHERE level = 'critical' INTO BrokeredEndpoint("/modules/b/inputs/alerts")"#;
        assert_eq!(
            target(r, "a", None, json!({"level": "critical"})).as_deref(),
            Some("b/alerts")
        );
        assert_eq!(target(r, "a", None, json!({"level": "info"})), None);
    }

    #[test]
    fn routes_the_hub_cannot_take_are_left_out() {
        for route in [
            "",
            "FROM /twinChangeNotifications INTO $upstream",
            "FROM /messages/* INTO BrokeredEndpoint(\"/modules/b/outputs/x\")",
            "FROM /messages/* WHERE ((( INTO $upstream",
            "FROM /messages/* TO $upstream",
            "SELECT * FROM /messages/* INTO $upstream",
        ] {
            assert!(EdgeRoute::parse(route).is_none(), "{route}");
        }
        let desired = json!({"routes": {
            "a": "FROM /messages/* INTO BrokeredEndpoint(\"/modules/b/inputs/i\")",
            "b": {"route": "FROM /messages/* INTO $upstream", "priority": 0},
            "c": "nonsense",
            "d": 3,
        }});
        assert_eq!(edge_routes(desired.as_object().unwrap()).len(), 2);
    }
}

//! The routing document as IoT Hub's ARM resource has it (`properties.routing`): endpoints by
//! kind, routes, the fallback route and enrichments, and its validation. A document that
//! fails validation is refused whole: nothing of it is applied.
//!
//! Endpoint kinds: `eventHubs` are ironhub's event streams (readable like the built-in
//! `events`); `storageContainers` (files), `webhooks` and `natsSubjects` are external sinks
//! whose settings stay opaque JSON here, checked by [`validate_external`], and which a
//! delivery pump feeds from a per-endpoint stream. `serviceBusQueues`, `serviceBusTopics` and
//! `cosmosDBSqlContainers` are kept in the shape but must be empty.

use std::collections::BTreeSet;

use ironhub_query::RoutingQuery;
use serde_json::Value;

pub use ironhub_wire::hub::{
    Endpoints, Enrichment, Route, RoutingConfig, RoutingSource, StreamEndpoint,
};

use crate::HubError;

pub use ironhub_endpoints::Allowances;

pub use ironhub_wire::hub::{BUILT_IN_ENDPOINT as BUILT_IN, FALLBACK_ROUTE as FALLBACK};
/// IoT Hub's quotas: routes, custom endpoints (per kind) and enrichments.
pub const MAX_ROUTES: usize = 100;
pub const MAX_ENDPOINTS_PER_KIND: usize = 10;
pub const MAX_ENRICHMENTS: usize = 10;
/// Partitions of a custom event stream when the endpoint does not say.
pub const DEFAULT_PARTITIONS: u32 = 4;

/// An external endpoint kind, whose settings the endpoints crate defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExternalKind {
    StorageContainer,
    Webhook,
    NatsSubject,
}

/// Where an endpoint's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The built-in `events` log.
    BuiltIn,
    /// A custom event stream of this name, created with this many partitions.
    Stream { stream: String, partitions: u32 },
    /// An external endpoint: its delivery stream, read by the endpoint's pump.
    External { kind: ExternalKind, stream: String },
}

/// The stream a custom event stream endpoint writes: its name in lower case (endpoint names
/// are case-insensitive).
pub fn stream_name(endpoint: &str) -> String {
    endpoint.to_ascii_lowercase()
}

/// The stream an external endpoint's messages wait in for its delivery pump.
pub fn delivery_stream_name(endpoint: &str) -> String {
    format!("$delivery.{}", endpoint.to_ascii_lowercase())
}

/// The stream an external endpoint's dead letters go to (what its pump gave up delivering),
/// readable like a custom stream as the endpoint `$deadletter.{name}`.
pub fn dead_letter_stream_name(endpoint: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}{}", endpoint.to_ascii_lowercase())
}

/// How the dead letters of an external endpoint are named among endpoints and streams.
pub const DEAD_LETTER_PREFIX: &str = "$deadletter.";

/// Checks an external endpoint's settings with its kind's own rules (`ironhub-endpoints`) and
/// the server's `allowances` beyond IoT Hub's ranges.
pub fn validate_external(
    kind: ExternalKind,
    settings: &Value,
    allowances: Allowances,
) -> Result<(), String> {
    ironhub_endpoints::validate_with(kind.into(), settings, allowances)
        .map(|_| ())
        .map_err(|e| e.0)
}

impl From<ExternalKind> for ironhub_endpoints::EndpointKind {
    fn from(kind: ExternalKind) -> Self {
        match kind {
            ExternalKind::StorageContainer => ironhub_endpoints::EndpointKind::StorageContainers,
            ExternalKind::Webhook => ironhub_endpoints::EndpointKind::Webhooks,
            ExternalKind::NatsSubject => ironhub_endpoints::EndpointKind::NatsSubjects,
        }
    }
}

fn invalid(message: String) -> HubError {
    HubError::ArgumentInvalid(message)
}

/// IoT Hub's rule for endpoint and route names: 1–64 letters, digits, `-`, `.`, `_`.
fn check_name(what: &str, name: &str) -> Result<(), HubError> {
    if crate::ca::is_resource_name(name) {
        Ok(())
    } else {
        Err(invalid(format!(
            "The {what} name '{name}' is not valid: use 1 to 64 letters, digits, '-', '.' or '_'."
        )))
    }
}

/// The rules of a routing document (on ironhub-wire's shape).
pub trait RoutingRules {
    /// Every endpoint with its target, the built-in one first.
    fn targets(&self) -> Vec<(String, Target)>;
    /// Validates the document as IoT Hub does; the first mistake found is the error.
    fn validate(&self) -> Result<(), HubError> {
        self.validate_with(Allowances::default())
    }
    /// [`RoutingRules::validate`] with the server's `allowances` beyond IoT Hub's ranges.
    fn validate_with(&self, allowances: Allowances) -> Result<(), HubError>;
}

impl RoutingRules for RoutingConfig {
    fn targets(&self) -> Vec<(String, Target)> {
        let mut out = vec![(BUILT_IN.to_owned(), Target::BuiltIn)];
        for e in &self.endpoints.event_hubs {
            out.push((
                e.name.clone(),
                Target::Stream {
                    stream: stream_name(&e.name),
                    partitions: e.partition_count.unwrap_or(DEFAULT_PARTITIONS),
                },
            ));
        }
        for (kind, list) in external(self) {
            for settings in list {
                if let Some(name) = settings.get("name").and_then(Value::as_str) {
                    out.push((
                        name.to_owned(),
                        Target::External {
                            kind,
                            stream: delivery_stream_name(name),
                        },
                    ));
                }
            }
        }
        out
    }

    fn validate_with(&self, allowances: Allowances) -> Result<(), HubError> {
        for (what, list) in [
            ("serviceBusQueues", &self.endpoints.service_bus_queues),
            ("serviceBusTopics", &self.endpoints.service_bus_topics),
            (
                "cosmosDBSqlContainers",
                &self.endpoints.cosmos_db_sql_containers,
            ),
        ] {
            if !list.is_empty() {
                return Err(invalid(format!(
                    "Endpoints of kind '{what}' are not supported by this server: use eventHubs (event streams), storageContainers, webhooks or natsSubjects."
                )));
            }
        }
        if self.endpoints.event_hubs.len() > MAX_ENDPOINTS_PER_KIND {
            return Err(invalid(format!(
                "At most {MAX_ENDPOINTS_PER_KIND} endpoints of kind 'eventHubs' are allowed."
            )));
        }
        for e in &self.endpoints.event_hubs {
            if let Some(p) = e.partition_count
                && !(1..=ironhub_store::streams::MAX_STREAM_PARTITIONS).contains(&p)
            {
                return Err(invalid(format!(
                    "The endpoint '{}' asks for {p} partitions: use 1 to {}.",
                    e.name,
                    ironhub_store::streams::MAX_STREAM_PARTITIONS
                )));
            }
        }
        for (kind, list) in external(self) {
            if list.len() > MAX_ENDPOINTS_PER_KIND {
                return Err(invalid(format!(
                    "At most {MAX_ENDPOINTS_PER_KIND} endpoints of one kind are allowed."
                )));
            }
            for settings in list {
                // Named, not printed: settings may hold a password.
                let name = settings.get("name").and_then(Value::as_str).unwrap_or("?");
                validate_external(kind, settings, allowances)
                    .map_err(|e| invalid(format!("The endpoint '{name}' is not valid: {e}.")))?;
            }
        }
        let mut names = BTreeSet::new();
        for (name, target) in self.targets() {
            if target != Target::BuiltIn {
                check_name("endpoint", &name)?;
                if name.eq_ignore_ascii_case(BUILT_IN)
                    || name.eq_ignore_ascii_case("fileNotifications")
                {
                    return Err(invalid(format!(
                        "The endpoint name '{name}' is reserved by IoT Hub."
                    )));
                }
            }
            if !names.insert(name.to_ascii_lowercase()) {
                return Err(invalid(format!(
                    "The endpoint name '{name}' is used more than once (names are case-insensitive)."
                )));
            }
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(invalid(format!("At most {MAX_ROUTES} routes are allowed.")));
        }
        let mut route_names = BTreeSet::new();
        for route in &self.routes {
            check_name("route", &route.name)?;
            if !route_names.insert(route.name.to_ascii_lowercase()) {
                return Err(invalid(format!(
                    "The route name '{}' is used more than once.",
                    route.name
                )));
            }
            check_route(route, &names)?;
        }
        let fallback = self.fallback();
        if fallback.source != RoutingSource::DeviceMessages
            || fallback.endpoint_names.len() != 1
            || !fallback.endpoint_names[0].eq_ignore_ascii_case(BUILT_IN)
        {
            return Err(invalid(
                "The fallback route takes DeviceMessages to the 'events' endpoint only.".into(),
            ));
        }
        compile(&fallback)?;
        if self.enrichments.len() > MAX_ENRICHMENTS {
            return Err(invalid(format!(
                "At most {MAX_ENRICHMENTS} enrichments are allowed."
            )));
        }
        let mut keys = BTreeSet::new();
        for e in &self.enrichments {
            if e.key.is_empty() || e.key.len() > 64 || crate::telemetry::is_reserved_name(&e.key) {
                return Err(invalid(format!(
                    "The enrichment key '{}' is not valid: 1 to 64 characters, not starting with 'iothub-'.",
                    e.key
                )));
            }
            if e.value.is_empty() || e.value.len() > 256 {
                return Err(invalid(format!(
                    "The enrichment '{}' needs a value of 1 to 256 characters.",
                    e.key
                )));
            }
            if e.endpoint_names.is_empty() {
                return Err(invalid(format!(
                    "The enrichment '{}' names no endpoint.",
                    e.key
                )));
            }
            for endpoint in &e.endpoint_names {
                if !keys.insert((e.key.to_ascii_lowercase(), endpoint.to_ascii_lowercase())) {
                    return Err(invalid(format!(
                        "The enrichment '{}' is defined twice for the endpoint '{endpoint}'.",
                        e.key
                    )));
                }
                if !names.contains(&endpoint.to_ascii_lowercase()) {
                    return Err(invalid(format!(
                        "The enrichment '{}' names the endpoint '{endpoint}', which does not exist.",
                        e.key
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The external endpoints' settings, for their delivery pumps (a stored document was
/// validated; an entry that no longer passes is left out and logged).
pub fn external_endpoints(config: &RoutingConfig) -> Vec<ironhub_endpoints::Settings> {
    let mut out = Vec::new();
    for (kind, list) in external(config) {
        for settings in list {
            // Stored, so accepted once under some server's allowances.
            match ironhub_endpoints::validate_with(kind.into(), settings, Allowances::ANY) {
                Ok(s) => out.push(s),
                Err(e) => tracing::warn!(error = %e, "a stored routing endpoint is not valid"),
            }
        }
    }
    out
}

/// The external endpoints by kind.
fn external(config: &RoutingConfig) -> [(ExternalKind, &Vec<Value>); 3] {
    [
        (
            ExternalKind::StorageContainer,
            &config.endpoints.storage_containers,
        ),
        (ExternalKind::Webhook, &config.endpoints.webhooks),
        (ExternalKind::NatsSubject, &config.endpoints.nats_subjects),
    ]
}

fn check_route(route: &Route, endpoints: &BTreeSet<String>) -> Result<(), HubError> {
    if route.endpoint_names.len() != 1 {
        return Err(invalid(format!(
            "The route '{}' must name exactly one endpoint.",
            route.name
        )));
    }
    for endpoint in &route.endpoint_names {
        if !endpoints.contains(&endpoint.to_ascii_lowercase()) {
            return Err(invalid(format!(
                "The route '{}' names the endpoint '{endpoint}', which does not exist.",
                route.name
            )));
        }
    }
    compile(route).map(|_| ())
}

/// A route's condition, parsed; a mistake is the client's, with its position.
pub fn compile(route: &Route) -> Result<RoutingQuery, HubError> {
    RoutingQuery::parse(route.condition.as_deref().unwrap_or("")).map_err(|e| {
        invalid(format!(
            "The condition of the route '{}' is not valid: {} (line {}, column {}).",
            route.name, e.message, e.line, e.column
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(doc: Value) -> RoutingConfig {
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn a_valid_document_round_trips_in_arm_shape() {
        let doc = serde_json::json!({
            "endpoints": {"eventHubs": [{"name": "hot", "partitionCount": 2}], "webhooks": [{"name": "hook", "url": "http://x"}]},
            "routes": [{"name": "r1", "source": "DeviceMessages", "condition": "$body.t > 30", "endpointNames": ["hot"], "isEnabled": true}],
            "enrichments": [{"key": "site", "value": "$twin.tags.site", "endpointNames": ["hot", "events"]}]
        });
        let c = config(doc);
        c.validate().unwrap();
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["endpoints"]["eventHubs"][0]["partitionCount"], 2);
        assert_eq!(back["routes"][0]["endpointNames"][0], "hot");
        assert_eq!(c.targets().len(), 3);
        assert!(c.fallback().is_enabled);
    }

    #[test]
    fn mistakes_are_refused_with_a_clear_message() {
        let cases = [
            (
                serde_json::json!({"routes": [{"name": "r", "source": "DeviceMessages", "endpointNames": ["nope"], "isEnabled": true}]}),
                "does not exist",
            ),
            (
                serde_json::json!({"routes": [{"name": "r", "source": "DeviceMessages", "condition": "a = ", "endpointNames": ["events"], "isEnabled": true}]}),
                "condition of the route 'r'",
            ),
            (
                serde_json::json!({"routes": [{"name": "r r", "source": "DeviceMessages", "endpointNames": ["events"], "isEnabled": true}]}),
                "not valid",
            ),
            (
                serde_json::json!({"endpoints": {"eventHubs": [{"name": "Events"}]}}),
                "reserved",
            ),
            (
                serde_json::json!({"endpoints": {"eventHubs": [{"name": "a"}, {"name": "A"}]}}),
                "more than once",
            ),
            (
                serde_json::json!({"endpoints": {"serviceBusQueues": [{"name": "q"}]}}),
                "not supported",
            ),
            (
                serde_json::json!({"enrichments": [{"key": "k", "value": "v", "endpointNames": ["x"]}]}),
                "does not exist",
            ),
            (
                serde_json::json!({"fallbackRoute": {"name": "$fallback", "source": "DeviceMessages", "endpointNames": ["other"], "isEnabled": true}}),
                "fallback",
            ),
        ];
        for (doc, want) in cases {
            let err = config(doc.clone()).validate().unwrap_err();
            assert_eq!(err.status(), 400, "{doc}");
            assert!(err.to_string().contains(want), "{doc}: {err}");
        }
    }
}

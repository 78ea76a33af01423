//! Message routing as IoT Hub's ARM resource has it (`properties.routing`): endpoints by
//! kind, routes, the fallback route and enrichments, and the shapes of ARM's route tests
//! (`TestRouteInput`/`TestRouteResult`, `TestAllRoutesInput`/`TestAllRoutesResult`).
//! ironhub's endpoint kinds: `eventHubs` are its own event streams; `storageContainers`,
//! `webhooks` and `natsSubjects` are external sinks whose settings are opaque JSON here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The built-in endpoint's name.
pub const BUILT_IN_ENDPOINT: &str = "events";
/// The fallback route's name.
pub const FALLBACK_ROUTE: &str = "$fallback";

/// Where a route takes its messages from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoutingSource {
    DeviceMessages,
    TwinChangeEvents,
    DeviceLifecycleEvents,
    DeviceConnectionStateEvents,
}

impl RoutingSource {
    /// The `iothub-message-source` of the source's messages.
    pub fn message_source(self) -> &'static str {
        match self {
            RoutingSource::DeviceMessages => "Telemetry",
            RoutingSource::TwinChangeEvents => "twinChangeEvents",
            RoutingSource::DeviceLifecycleEvents => "deviceLifecycleEvents",
            RoutingSource::DeviceConnectionStateEvents => "deviceConnectionStateEvents",
        }
    }

    /// Parses a source by its name, ignoring case (as az takes `--source devicemessages`).
    pub fn parse(name: &str) -> Result<Self, String> {
        [
            RoutingSource::DeviceMessages,
            RoutingSource::TwinChangeEvents,
            RoutingSource::DeviceLifecycleEvents,
            RoutingSource::DeviceConnectionStateEvents,
        ]
        .into_iter()
        .find(|s| format!("{s:?}").eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            format!(
                "'{name}' is not a routing source: use DeviceMessages, TwinChangeEvents, DeviceLifecycleEvents or DeviceConnectionStateEvents."
            )
        })
    }
}

/// The routing document (`properties.routing`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingConfig {
    #[serde(default)]
    pub endpoints: Endpoints,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// `None` is IoT Hub's default: enabled, to `events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_route: Option<Route>,
    #[serde(default)]
    pub enrichments: Vec<Enrichment>,
}

/// The custom endpoints, by kind.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// Event streams of this server (the shape of ARM's Event Hubs endpoints).
    #[serde(default)]
    pub event_hubs: Vec<StreamEndpoint>,
    /// The file endpoint (settings defined by the endpoints crate).
    #[serde(default)]
    pub storage_containers: Vec<Value>,
    /// HTTP webhooks (ironhub's own kind; settings defined by the endpoints crate).
    #[serde(default)]
    pub webhooks: Vec<Value>,
    /// NATS subjects (ironhub's own kind; settings defined by the endpoints crate).
    #[serde(default)]
    pub nats_subjects: Vec<Value>,
    /// Not supported: must be empty.
    #[serde(default)]
    pub service_bus_queues: Vec<Value>,
    /// Not supported: must be empty.
    #[serde(default)]
    pub service_bus_topics: Vec<Value>,
    /// Not supported: must be empty.
    #[serde(default, rename = "cosmosDBSqlContainers")]
    pub cosmos_db_sql_containers: Vec<Value>,
}

/// A custom event stream endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamEndpoint {
    pub name: String,
    /// Partitions of the stream (1–32), fixed when the stream is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_count: Option<u32>,
    /// ARM's other fields, kept as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub name: String,
    pub source: RoutingSource,
    /// The routing query; none is `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    pub endpoint_names: Vec<String>,
    pub is_enabled: bool,
}

/// A message enrichment: an application property added to messages sent to its endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrichment {
    pub key: String,
    /// A static value, `$twin.…` or `$iothubname`.
    pub value: String,
    pub endpoint_names: Vec<String>,
}

impl RoutingConfig {
    /// The fallback route as it applies: the one given, or IoT Hub's default (enabled, to
    /// `events`).
    pub fn fallback(&self) -> Route {
        self.fallback_route.clone().unwrap_or_else(|| Route {
            name: FALLBACK_ROUTE.into(),
            source: RoutingSource::DeviceMessages,
            condition: Some("true".into()),
            endpoint_names: vec![BUILT_IN_ENDPOINT.into()],
            is_enabled: true,
        })
    }
}

/// A sample message (ARM's `RoutingMessage`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default)]
    pub app_properties: BTreeMap<String, String>,
    /// By IoT Hub's names (`contentType`, `content-type`, `connectionDeviceId`, …).
    #[serde(default)]
    pub system_properties: BTreeMap<String, String>,
}

/// ARM's `TestRouteInput`: one route (configured or not) against a sample message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRouteInput {
    #[serde(default)]
    pub message: TestMessage,
    pub route: Route,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<Value>,
}

/// ARM's `TestAllRoutesInput`: the configured routes of a source against a sample message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestAllRoutesInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_source: Option<String>,
    #[serde(default)]
    pub message: TestMessage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<Value>,
}

/// ARM's `MatchedRoute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchedRoute {
    pub properties: Route,
}

/// ARM's `TestAllRoutesResult`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestAllRoutesResult {
    pub routes: Vec<MatchedRoute>,
}

/// A condition's verdict on a sample message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TestOutcome {
    True,
    False,
    Undefined,
}

/// ARM's `TestRouteResult`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRouteResult {
    pub result: TestOutcome,
    pub details: TestRouteDetails,
}

/// ARM's `TestRouteResultDetails`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestRouteDetails {
    pub compilation_errors: Vec<CompilationError>,
}

/// ARM's `RouteCompilationError`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompilationError {
    pub message: String,
    pub severity: String,
    pub location: ErrorRange,
}

/// Where a compilation error is (1-based line and column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRange {
    pub start: ErrorPosition,
    pub end: ErrorPosition,
}

/// A position in a condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorPosition {
    pub line: usize,
    pub column: usize,
}

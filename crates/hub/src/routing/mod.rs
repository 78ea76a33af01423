//! Message routing as IoT Hub has it: the routing document ([`config`]) kept in the store,
//! compiled once and cached (re-read at most every [`REFRESH`], so every node applies a
//! change within that time and no message costs a store read), and the dispatch of each
//! message — telemetry and the hub's own events ([`hub_events`]) — to the endpoints its
//! source's enabled routes select, with the fallback route and enrichments. A message goes
//! once to each selected endpoint, and the caller hears back only when every append is
//! durable.
//!
//! The health of external endpoints, as their pumps record it in the store, is answered by
//! [`Hub::endpoint_health`].
//!
//! With no routing document stored, telemetry goes to the built-in log exactly as before
//! routing existed, and the hub's events go nowhere (IoT Hub sends them only where a route
//! says).

pub mod config;
mod health;
pub mod hub_events;
mod test_route;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use ironhub_query::RoutingQuery;
use ironhub_query::routing::{MessageParts, message_view};
use ironhub_store::{Event, EventLog, EventStreams, NewEvent, WriteConflict};
use serde_json::Value;

pub use config::{
    Allowances, Enrichment, Route, RoutingConfig, RoutingRules, RoutingSource, Target,
};
pub use test_route::{TestMessage, TestOutcome, TestRouteResult};

use crate::{Hub, HubError};

/// An endpoint's share of a batch: its name as written, where it is, and the copies bound
/// for it with the index of the message each copies.
type EndpointBatch = (String, Target, Vec<(usize, NewEvent)>);

/// How long a node uses the routing document it read before reading it again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The routing document compiled: conditions parsed, endpoints resolved.
#[derive(Debug)]
pub struct Compiled {
    /// Whether a document is stored (without one, IoT Hub's defaults apply).
    configured: bool,
    config: RoutingConfig,
    /// The enabled routes, with their conditions.
    routes: Vec<(Route, RoutingQuery)>,
    /// The fallback route's condition, when it is enabled.
    fallback: Option<RoutingQuery>,
    /// Endpoints by lower-case name: the name as written and where it goes.
    targets: BTreeMap<String, (String, Target)>,
    uses_twin: bool,
}

impl Compiled {
    /// Compiles a validated document.
    fn new(config: RoutingConfig, etag: Option<String>) -> Result<Self, HubError> {
        let mut routes = Vec::new();
        let mut uses_twin = config
            .enrichments
            .iter()
            .any(|e| e.value.starts_with("$twin."));
        for route in config.routes.iter().filter(|r| r.is_enabled) {
            let query = config::compile(route)?;
            uses_twin |= query.uses_twin();
            routes.push((route.clone(), query));
        }
        let fallback_route = config.fallback();
        let fallback = if fallback_route.is_enabled {
            Some(config::compile(&fallback_route)?)
        } else {
            None
        };
        let targets = config
            .targets()
            .into_iter()
            .map(|(name, target)| (name.to_ascii_lowercase(), (name, target)))
            .collect();
        Ok(Compiled {
            configured: etag.is_some(),
            config,
            routes,
            fallback,
            targets,
            uses_twin,
        })
    }

    /// Whether an enabled route takes messages of `source` (else the hub need not build them).
    pub fn has_routes(&self, source: RoutingSource) -> bool {
        self.routes.iter().any(|(r, _)| r.source == source)
    }

    /// The endpoints (lower-case names, in order, each once) a message of `source` with the
    /// routing view `view` goes to.
    fn select(&self, source: RoutingSource, view: &Value) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (route, query) in &self.routes {
            if route.source == source && query.matches(view) {
                for e in &route.endpoint_names {
                    let e = e.to_ascii_lowercase();
                    if !out.contains(&e) {
                        out.push(e);
                    }
                }
            }
        }
        if out.is_empty()
            && source == RoutingSource::DeviceMessages
            && self.fallback.as_ref().is_some_and(|q| q.matches(view))
        {
            out.push(config::BUILT_IN.to_owned());
        }
        out
    }
}

/// The node's copy of the routing document, and what the server allows beyond IoT Hub's
/// ranges when a document is written.
#[derive(Debug, Default)]
pub struct RoutingCache {
    slot: Mutex<Option<(Instant, Arc<Compiled>)>>,
    allowances: Allowances,
}

impl RoutingCache {
    /// The cached document while it is fresh. When it has aged, the first caller gets `None`
    /// (and reads the store) while the others keep using the old copy until it is replaced,
    /// so a busy node reads the store once per [`REFRESH`], not once per message in flight.
    fn fresh(&self) -> Option<Arc<Compiled>> {
        let mut slot = self.slot.lock().ok()?;
        let (read, compiled) = slot.as_mut()?;
        if read.elapsed() < REFRESH {
            return Some(compiled.clone());
        }
        *read = Instant::now();
        None
    }

    fn put(&self, compiled: Arc<Compiled>) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some((Instant::now(), compiled));
        }
    }
}

impl Hub {
    /// The same hub, accepting endpoint settings beyond IoT Hub's ranges as `allowances` say
    /// (`serve --allow-small-file-batches`).
    pub fn with_routing_allowances(mut self, allowances: Allowances) -> Self {
        self.routing = Arc::new(RoutingCache {
            slot: Mutex::new(None),
            allowances,
        });
        self
    }

    /// The same hub, able to route to named event streams (custom endpoints and the delivery
    /// streams of external endpoints).
    pub fn with_event_streams(mut self, streams: Arc<dyn EventStreams>) -> Self {
        self.streams = Some(streams);
        self
    }

    /// The named event streams, if the hub has them.
    pub fn event_streams(&self) -> Option<&Arc<dyn EventStreams>> {
        self.streams.as_ref()
    }

    /// The same hub reading `endpoint`'s event stream instead of the built-in log: what the
    /// Event Hubs-style readers (`hub::events`, the REST stream, AMQP) use to read a custom
    /// event stream endpoint like the built-in one. `None` or `events` is the built-in log.
    /// A view for reading: the hub's other operations are unchanged.
    pub async fn for_endpoint(&self, endpoint: Option<&str>) -> Result<Hub, HubError> {
        let Some(name) = endpoint.filter(|e| !e.eq_ignore_ascii_case(config::BUILT_IN)) else {
            return Ok(self.clone());
        };
        let compiled = self.compiled_routing().await?;
        // `$deadletter.{name}`: what an external endpoint's pump gave up delivering.
        let dead_letters = name
            .get(..config::DEAD_LETTER_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(config::DEAD_LETTER_PREFIX))
            .map(|_| &name[config::DEAD_LETTER_PREFIX.len()..]);
        let target = compiled
            .targets
            .get(&dead_letters.unwrap_or(name).to_ascii_lowercase());
        let stream = match (target, dead_letters) {
            (Some((_, Target::Stream { stream, .. })), None) => stream.clone(),
            (Some((_, Target::External { .. })), Some(endpoint)) => {
                config::dead_letter_stream_name(endpoint)
            }
            _ => {
                return Err(HubError::EndpointNotFound(format!(
                    "There is no event stream endpoint named '{name}'."
                )));
            }
        };
        let log = match &self.streams {
            Some(streams) => streams.stream(&stream).await?,
            None => None,
        }
        .ok_or_else(|| {
            HubError::EndpointNotFound(format!("The endpoint '{name}' has no stream yet."))
        })?;
        let mut view = self.clone();
        view.events = log;
        Ok(view)
    }

    /// The routing document as it applies now (cached for [`REFRESH`]).
    pub async fn compiled_routing(&self) -> Result<Arc<Compiled>, HubError> {
        if let Some(c) = self.routing.fresh() {
            return Ok(c);
        }
        let compiled = Arc::new(match self.store.routing().await? {
            Some(record) => {
                let config: RoutingConfig = serde_json::from_value(record.doc).map_err(|e| {
                    HubError::ServerError(format!("the stored routing document is unreadable: {e}"))
                })?;
                Compiled::new(config, Some(record.etag))?
            }
            None => Compiled::new(RoutingConfig::default(), None)?,
        });
        self.routing.put(compiled.clone());
        Ok(compiled)
    }

    /// The routing document and its etag (`None` before one was written: IoT Hub's defaults).
    pub async fn routing_config(&self) -> Result<(RoutingConfig, Option<String>), HubError> {
        Ok(match self.store.routing().await? {
            Some(record) => (
                serde_json::from_value(record.doc).map_err(|e| {
                    HubError::ServerError(format!("the stored routing document is unreadable: {e}"))
                })?,
                Some(record.etag),
            ),
            None => (RoutingConfig::default(), None),
        })
    }

    /// Replaces the routing document, compare-and-swap on `if_match` (`*` or the etag read).
    /// A document that fails validation, or whose streams cannot be opened, changes nothing.
    /// The streams of its endpoints are created before it is stored.
    pub async fn set_routing_config(
        &self,
        config: RoutingConfig,
        if_match: Option<&str>,
    ) -> Result<(RoutingConfig, String), HubError> {
        crate::nul::reject_nul_in(&config, "the routing document")?;
        config.validate_with(self.routing.allowances)?;
        for (name, target) in config.targets() {
            if let Some((stream, partitions)) = streamed(&target) {
                let streams = self.streams.as_ref().ok_or_else(|| {
                    HubError::ArgumentInvalid(format!(
                        "The endpoint '{name}' needs event streams, which this server was started without."
                    ))
                })?;
                streams.open_stream(&stream, partitions).await?;
            }
        }
        let doc =
            serde_json::to_value(&config).map_err(|e| HubError::ServerError(e.to_string()))?;
        let if_match = if_match.map(crate::registry::normalize_if_match);
        let record = match self.store.put_routing(doc, if_match.clone()).await? {
            Ok(r) => r,
            Err(WriteConflict::EtagMismatch | WriteConflict::NotFound) => {
                return Err(HubError::PreconditionFailed(if_match.unwrap_or_default()));
            }
            Err(WriteConflict::AlreadyExists) => {
                return Err(HubError::ServerError("the routing write conflicted".into()));
            }
        };
        self.routing.put(Arc::new(Compiled::new(
            config.clone(),
            Some(record.etag.clone()),
        )?));
        Ok((config, record.etag))
    }

    /// Sends a message of `source` where routing says; returns the events as appended (one
    /// per endpoint, none when no route took it), once all are durable.
    pub(crate) async fn route_message(
        &self,
        source: RoutingSource,
        event: NewEvent,
    ) -> Result<Vec<Event>, HubError> {
        let mut routed = self.route_batch(source, vec![event]).await?;
        Ok(routed.pop().unwrap_or_default())
    }

    /// Sends messages of `source` where routing says, the messages bound for one endpoint
    /// appended to its log as one batch ([`EventLog::append_batch`]: all or none on an
    /// engine whose batches are atomic, which the embedded log's are); returns each message's
    /// events as appended, once all are durable. The endpoints are appended one after the
    /// other, so a failure at the second leaves the first's batch appended.
    pub(crate) async fn route_batch(
        &self,
        source: RoutingSource,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Vec<Event>>, HubError> {
        let compiled = self.compiled_routing().await?;
        let count = events.len();
        // Each endpoint's messages, in order, with the index of the message they copy.
        let mut by_endpoint: Vec<EndpointBatch> = Vec::new();
        for (index, event) in events.into_iter().enumerate() {
            for (name, target, copy) in self.deliveries(&compiled, source, event).await {
                match by_endpoint.iter_mut().find(|(n, ..)| *n == name) {
                    Some((.., copies)) => copies.push((index, copy)),
                    None => by_endpoint.push((name, target, vec![(index, copy)])),
                }
            }
        }
        let mut appended: Vec<Vec<Event>> = vec![Vec::new(); count];
        for (name, target, copies) in by_endpoint {
            let log = self.endpoint_log(&target).await?;
            let (indexes, copies): (Vec<usize>, Vec<NewEvent>) = copies.into_iter().unzip();
            let delivered = log.append_batch(copies).await;
            for _ in &indexes {
                crate::monitoring::delivered(&name, &target, source, delivered.is_ok());
            }
            for (index, event) in indexes.into_iter().zip(delivered?) {
                appended[index].push(event);
            }
        }
        // As IoT Hub counts them: messages of a source that routing applies to and no route
        // took.
        if compiled.configured
            && (source == RoutingSource::DeviceMessages || compiled.has_routes(source))
        {
            for _ in appended.iter().filter(|events| events.is_empty()) {
                crate::monitoring::orphaned(source);
            }
        }
        Ok(appended)
    }

    /// Where one message goes: each endpoint's name as written, where it is, and the
    /// message's copy for it (with the endpoint's enrichments).
    async fn deliveries(
        &self,
        compiled: &Compiled,
        source: RoutingSource,
        event: NewEvent,
    ) -> Vec<(String, Target, NewEvent)> {
        if !compiled.configured {
            if source != RoutingSource::DeviceMessages {
                return Vec::new();
            }
            return vec![("events".to_owned(), Target::BuiltIn, event)];
        }
        if source != RoutingSource::DeviceMessages && !compiled.has_routes(source) {
            return Vec::new();
        }
        // A module's messages and events see the module's twin, as in IoT Hub.
        let twin = if compiled.uses_twin {
            let twin = match &event.module_id {
                Some(m) => self.module_twin_of(&event.device_id, m).await,
                None => self.twin_of(&event.device_id).await,
            };
            twin.ok().and_then(|t| serde_json::to_value(t).ok())
        } else {
            None
        };
        let mut system = event.system_properties.clone();
        system.insert(
            "iothub-enqueuedtime".into(),
            self.now().to_rfc3339_opts(SecondsFormat::Millis, true),
        );
        let view = message_view(MessageParts {
            system: &system,
            application: &event.application_properties,
            body: &event.body,
            twin: twin.as_ref(),
        });
        let mut out = Vec::new();
        for endpoint in compiled.select(source, &view) {
            let Some((name, target)) = compiled.targets.get(&endpoint) else {
                continue;
            };
            let mut copy = event.clone();
            for e in compiled.config.enrichments.iter().filter(|e| {
                e.endpoint_names
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name))
            }) {
                let value = self.enrichment_value(&e.value, twin.as_ref());
                copy.application_properties
                    .insert(e.key.clone(), Some(value));
            }
            out.push((name.clone(), target.clone(), copy));
        }
        out
    }

    /// Routes device messages sent one after another, in order: how many, from the first,
    /// are durable, and why the next is not. They are routed as one batch
    /// ([`Hub::route_batch`]: each endpoint's messages in one write, one group commit), so
    /// it is all or none: a failed write acknowledges none of them, though it may have left
    /// some appended (at least once: the device sends them again).
    pub(crate) async fn route_messages_in_order(
        &self,
        events: Vec<NewEvent>,
    ) -> (usize, Option<HubError>) {
        match self
            .route_batch(RoutingSource::DeviceMessages, events)
            .await
        {
            Ok(appended) => (appended.len(), None),
            Err(e) => (0, Some(e)),
        }
    }

    /// The log an endpoint's messages are appended to.
    async fn endpoint_log(&self, target: &Target) -> Result<Arc<dyn EventLog>, HubError> {
        match streamed(target) {
            None => Ok(self.events.clone()),
            Some((stream, partitions)) => {
                let streams = self.streams.as_ref().ok_or_else(|| {
                    HubError::ServerError(
                        "routing names a stream, but the server has no event streams".into(),
                    )
                })?;
                Ok(streams.open_stream(&stream, partitions).await?)
            }
        }
    }

    /// An enrichment's value: `$iothubname`, a `$twin.…` path (its text when the twin has
    /// nothing there, as IoT Hub stamps it), or the static value.
    fn enrichment_value(&self, value: &str, twin: Option<&Value>) -> String {
        if value.eq_ignore_ascii_case("$iothubname") {
            return crate::events::event_hub_name(self.host_name()).to_owned();
        }
        if let Some(path) = value.strip_prefix("$twin.") {
            let found = twin.and_then(|t| path.split('.').try_fold(t, |at, key| at.get(key)));
            return match found {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => value.to_owned(),
            };
        }
        value.to_owned()
    }
}

/// The stream of a target and its partition count, `None` for the built-in log.
fn streamed(target: &Target) -> Option<(String, u32)> {
    match target {
        Target::BuiltIn => None,
        Target::Stream { stream, partitions } => Some((stream.clone(), *partitions)),
        Target::External { stream, .. } => Some((stream.clone(), config::DEFAULT_PARTITIONS)),
    }
}

//! [`EndpointPumps`]: one running pump per configured external endpoint, brought in line with
//! the routing document each time it changes (`apply`): pumps of removed endpoints stop, an
//! endpoint whose settings changed restarts with its new sink, new endpoints start. The
//! streams come from the server ([`EndpointStreams`]), so the crate stays free of the hub.
//!
//! Several nodes sharing a store agree through it ([`Leases`], `apply_leased`): a node runs
//! an endpoint's pump only while it holds the endpoint's lease, renewed at every apply, so
//! each message is delivered by one node; when the holder stops it gives its leases up, and
//! when it dies its leases run out and another node takes over. Each pump's health goes to
//! the store as it changes, so every node answers the same.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;
use ironhub_store::{Clock, EventLog, RoutingStore};
use tokio::sync::Mutex;

use crate::error::EndpointConfigError;
use crate::pump::{Pump, PumpConfig};
use crate::settings::Settings;
use crate::sink::Sink;
use crate::status::EndpointStatus;

/// Where an endpoint's messages wait and where its dead letters go.
#[async_trait]
pub trait EndpointStreams: Send + Sync + std::fmt::Debug + 'static {
    /// The delivery stream of endpoint `endpoint` (what routing appends to).
    async fn delivery_stream(&self, endpoint: &str) -> ironhub_store::Result<Arc<dyn EventLog>>;
    /// The log its dead letters are appended to.
    async fn dead_letters(&self, endpoint: &str) -> ironhub_store::Result<Arc<dyn EventLog>>;
}

/// Builds the sink of an endpoint (normally [`crate::sink`] with the server's context).
pub type SinkFactory =
    Arc<dyn Fn(&Settings) -> Result<Arc<dyn Sink>, EndpointConfigError> + Send + Sync>;

/// How long an endpoint lease holds unless renewed: a dead node's endpoints are taken over
/// within this time.
pub const ENDPOINT_LEASE: Duration = Duration::from_secs(10);

/// The least time between two health writes of one endpoint (a change is written at the
/// latest this long after it happened).
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);

/// This node's claims on endpoints in a store shared with other nodes.
#[derive(Clone)]
pub struct Leases {
    store: Arc<dyn RoutingStore>,
    node: String,
    duration: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("node", &self.node)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// Leases for `node` in `store`, each holding `duration` (normally [`ENDPOINT_LEASE`]) by
    /// `clock`.
    pub fn new(
        store: Arc<dyn RoutingStore>,
        node: &str,
        duration: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Leases {
            store,
            node: node.to_owned(),
            duration,
            clock,
        }
    }

    /// Takes or renews the lease on `endpoint`; a store that cannot be reached counts as no.
    async fn hold(&self, endpoint: &str) -> bool {
        let now = self.clock.now();
        let until = now + TimeDelta::from_std(self.duration).unwrap_or(TimeDelta::seconds(10));
        match self
            .store
            .lease_endpoint(endpoint, &self.node, now, until)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(endpoint, error = %e, "cannot renew the endpoint's lease; its pump stops");
                false
            }
        }
    }

    async fn release(&self, endpoint: &str) {
        if let Err(e) = self.store.release_endpoint(endpoint, &self.node).await {
            tracing::warn!(endpoint, error = %e, "cannot give the endpoint's lease up; it runs out");
        }
    }
}

/// The pumps of a hub's external endpoints (see the module documentation).
pub struct EndpointPumps {
    streams: Arc<dyn EndpointStreams>,
    sinks: SinkFactory,
    /// Applied to every pump, with each endpoint's own `maxDeliveryCount`.
    config: PumpConfig,
    running: Mutex<BTreeMap<String, (Settings, Pump)>>,
    /// Where leases are taken and health written, when nodes share a store.
    leases: Option<Leases>,
}

impl std::fmt::Debug for EndpointPumps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPumps")
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

fn key(name: &str) -> String {
    // Endpoint names are case-insensitive.
    name.to_ascii_lowercase()
}

impl EndpointPumps {
    pub fn new(streams: Arc<dyn EndpointStreams>, sinks: SinkFactory, config: PumpConfig) -> Self {
        EndpointPumps {
            streams,
            sinks,
            config,
            running: Mutex::new(BTreeMap::new()),
            leases: None,
        }
    }

    /// The same pumps, each run only while this node holds its endpoint's lease in `leases`'
    /// store (see [`EndpointPumps::apply_leased`]), and writing its health there.
    pub fn with_leases(mut self, leases: Leases) -> Self {
        self.leases = Some(leases);
        self
    }

    /// Runs the pumps of those of `endpoints` whose lease this node holds or takes now, and
    /// renews those leases; call it well within the lease time (every second, say). Without
    /// leases, the same as [`EndpointPumps::apply`].
    pub async fn apply_leased(&self, endpoints: &[Settings]) -> Result<(), EndpointConfigError> {
        let Some(leases) = &self.leases else {
            return self.apply(endpoints).await;
        };
        let mut held = Vec::new();
        for settings in endpoints {
            if leases.hold(settings.name()).await {
                held.push(settings.clone());
            }
        }
        let result = self.apply(&held).await;
        // A lease taken for a pump that could not start is given back for another node.
        let running = self.running.lock().await;
        for settings in &held {
            if !running.contains_key(&key(settings.name())) {
                leases.release(settings.name()).await;
            }
        }
        result
    }

    /// Runs exactly the pumps of `endpoints`. Every sink is built before any pump changes, so
    /// a document whose sink cannot be built changes nothing.
    pub async fn apply(&self, endpoints: &[Settings]) -> Result<(), EndpointConfigError> {
        let mut running = self.running.lock().await;
        let mut wanted: BTreeMap<String, (Settings, Option<Arc<dyn Sink>>)> = BTreeMap::new();
        for settings in endpoints {
            let unchanged = running
                .get(&key(settings.name()))
                .is_some_and(|(current, _)| current == settings);
            let sink = if unchanged {
                None
            } else {
                Some((self.sinks)(settings)?)
            };
            wanted.insert(key(settings.name()), (settings.clone(), sink));
        }
        let mut opened = Vec::new();
        for (name, (settings, sink)) in &wanted {
            if let Some(sink) = sink {
                let stream_error = |e: ironhub_store::StoreError| {
                    EndpointConfigError::new(format!(
                        "the streams of endpoint '{}' cannot be opened: {e}",
                        settings.name()
                    ))
                };
                let delivery = self
                    .streams
                    .delivery_stream(settings.name())
                    .await
                    .map_err(stream_error)?;
                let dead = self
                    .streams
                    .dead_letters(settings.name())
                    .await
                    .map_err(stream_error)?;
                opened.push((name.clone(), settings.clone(), sink.clone(), delivery, dead));
            }
        }
        let gone: Vec<String> = running
            .keys()
            .filter(|name| wanted.get(*name).is_none_or(|(_, sink)| sink.is_some()))
            .cloned()
            .collect();
        for name in gone {
            if let Some((_, pump)) = running.remove(&name) {
                pump.stop().await;
            }
        }
        for (name, settings, sink, delivery, dead) in opened {
            let config = PumpConfig {
                max_delivery_count: settings.max_delivery_count(),
                ..self.config.clone()
            };
            let pump = Pump::start(settings.name(), delivery, sink, dead, config);
            if let Some(leases) = &self.leases {
                tokio::spawn(report_health(pump.watch(), leases.store.clone()));
            }
            running.insert(name, (settings, pump));
        }
        Ok(())
    }

    /// The status of every running endpoint, by name.
    pub async fn statuses(&self) -> Vec<EndpointStatus> {
        self.running
            .lock()
            .await
            .values()
            .map(|(_, pump)| pump.status())
            .collect()
    }

    /// The status of endpoint `name`, if it runs.
    pub async fn status(&self, name: &str) -> Option<EndpointStatus> {
        self.running
            .lock()
            .await
            .get(&key(name))
            .map(|(_, pump)| pump.status())
    }

    /// The status of endpoint `name` as it changes, if it runs.
    pub async fn watch(&self, name: &str) -> Option<tokio::sync::watch::Receiver<EndpointStatus>> {
        self.running
            .lock()
            .await
            .get(&key(name))
            .map(|(_, pump)| pump.watch())
    }

    /// Stops every pump (at shutdown), then gives their leases up so that another node takes
    /// the endpoints over at once.
    pub async fn stop(&self) {
        let running = std::mem::take(&mut *self.running.lock().await);
        for (_, (settings, pump)) in running {
            pump.stop().await;
            if let Some(leases) = &self.leases {
                leases.release(settings.name()).await;
            }
        }
    }
}

/// Writes a pump's health to the store each time it changes (at most every
/// [`HEALTH_INTERVAL`]), until the pump is gone.
async fn report_health(
    mut status: tokio::sync::watch::Receiver<EndpointStatus>,
    store: Arc<dyn RoutingStore>,
) {
    let mut last = None;
    while status.changed().await.is_ok() {
        let health = status.borrow_and_update().to_health();
        if last.as_ref() != Some(&health) {
            if let Err(e) = store.put_endpoint_health(health.clone()).await {
                tracing::warn!(endpoint = %health.endpoint_id, error = %e, "cannot record the endpoint's health");
            }
            last = Some(health);
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
    // The pump stopped: what it saw last.
    let health = status.borrow().to_health();
    if last.as_ref() != Some(&health) {
        let _ = store.put_endpoint_health(health).await;
    }
}

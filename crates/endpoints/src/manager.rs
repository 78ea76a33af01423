//! [`EndpointPumps`]: one running pump per configured external endpoint, brought in line with
//! the routing document each time it changes (`apply`): pumps of removed endpoints stop, an
//! endpoint whose settings changed restarts with its new sink, new endpoints start. The
//! streams come from the server ([`EndpointStreams`]), so the crate stays free of the hub.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use ironhub_store::EventLog;
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

/// The pumps of a hub's external endpoints (see the module documentation).
pub struct EndpointPumps {
    streams: Arc<dyn EndpointStreams>,
    sinks: SinkFactory,
    /// Applied to every pump, with each endpoint's own `maxDeliveryCount`.
    config: PumpConfig,
    running: Mutex<BTreeMap<String, (Settings, Pump)>>,
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
        }
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

    /// Stops every pump (at shutdown).
    pub async fn stop(&self) {
        let running = std::mem::take(&mut *self.running.lock().await);
        for (_, (_, pump)) in running {
            pump.stop().await;
        }
    }
}

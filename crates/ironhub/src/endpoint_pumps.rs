//! The delivery pumps of routing's external endpoints (files, webhooks, NATS subjects): one
//! per endpoint of the stored routing document, following it as it changes (read every
//! `routing::REFRESH`), reading the endpoint's delivery stream `$delivery.{name}` and
//! dead-lettering into `$deadletter.{name}`. File endpoints with a relative `containerName`
//! write under `DATA_DIR/endpoints`. Among nodes sharing a store, a node runs an endpoint's
//! pump only while it holds the endpoint's lease (renewed every `routing::REFRESH`), and each
//! pump writes its health to the store, where `Hub::endpoint_health` reads it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ironhub_endpoints::{
    EndpointPumps, EndpointStreams, Leases, PumpConfig, SinkContext, SinkFactory,
};
use ironhub_hub::Hub;
use ironhub_hub::routing::config::{
    DEFAULT_PARTITIONS, dead_letter_stream_name, delivery_stream_name, external_endpoints,
};
use ironhub_store::{Clock, EventLog, EventStreams, RoutingStore};
use tokio::sync::watch;

#[derive(Debug)]
struct HubStreams(Arc<dyn EventStreams>);

#[async_trait]
impl EndpointStreams for HubStreams {
    async fn delivery_stream(&self, endpoint: &str) -> ironhub_store::Result<Arc<dyn EventLog>> {
        self.0
            .open_stream(&delivery_stream_name(endpoint), DEFAULT_PARTITIONS)
            .await
    }

    async fn dead_letters(&self, endpoint: &str) -> ironhub_store::Result<Arc<dyn EventLog>> {
        self.0
            .open_stream(&dead_letter_stream_name(endpoint), 1)
            .await
    }
}

/// Runs the pumps until `shutdown`, then stops them (each closes its open file chunk) and
/// gives their leases up. Leases hold `lease` (normally `ironhub_endpoints::ENDPOINT_LEASE`)
/// by `clock`.
pub async fn run(
    hub: Hub,
    file_root: PathBuf,
    clock: Arc<dyn Clock>,
    lease: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(streams) = hub.event_streams().cloned() else {
        return;
    };
    let context = SinkContext {
        hub_name: ironhub_hub::events::event_hub_name(hub.host_name()).to_owned(),
        file_root,
    };
    let factory: SinkFactory = Arc::new(move |s| ironhub_endpoints::sink(s, &context));
    let store: Arc<dyn RoutingStore> = hub.store().clone();
    let pumps = EndpointPumps::new(
        Arc::new(HubStreams(streams)),
        factory,
        PumpConfig::default(),
    )
    .with_leases(Leases::new(store, hub.node_id(), lease, clock));
    loop {
        // Every time, not only when the document changes: the leases are renewed here.
        match hub.routing_config().await {
            Ok((config, _)) => {
                if let Err(e) = pumps.apply_leased(&external_endpoints(&config)).await {
                    tracing::warn!(error = %e, "routing endpoints not started; retrying");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the routing document"),
        }
        tokio::select! {
            () = tokio::time::sleep(ironhub_hub::routing::REFRESH) => {}
            _ = shutdown.changed() => break,
        }
    }
    pumps.stop().await;
}

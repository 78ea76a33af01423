//! The delivery pumps of routing's external endpoints (files, webhooks, NATS subjects): one
//! per endpoint of the stored routing document, following it as it changes (read every
//! `routing::REFRESH`), reading the endpoint's delivery stream `$delivery.{name}` and
//! dead-lettering into `$deadletter.{name}`. File endpoints with a relative `containerName`
//! write under `DATA_DIR/endpoints`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use ironhub_endpoints::{EndpointPumps, EndpointStreams, PumpConfig, SinkContext, SinkFactory};
use ironhub_hub::Hub;
use ironhub_hub::routing::config::{
    DEFAULT_PARTITIONS, dead_letter_stream_name, delivery_stream_name, external_endpoints,
};
use ironhub_store::{EventLog, EventStreams};
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

/// Runs the pumps until `shutdown`, then stops them (each closes its open file chunk).
pub(crate) async fn run(hub: Hub, file_root: PathBuf, mut shutdown: watch::Receiver<bool>) {
    let Some(streams) = hub.event_streams().cloned() else {
        return;
    };
    let context = SinkContext {
        hub_name: ironhub_hub::events::event_hub_name(hub.host_name()).to_owned(),
        file_root,
    };
    let factory: SinkFactory = Arc::new(move |s| ironhub_endpoints::sink(s, &context));
    let pumps = EndpointPumps::new(
        Arc::new(HubStreams(streams)),
        factory,
        PumpConfig::default(),
    );
    let mut applied: Option<Option<String>> = None;
    loop {
        match hub.routing_config().await {
            Ok((config, etag)) if applied.as_ref() != Some(&etag) => {
                match pumps.apply(&external_endpoints(&config)).await {
                    Ok(()) => applied = Some(etag),
                    Err(e) => {
                        tracing::warn!(error = %e, "routing endpoints not started; retrying")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the routing document"),
        }
        tokio::select! {
            () = tokio::time::sleep(ironhub_hub::routing::REFRESH) => {}
            _ = shutdown.changed() => break,
        }
    }
    pumps.stop().await;
}

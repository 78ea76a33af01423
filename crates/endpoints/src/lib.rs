//! Routing's external endpoints. The seam has three steps:
//!
//! 1. [`validate`]: an endpoint's settings as the routing document holds them (one entry of
//!    `storageContainers`, `webhooks` or `natsSubjects`) → typed [`Settings`], or an
//!    [`EndpointConfigError`] naming the field and the rule;
//! 2. [`sink`]: settings → an `Arc<dyn Sink>` that delivers batches of one partition
//!    ([`FileSink`], [`WebhookSink`], [`NatsSink`]);
//! 3. [`Pump::start`]: the endpoint's delivery stream (an `EventLog` the router appends the
//!    routed messages to), the sink and a dead-letter log → a running pump with retries,
//!    dead-lettering and an [`EndpointStatus`] in IoT Hub's health terms.
//!
//! [`EndpointPumps`] keeps one pump per endpoint of the routing document as it changes, and,
//! with [`Leases`], one node delivering to each endpoint among nodes sharing a store.
//!
//! The crate knows the ports of `ironhub-store` only, not the hub.

pub mod blob_container;
mod error;
mod file;
mod file_name;
mod headers;
mod manager;
mod nats;
mod pump;
mod record;
mod settings;
mod sink;
mod status;
mod subject;
mod webhook;

use std::path::PathBuf;
use std::sync::Arc;

pub use file::FileSink;
pub use file_name::{DEFAULT_FORMAT as DEFAULT_FILE_NAME_FORMAT, FileNameFormat};
pub use headers::{DELIVERY_ID, message_headers};
pub use manager::{ENDPOINT_LEASE, EndpointPumps, EndpointStreams, Leases, SinkFactory};
pub use nats::NatsSink;
pub use pump::{Pump, PumpConfig, dead_letter};
pub use record::{AVRO_SCHEMA, AVRO_SCHEMA_JSON, ENQUEUED_TIME_PROPERTY, avro_record, json_line};
pub use settings::*;
pub use sink::{Accepted, BatchError, DeliveryError, Sink};
pub use status::{EndpointStatus, Health};
pub use subject::{check_subject, render_subject};
pub use webhook::WebhookSink;

/// What a sink needs from the server besides its settings.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// The hub's name (`{iothub}` in file names).
    pub hub_name: String,
    /// Where relative `containerName`s of file endpoints live (e.g. `DATA_DIR/endpoints`).
    pub file_root: PathBuf,
}

/// The sink for validated `settings`. Fails only for what needs the machine (a directory that
/// cannot be created, a CA file that cannot be loaded); an endpoint that is down is not an
/// error here but a delivery failure the pump retries.
pub fn sink(
    settings: &Settings,
    context: &SinkContext,
) -> Result<Arc<dyn Sink>, EndpointConfigError> {
    Ok(match settings {
        Settings::StorageContainer(s) => {
            Arc::new(FileSink::new(s, &context.hub_name, &context.file_root)?)
        }
        Settings::Webhook(s) => Arc::new(WebhookSink::new(s)?),
        Settings::NatsSubject(s) => Arc::new(NatsSink::new(s)),
    })
}

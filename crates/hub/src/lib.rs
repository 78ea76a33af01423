//! The IoT Hub domain, free of any transport: the device registry and its rules,
//! authorization, twins, cloud-to-device messaging and direct methods.
//!
//! Adapters (HTTP, MQTT) parse the wire, call [`Hub`], and render the answer in the wire's
//! own words; [`HubError`] carries IoT Hub's status and error code for that.

mod auth;
pub mod body;
pub mod c2d;
pub mod ca;
mod certificates;
pub mod configurations;
pub mod credentials;
mod device;
mod device_auth;
pub mod digital_twin;
pub mod edge_callers;
pub mod epochs;
mod error;
pub mod events;
pub mod file_upload;
pub mod frame_limits;
pub mod health;
pub mod issuing_cas;
pub mod jobs;
pub mod keys;
pub mod methods;
pub mod model;
pub mod module_inputs;
pub mod module_twin;
pub mod modules;
mod monitoring;
pub mod network;
mod node;
pub mod nul;
pub mod on_behalf_of;
pub mod query;
pub mod registry;
pub mod routing;
pub mod scopes;
mod server_ca;
mod session;
mod sign_in_limit;
pub mod telemetry;
pub mod throttle;
pub mod twin;

use std::sync::Arc;

use chrono::Utc;
use ironhub_store::{Clock, DeviceBus, EventLog, EventStreams, HubSettings, Store, SystemClock};

pub use auth::{Principal, ServiceGrant};
pub use device::{AuthMethod, DeviceAuth, DeviceIdentity};
pub use device_auth::{AuthenticatedDevice, DeviceLogin};
pub use error::HubError;
pub use node::{NODE_LEASE, Recovered};
pub use session::DeviceSession;
pub use sign_in_limit::FAILED_SIGN_INS_PER_MINUTE;
pub use telemetry::{Annotations, MAX_TELEMETRY_BYTES, SystemProperties, Telemetry, TelemetryRun};

/// The shared state a hub runs on (see `DESIGN.md`: store, event log, device bus).
#[derive(Debug, Clone)]
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub events: Arc<dyn EventLog>,
    pub bus: Arc<dyn DeviceBus>,
}

/// One IoT Hub: its settings, the names it answers to, and the store that holds its state.
#[derive(Debug, Clone)]
pub struct Hub {
    store: Arc<dyn Store>,
    events: Arc<dyn EventLog>,
    bus: Arc<dyn DeviceBus>,
    /// Where the time rules (message expiry, locks) read the time.
    clock: Arc<dyn Clock>,
    settings: Arc<HubSettings>,
    host_names: Arc<Vec<String>>,
    /// File upload, when the hub has a storage account (see `Hub::with_file_upload`).
    file_upload: Option<Arc<file_upload::FileUpload>>,
    /// When each device's `lastActivityTime` was last written (see `Hub::touch`).
    activity: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// The CAs that sign devices' CSRs, when the server issues certificates.
    issuing_cas: Option<Arc<issuing_cas::IssuingCas>>,
    /// Named event streams, for routing endpoints (see `Hub::with_event_streams`).
    streams: Option<Arc<dyn EventStreams>>,
    /// This node's copy of the routing document.
    routing: Arc<routing::RoutingCache>,
    /// This node's drain (see `health`).
    drain: health::Drain,
    /// The limiter, when throttling is configured (see `throttle`).
    throttle: Option<Arc<throttle::Throttle>>,
    /// Where failed console sign-ins are counted (see `sign_in_limit`).
    rate_windows: Option<Arc<dyn ironhub_store::RateWindows>>,
    /// The CA certificate clients trust (see `server_ca`).
    server_ca: Option<Arc<str>>,
    /// Who may call the service APIs: policies and/or bearer tokens (see `auth`).
    access: Arc<ironhub_auth::access::ServiceAccess>,
    /// This node's copy of the network rules.
    network: Arc<network::NetworkCache>,
    /// Wakes this node's configurations pass (`configurations::apply`): a hint, the state is
    /// in the store.
    configurations_kick: Arc<tokio::sync::Notify>,
    /// Wakes this node's jobs runner (`jobs::runner`): a hint, the jobs are in the store.
    jobs_kick: Arc<tokio::sync::Notify>,
    /// Whether this node's last pass found no configuration and nothing to clear.
    configurations_idle: Arc<std::sync::atomic::AtomicBool>,
    /// The transports' read limits.
    frame_limits: frame_limits::FrameLimits,
}

impl Hub {
    /// Opens the hub kept in `backends`, creating its settings (policies and keys) on first
    /// start.
    pub async fn open(backends: Backends, host_names: Vec<String>) -> Result<Self, HubError> {
        let Backends { store, events, bus } = backends;
        let init = HubSettings {
            policies: ironhub_auth::default_hub_policies(),
            created_time: Utc::now(),
        };
        let settings = store.hub_settings_or_init(init).await?;
        Ok(Hub {
            store,
            events,
            bus,
            clock: Arc::new(SystemClock),
            settings: Arc::new(settings),
            host_names: Arc::new(host_names),
            file_upload: None,
            activity: Arc::default(),
            issuing_cas: None,
            streams: None,
            routing: Arc::default(),
            drain: health::Drain::default(),
            throttle: None,
            rate_windows: None,
            server_ca: None,
            access: Arc::new(ironhub_auth::access::ServiceAccess::local(
                ironhub_auth::oidc::IOT_HUB_AUDIENCE,
            )),
            network: Arc::default(),
            configurations_kick: Arc::default(),
            configurations_idle: Arc::default(),
            jobs_kick: Arc::default(),
            frame_limits: frame_limits::FrameLimits::default(),
        })
    }

    /// The same hub reading the time from `clock` (tests move time instead of sleeping; the
    /// store should read the same clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same hub, its transports reading frames and packets up to `limits`.
    pub fn with_frame_limits(mut self, limits: frame_limits::FrameLimits) -> Self {
        self.frame_limits = limits;
        self
    }

    /// The transports' read limits.
    pub fn frame_limits(&self) -> frame_limits::FrameLimits {
        self.frame_limits
    }

    /// The same hub, throttling operations with `throttle` (shared with the DPS of the node).
    pub fn with_throttle(mut self, throttle: Arc<throttle::Throttle>) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// Admits one operation of kind `op` (by or aimed at `device`), or refuses it with IoT
    /// Hub's throttling error; always admits when throttling is off.
    pub fn admit(&self, op: throttle::Operation, device: Option<&str>) -> Result<(), HubError> {
        match &self.throttle {
            Some(t) => t.admit(op, device),
            None => Ok(()),
        }
    }

    /// The time by the hub's clock.
    pub fn now(&self) -> chrono::DateTime<Utc> {
        self.clock.now()
    }

    /// The same hub, issuing device certificates with `cas` and trusting what they issued.
    pub fn with_issuing_cas(mut self, cas: Arc<issuing_cas::IssuingCas>) -> Self {
        self.issuing_cas = Some(cas);
        self
    }

    /// The CAs that sign devices' CSRs, if the hub issues certificates.
    pub fn issuing_cas(&self) -> Option<&Arc<issuing_cas::IssuingCas>> {
        self.issuing_cas.as_ref()
    }

    /// The hub's host name: the first configured name.
    pub fn host_name(&self) -> &str {
        self.host_names.first().map_or("localhost", String::as_str)
    }

    /// The hub's settings.
    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    /// The store behind the hub.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The event log telemetry goes to.
    pub fn events(&self) -> &Arc<dyn EventLog> {
        &self.events
    }

    /// The bus that reaches connected devices.
    pub fn bus(&self) -> &Arc<dyn DeviceBus> {
        &self.bus
    }
}

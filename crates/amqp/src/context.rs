//! What every AMQP connection of a server shares.

use std::time::Duration;

use ironhub_dps::Dps;
use ironhub_hub::Hub;
use ironhub_hub::network::NetworkEndpoint;

/// The idle time-out IoT Hub advertises in its `open` (4 minutes): a client sends at least an
/// empty frame that often, and a connection silent for twice that long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(240);

/// What every AMQP connection of a server shares.
#[derive(Debug, Clone)]
pub struct AmqpContext {
    pub hub: Hub,
    /// The DPS instance whose device registration API the connections serve, if any
    /// ([`AmqpContext::with_dps`]).
    pub dps: Option<Dps>,
    /// The Event Hubs-compatible entity's name (`EntityPath`).
    pub entity: String,
    /// The port AMQP over TLS listens on (told to clients that follow a redirect).
    pub port: u16,
    /// The idle time-out advertised to clients ([`IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// Whether connections come through a listener named a private endpoint.
    pub private_endpoint: bool,
}

impl AmqpContext {
    /// The endpoint of `hub`, its entity named as [`ironhub_hub::events::event_hub_name`] does.
    pub fn new(hub: Hub, port: u16) -> Self {
        let entity = ironhub_hub::events::event_hub_name(hub.host_name()).to_owned();
        AmqpContext {
            hub,
            dps: None,
            entity,
            port,
            idle_timeout: IDLE_TIMEOUT,
            private_endpoint: false,
        }
    }

    /// The endpoint that also serves `dps`'s device registration API
    /// (`{idScope}/registrations/{registrationId}` links).
    pub fn with_dps(self, dps: Dps) -> Self {
        AmqpContext {
            dps: Some(dps),
            ..self
        }
    }

    /// The endpoint kinds an AMQP connection may reach: what the network rules are asked at
    /// accept time, and what an open connection is closed for when none admits it any more.
    pub const ENDPOINTS: &'static [NetworkEndpoint] = &[
        NetworkEndpoint::HubDevice,
        NetworkEndpoint::HubService,
        NetworkEndpoint::HubEventHub,
        NetworkEndpoint::DpsDevice,
    ];
}

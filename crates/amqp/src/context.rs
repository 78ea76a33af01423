//! What every AMQP connection of a server shares.

use ironhub_hub::Hub;

/// What every AMQP connection of a server shares.
#[derive(Debug, Clone)]
pub struct AmqpContext {
    pub hub: Hub,
    /// The Event Hubs-compatible entity's name (`EntityPath`).
    pub entity: String,
    /// The port AMQP over TLS listens on (told to clients that follow a redirect).
    pub port: u16,
}

impl AmqpContext {
    /// The endpoint of `hub`, its entity named as [`ironhub_hub::events::event_hub_name`] does.
    pub fn new(hub: Hub, port: u16) -> Self {
        let entity = ironhub_hub::events::event_hub_name(hub.host_name()).to_owned();
        AmqpContext { hub, entity, port }
    }
}

//! The health of the routing endpoints, as IoT Hub's ARM resource answers
//! `routingEndpointsHealth`: every external endpoint of the routing document (files, webhooks,
//! NATS subjects) in the document's order, with what the node delivering to it last recorded
//! in the store, or `unknown` when no node has tried it yet. The built-in `events` and the
//! event stream endpoints are not listed: their messages are written with the send itself (a
//! failed write fails the send), so they have no delivery of their own to be healthy or not.

use ironhub_wire::hub::{EndpointHealth, EndpointHealthList};

use super::{RoutingRules, Target};
use crate::{Hub, HubError};

impl Hub {
    /// `GET /routingEndpointsHealth`.
    pub async fn endpoint_health(&self) -> Result<EndpointHealthList, HubError> {
        let compiled = self.compiled_routing().await?;
        let recorded = self.store.endpoint_health().await?;
        let value = compiled
            .config
            .targets()
            .into_iter()
            .filter(|(_, target)| matches!(target, Target::External { .. }))
            .map(|(name, _)| {
                recorded
                    .iter()
                    .find(|h| h.endpoint_id.eq_ignore_ascii_case(&name))
                    .map_or_else(
                        || EndpointHealth {
                            endpoint_id: name.clone(),
                            ..EndpointHealth::default()
                        },
                        |h| EndpointHealth {
                            endpoint_id: name.clone(),
                            ..h.clone()
                        },
                    )
            })
            .collect();
        Ok(EndpointHealthList {
            value,
            next_link: None,
        })
    }
}

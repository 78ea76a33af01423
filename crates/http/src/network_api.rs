//! Network rules over REST, and their check on every request.
//!
//! ironhub's own paths for what IoT Hub and DPS configure through their ARM resources
//! (`properties.publicNetworkAccess`, `properties.ipFilterRules`, IoT Hub's
//! `properties.networkRuleSets`), with the same property names:
//!
//! - `GET /networkRules` (NetworkRulesRead) → the hub's rules with their `ETag` (none before any
//!   were written); `PUT /networkRules` (NetworkRulesWrite), optional `If-Match` → the rules as
//!   stored and the new `ETag`. Bad rules (a mask that does not parse, a name used twice,
//!   more than 100 rules) are `400` (`ArgumentInvalid`) and change nothing; a stale
//!   `If-Match` is `412`.
//! - `GET /dps/networkRules` (DpsNetworkRulesRead), `PUT /dps/networkRules` (DpsNetworkRulesWrite): the
//!   DPS instance's, the same way, in DPS's errors.
//!
//! [`check`] runs before every route: a request from an address the rules refuse for the
//! route's endpoint (device, service, the Event Hubs-compatible stream, DPS device or service
//! API) is answered `401` as IoT Hub and DPS answer it, without naming the rule.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ironhub_dps::{Dps, DpsError};
use ironhub_hub::network::NetworkEndpoint;
use ironhub_hub::{Hub, HubError};
use ironhub_store::NetworkScope;
use ironhub_wire::network::NetworkRules;

use crate::auth::{
    DpsNetworkRulesRead, DpsNetworkRulesWrite, NetworkRulesRead, NetworkRulesWrite, ServiceAuth,
};
use crate::body::JsonBody;
use crate::error::{ApiError, DpsApiError};
use crate::listener::ConnectionInfo;
use crate::respond::{if_match, json_body, with_etag};

pub(crate) fn routes() -> Router<Hub> {
    Router::new().route("/networkRules", get(get_rules).put(put_rules))
}

/// The DPS instance's rules; `hub` is told of a change, so this node applies it at once.
pub(crate) fn dps_routes(hub: Hub) -> Router<Dps> {
    Router::new().route(
        "/dps/networkRules",
        get(get_dps_rules).put(
            move |State(dps): State<Dps>,
                  headers: HeaderMap,
                  auth: ServiceAuth<DpsNetworkRulesWrite>,
                  body: JsonBody<NetworkRules>| {
                put_dps_rules(hub, dps, headers, auth, body)
            },
        ),
    )
}

fn answer(rules: &NetworkRules, etag: Option<&str>) -> Response {
    let response = json_body(rules);
    match etag {
        Some(etag) => with_etag(response, etag),
        None => response,
    }
}

async fn get_rules(
    State(hub): State<Hub>,
    _: ServiceAuth<NetworkRulesRead>,
) -> Result<Response, ApiError> {
    let (rules, etag) = hub.network_rules(NetworkScope::Hub).await?;
    Ok(answer(&rules, etag.as_deref()))
}

async fn put_rules(
    State(hub): State<Hub>,
    headers: HeaderMap,
    _: ServiceAuth<NetworkRulesWrite>,
    JsonBody(rules): JsonBody<NetworkRules>,
) -> Result<Response, ApiError> {
    let (rules, etag) = hub
        .set_network_rules(NetworkScope::Hub, rules, if_match(&headers))
        .await?;
    Ok(answer(&rules, Some(&etag)))
}

async fn get_dps_rules(
    State(dps): State<Dps>,
    _: ServiceAuth<DpsNetworkRulesRead>,
) -> Result<Response, DpsApiError> {
    let (rules, etag) = dps.network_rules().await?;
    Ok(answer(&rules, etag.as_deref()))
}

async fn put_dps_rules(
    hub: Hub,
    dps: Dps,
    headers: HeaderMap,
    _: ServiceAuth<DpsNetworkRulesWrite>,
    JsonBody(rules): JsonBody<NetworkRules>,
) -> Result<Response, DpsApiError> {
    let (rules, etag) = dps.set_network_rules(rules, if_match(&headers)).await?;
    if let Err(e) = hub.reload_network_rules().await {
        // Stored: every node (this one too) applies it within a second anyway.
        tracing::warn!(error = %e, "cannot reload the network rules");
    }
    Ok(answer(&rules, Some(&etag)))
}

/// The endpoints a request's path reaches (normalized DPS paths). WebSocket upgrades carry
/// MQTT or AMQP, whose sessions ask again once they know which endpoint they are.
fn endpoints_of(path: &str) -> &'static [NetworkEndpoint] {
    use NetworkEndpoint::*;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let first = segments.first().copied().unwrap_or_default();
    if first == "$iothub" {
        return &[HubDevice, DpsDevice, HubService, HubEventHub];
    }
    if first == "$servicebus" {
        return &[HubEventHub, HubService];
    }
    if ["enrollments", "enrollmentGroups", "registrations", "dps"].contains(&first) {
        return &[DpsService];
    }
    if segments.len() >= 3 && segments[1] == "registrations" {
        return &[DpsDevice];
    }
    if first == "events" {
        return &[HubEventHub];
    }
    let device_messages = segments.windows(2).any(|w| {
        w[0] == "messages" && (w[1] == "events" || w[1].eq_ignore_ascii_case("deviceBound"))
    });
    if first == "devices" && (device_messages || segments.get(2) == Some(&"files")) {
        return &[HubDevice];
    }
    &[HubService]
}

/// The request with its client as a [`ironhub_hub::network::Peer`] extension, for handlers
/// outside this crate (the console).
pub(crate) async fn with_peer(mut request: Request) -> Request {
    if let Some(peer) = request
        .extensions()
        .get::<ConnectionInfo>()
        .map(ConnectionInfo::network_peer)
    {
        request.extensions_mut().insert(peer);
    }
    request
}

/// Refuses a request whose client the network rules refuse for the route's endpoint.
pub(crate) async fn check(State(hub): State<Hub>, request: Request, next: Next) -> Response {
    let Some(peer) = request
        .extensions()
        .get::<ConnectionInfo>()
        .map(ConnectionInfo::network_peer)
    else {
        // A request made in process (tests) has no client address to check.
        return next.run(request).await;
    };
    let endpoints = endpoints_of(request.uri().path());
    if hub.network_admits_any(&peer, endpoints).await {
        return next.run(request).await;
    }
    tracing::info!(peer = %peer.ip, ?endpoints, "request refused by the network rules");
    if endpoints.iter().all(|e| e.is_dps()) {
        DpsApiError::from(DpsError::Unauthorized("Unauthorized".into())).into_response()
    } else {
        ApiError::from(HubError::Unauthorized("Unauthorized".into())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_endpoints() {
        use NetworkEndpoint::*;
        assert_eq!(endpoints_of("/devices/d1/messages/events"), [HubDevice]);
        assert_eq!(
            endpoints_of("/devices/d1/messages/deviceBound/abc"),
            [HubDevice]
        );
        assert_eq!(
            endpoints_of("/devices/d1/modules/m/messages/events"),
            [HubDevice]
        );
        assert_eq!(endpoints_of("/devices/d1/files"), [HubDevice]);
        assert_eq!(endpoints_of("/devices/d1"), [HubService]);
        assert_eq!(endpoints_of("/twins/d1/methods"), [HubService]);
        assert_eq!(endpoints_of("/networkRules"), [HubService]);
        assert_eq!(
            endpoints_of("/events/consumergroups/$Default/stream"),
            [HubEventHub]
        );
        assert_eq!(endpoints_of("/enrollments/e1"), [DpsService]);
        assert_eq!(endpoints_of("/dps/networkRules"), [DpsService]);
        assert_eq!(
            endpoints_of("/0ne0001/registrations/r1/register"),
            [DpsDevice]
        );
        assert!(endpoints_of("/$iothub/websocket").contains(&DpsDevice));
    }
}

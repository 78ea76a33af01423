//! Message routing over REST: ironhub's own paths for what IoT Hub configures through its ARM
//! resource (`properties.routing`) and tests with ARM's `testRoute` / `testAllRoutes`.
//!
//! - `GET /routing` (RegistryRead) → the routing document (`endpoints`, `routes`,
//!   `fallbackRoute`, `enrichments`) with its `ETag` (none before one was written)
//! - `PUT /routing` (RegistryWrite), optional `If-Match` → the document as stored, new `ETag`;
//!   a document that fails validation is `400` (`ArgumentInvalid`, the message names the
//!   mistake) and changes nothing; a stale `If-Match` is `412`
//! - `POST /routing/routes/$testnew` (RegistryRead) with ARM's `TestRouteInput`
//!   (`{"message": {"body", "appProperties", "systemProperties"}, "route": {…}, "twin": {…}}`)
//!   → ARM's `TestRouteResult` (`{"result": "true"|"false"|"undefined", "details":
//!   {"compilationErrors": […]}}`)
//! - `POST /routing/routes/$testall` (RegistryRead) with ARM's `TestAllRoutesInput`
//!   (`{"routingSource", "message", "twin"}`) → `{"routes": [{"properties": route}]}`
//! - `GET /routingEndpointsHealth` (RegistryRead) → ARM's `EndpointHealthDataListResult`
//!   (`{"value": [{"endpointId", "healthStatus", "lastKnownError", …}]}`), named as ARM's
//!   path under the hub resource

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use ironhub_hub::Hub;
use ironhub_hub::routing::{RoutingConfig, RoutingSource};
use ironhub_wire::hub::{MatchedRoute, TestAllRoutesInput, TestAllRoutesResult, TestRouteInput};

use crate::auth::{RoutingRead, RoutingWrite, ServiceAuth};
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::respond::{if_match, json_body, with_etag};

pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/routing", get(get_routing).put(put_routing))
        .route("/routing/routes/$testnew", post(test_new))
        .route("/routing/routes/$testall", post(test_all))
        .route("/routingEndpointsHealth", get(endpoint_health))
}

async fn endpoint_health(
    State(hub): State<Hub>,
    _: ServiceAuth<RoutingRead>,
) -> Result<Response, ApiError> {
    Ok(json_body(&hub.endpoint_health().await?))
}

async fn get_routing(
    State(hub): State<Hub>,
    _: ServiceAuth<RoutingRead>,
) -> Result<Response, ApiError> {
    let (config, etag) = hub.routing_config().await?;
    let response = json_body(&config);
    Ok(match etag {
        Some(etag) => with_etag(response, &etag),
        None => response,
    })
}

async fn put_routing(
    State(hub): State<Hub>,
    headers: HeaderMap,
    _: ServiceAuth<RoutingWrite>,
    JsonBody(config): JsonBody<RoutingConfig>,
) -> Result<Response, ApiError> {
    let (config, etag) = hub.set_routing_config(config, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", routes = config.routes.len(), "routing updated");
    Ok(with_etag(json_body(&config), &etag))
}

async fn test_new(
    State(hub): State<Hub>,
    _: ServiceAuth<RoutingRead>,
    JsonBody(input): JsonBody<TestRouteInput>,
) -> Result<Response, ApiError> {
    Ok(json_body(&hub.test_route(
        &input.route,
        &input.message,
        input.twin.as_ref(),
    )))
}

async fn test_all(
    State(hub): State<Hub>,
    _: ServiceAuth<RoutingRead>,
    JsonBody(input): JsonBody<TestAllRoutesInput>,
) -> Result<Response, ApiError> {
    let source = input
        .routing_source
        .as_deref()
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("Invalid"))
        .map(RoutingSource::parse)
        .transpose()
        .map_err(|e| ApiError::from(ironhub_hub::HubError::ArgumentInvalid(e)))?;
    let routes = hub
        .test_all_routes(source, &input.message, input.twin.as_ref())
        .await?
        .into_iter()
        .map(|properties| MatchedRoute { properties })
        .collect();
    Ok(json_body(&TestAllRoutesResult { routes }))
}

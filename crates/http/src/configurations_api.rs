//! The IoT Hub service REST API of automatic device management and IoT Edge deployments:
//! `/configurations[/{id}]`, `/configurations/testQueries` and
//! `/devices/{id}/applyConfigurationContent` (the domain is `hub::configurations`).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ironhub_hub::Hub;
use ironhub_hub::model::{Configuration, ConfigurationContent};

use crate::auth::{DeviceRead, DeviceWrite, ServiceAuth};
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::extract::{QueryArgs, Segments, TopQuery};
use crate::respond::{if_match, json_body, with_etag};

/// The routes of configurations and deployments.
pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/configurations", get(list_configurations))
        .route("/configurations/testQueries", post(test_queries))
        .route(
            "/configurations/{id}",
            get(get_configuration)
                .put(put_configuration)
                .delete(delete_configuration),
        )
        .route(
            "/devices/{id}/applyConfigurationContent",
            post(apply_configuration_content),
        )
}

/// A configuration with its quoted `ETag` header.
fn configuration_response(config: &Configuration) -> Response {
    let response = json_body(config);
    match &config.etag {
        Some(etag) => with_etag(response, etag),
        None => response,
    }
}

async fn list_configurations(
    State(hub): State<Hub>,
    QueryArgs(query): QueryArgs<TopQuery>,
    _: ServiceAuth<DeviceRead>,
) -> Result<Response, ApiError> {
    Ok(json_body(&hub.list_configurations(query.top()?).await?))
}

async fn get_configuration(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DeviceRead>,
) -> Result<Response, ApiError> {
    Ok(configuration_response(&hub.get_configuration(&id).await?))
}

async fn put_configuration(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DeviceWrite>,
    headers: HeaderMap,
    JsonBody(config): JsonBody<Configuration>,
) -> Result<Response, ApiError> {
    let config = hub
        .put_configuration(&id, &config, if_match(&headers))
        .await?;
    tracing::info!(target: "ServiceOperations", configuration_id = %id, "configuration created or updated");
    Ok(configuration_response(&config))
}

async fn delete_configuration(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DeviceWrite>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    hub.delete_configuration(&id, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", configuration_id = %id, "configuration deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn test_queries(
    State(hub): State<Hub>,
    _: ServiceAuth<DeviceRead>,
    JsonBody(input): JsonBody<ironhub_hub::configurations::QueriesTest>,
) -> Result<Response, ApiError> {
    Ok(json_body(&hub.test_configuration_queries(&input)))
}

async fn apply_configuration_content(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DeviceWrite>,
    JsonBody(content): JsonBody<ConfigurationContent>,
) -> Result<Response, ApiError> {
    hub.apply_configuration_content(&id, &content).await?;
    tracing::info!(target: "ServiceOperations", device_id = %id, "configuration content applied");
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! IoT Plug and Play's digital-twin API (api-version 2020-09-30 and later):
//! - `GET /digitaltwins/{id}`: the digital twin, with the twin's `ETag`;
//! - `PATCH /digitaltwins/{id}`: a JSON Patch applied to the desired properties (202, `ETag`
//!   and `Location`), `If-Match` honoured;
//! - `POST /digitaltwins/{id}/commands/{command}` and
//!   `POST /digitaltwins/{id}/components/{component}/commands/{command}`: a direct method, with
//!   `connectTimeoutInSeconds` and `responseTimeoutInSeconds` in the query; the device's
//!   payload is the body, its status the `x-ms-command-statuscode` header.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ironhub_hub::{Hub, HubError};
use serde::Deserialize;

use crate::auth::{DigitalTwinInvoke, DigitalTwinRead, DigitalTwinWrite, ServiceAuth};
use crate::body::{JsonBody, JsonOrEmpty};
use crate::error::ApiError;
use crate::extract::{QueryArgs, Segments};
use crate::respond::{if_match, json_body, with_etag};

/// The digital-twin routes (merged into the hub router).
pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/digitaltwins/{id}", get(get_twin).patch(update_twin))
        .route("/digitaltwins/{id}/commands/{command}", post(root_command))
        .route(
            "/digitaltwins/{id}/components/{component}/commands/{command}",
            post(component_command),
        )
}

async fn get_twin(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DigitalTwinRead>,
) -> Result<Response, ApiError> {
    let (twin, etag) = hub.get_digital_twin(&id).await?;
    Ok(with_etag(json_body(&twin), &etag))
}

async fn update_twin(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DigitalTwinWrite>,
    headers: HeaderMap,
    JsonBody(operations): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let etag = hub
        .update_digital_twin(&id, &operations, if_match(&headers))
        .await?;
    tracing::info!(target: "ServiceOperations", device_id = %id, "digital twin updated");
    let mut response = with_etag(StatusCode::ACCEPTED.into_response(), &etag);
    if let Ok(v) = HeaderValue::from_str(&format!("/digitaltwins/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// The timeouts of a command, as query parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommandQuery {
    connect_timeout_in_seconds: Option<String>,
    response_timeout_in_seconds: Option<String>,
}

fn seconds(value: Option<&str>, name: &str) -> Result<Option<i64>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                HubError::ArgumentInvalid(format!("{name} must be a whole number, not '{v}'."))
                    .into()
            })
        })
        .transpose()
}

async fn root_command(
    State(hub): State<Hub>,
    Segments((id, name)): Segments<(String, String)>,
    QueryArgs(query): QueryArgs<CommandQuery>,
    _: ServiceAuth<DigitalTwinInvoke>,
    JsonOrEmpty(payload): JsonOrEmpty<serde_json::Value>,
) -> Result<Response, ApiError> {
    command(hub, id, None, name, query, payload).await
}

async fn component_command(
    State(hub): State<Hub>,
    Segments((id, component, command_name)): Segments<(String, String, String)>,
    QueryArgs(query): QueryArgs<CommandQuery>,
    _: ServiceAuth<DigitalTwinInvoke>,
    JsonOrEmpty(payload): JsonOrEmpty<serde_json::Value>,
) -> Result<Response, ApiError> {
    command(hub, id, Some(component), command_name, query, payload).await
}

async fn command(
    hub: Hub,
    id: String,
    component: Option<String>,
    name: String,
    query: CommandQuery,
    payload: Option<serde_json::Value>,
) -> Result<Response, ApiError> {
    let connect = seconds(
        query.connect_timeout_in_seconds.as_deref(),
        "connectTimeoutInSeconds",
    )?;
    let response_timeout = seconds(
        query.response_timeout_in_seconds.as_deref(),
        "responseTimeoutInSeconds",
    )?;
    // A command without a payload sends the device `null`.
    let payload = payload.unwrap_or_default();
    let result = hub
        .invoke_command(
            &id,
            component.as_deref(),
            &name,
            payload,
            connect,
            response_timeout,
        )
        .await;
    tracing::info!(target: "ServiceOperations", device_id = %id, component = ?component, command = %name, ok = result.is_ok(), "digital twin command");
    let result = result?;
    let mut response = json_body(&result.payload);
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&result.status.to_string()) {
        h.insert("x-ms-command-statuscode", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ironhub_hub::c2d::new_message_id()) {
        h.insert("x-ms-request-id", v);
    }
    Ok(response)
}

//! `POST /devices/query`: the IoT Hub query language over device twins, module twins
//! (`devices.modules`) and scheduled jobs' device records (`devices.jobs`), a page at a time. The body is `{"query": "…"}`;
//! `x-ms-max-item-count` and `x-ms-continuation` page through the answer, `x-ms-item-type`
//! says what its items are (`twin`, `deviceJob`, or `raw` for projections and aggregates).
//! Needs `RegistryRead`.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use ironhub_hub::query::DEFAULT_PAGE_SIZE;
use ironhub_hub::{Hub, HubError};
use ironhub_wire::hub::QuerySpecification;

use crate::ApiError;
use crate::auth::{Query, ServiceAuth};
use crate::body::JsonBody;
use crate::paging::{page_response, paging};

/// The query route (merged into the hub router).
pub(crate) fn routes() -> Router<Hub> {
    Router::new().route("/devices/query", post(query))
}

async fn query(
    State(hub): State<Hub>,
    _: ServiceAuth<Query>,
    headers: HeaderMap,
    JsonBody(spec): JsonBody<QuerySpecification>,
) -> Result<Response, ApiError> {
    let (max, continuation) = paging(&headers).map_err(HubError::ArgumentInvalid)?;
    if spec.query.trim().is_empty() {
        return Err(HubError::ArgumentNull("The query is empty.".into()).into());
    }
    let page = hub
        .query_twins(&spec.query, continuation.as_deref(), max)
        .await?;
    Ok(page_response(
        &page.ordered_items(),
        page.item_type.as_str(),
        max.unwrap_or(DEFAULT_PAGE_SIZE),
        page.continuation.as_deref(),
    ))
}

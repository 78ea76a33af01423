//! The IoT Hub service REST API of scheduled jobs (the domain is `hub::jobs`):
//! `PUT|GET /jobs/v2/{id}`, `POST /jobs/v2/{id}/cancel` and `GET|POST
//! /jobs/v2/query?jobType=&jobStatus=`, whose page is IoT Hub's `QueryResult`
//! (`{"type": "jobResponse", "items": […], "continuationToken": …}`) with the token also in
//! `x-ms-continuation` (the Python SDK reads the body, the Node SDK the header).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use ironhub_hub::model::JobRequest;
use ironhub_hub::{Hub, HubError};
use serde::Deserialize;

use crate::auth::{DeviceRead, DeviceWrite, ServiceAuth};
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::extract::{QueryArgs, Segments};
use crate::paging::paging;
use crate::respond::json_body;

/// The routes of scheduled jobs.
pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/jobs/v2/query", get(query_jobs).post(query_jobs))
        .route("/jobs/v2/{id}", get(get_job).put(create_job))
        .route("/jobs/v2/{id}/cancel", post(cancel_job))
}

async fn create_job(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DeviceWrite>,
    JsonBody(request): JsonBody<JobRequest>,
) -> Result<Response, ApiError> {
    let job = hub.create_job(&id, &request).await?;
    tracing::info!(target: "ServiceOperations", job_id = %id, job_type = %job.job_type, "job created");
    Ok(json_body(&job))
}

async fn get_job(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DeviceRead>,
) -> Result<Response, ApiError> {
    Ok(json_body(&hub.get_job(&id).await?))
}

async fn cancel_job(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DeviceWrite>,
) -> Result<Response, ApiError> {
    let job = hub.cancel_job(&id).await?;
    tracing::info!(target: "ServiceOperations", job_id = %id, "job cancelled");
    Ok(json_body(&job))
}

/// `?jobType=&jobStatus=`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobFilter {
    job_type: Option<String>,
    job_status: Option<String>,
}

async fn query_jobs(
    State(hub): State<Hub>,
    QueryArgs(filter): QueryArgs<JobFilter>,
    _: ServiceAuth<DeviceRead>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (max, continuation) = paging(&headers).map_err(HubError::ArgumentInvalid)?;
    let page = hub
        .query_jobs(
            filter.job_type.as_deref(),
            filter.job_status.as_deref(),
            continuation.as_deref(),
            max,
        )
        .await?;
    let mut response = json_body(&serde_json::json!({
        "type": "jobResponse",
        "items": page.jobs,
        "continuationToken": page.continuation,
    }));
    let headers = response.headers_mut();
    headers.insert("x-ms-item-type", HeaderValue::from_static("jobResponse"));
    if let Some(token) = &page.continuation
        && let Ok(v) = HeaderValue::from_str(token)
    {
        headers.insert("x-ms-continuation", v);
    }
    Ok(response)
}

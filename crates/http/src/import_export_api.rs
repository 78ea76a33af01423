//! The IoT Hub service REST API of import and export jobs (the domain is
//! `hub::jobs::import_export`): `POST /jobs/create`, `GET /jobs`, `GET /jobs/{id}` and
//! `DELETE /jobs/{id}` (a cancel, `204`).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use ironhub_hub::Hub;
use ironhub_hub::model::ImportExportJob;

use crate::auth::{DeviceRead, DeviceWrite, ServiceAuth};
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::extract::Segments;
use crate::respond::json_body;

/// The routes of import and export jobs.
pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/jobs/create", post(create_job))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}", get(get_job).delete(cancel_job))
}

async fn create_job(
    State(hub): State<Hub>,
    _: ServiceAuth<DeviceWrite>,
    JsonBody(request): JsonBody<ImportExportJob>,
) -> Result<Response, ApiError> {
    let job = hub.create_import_export_job(&request).await?;
    tracing::info!(target: "ServiceOperations", job_id = %job.job_id, job_type = %job.job_type, "import/export job created");
    Ok(json_body(&job))
}

async fn list_jobs(
    State(hub): State<Hub>,
    _: ServiceAuth<DeviceRead>,
) -> Result<Response, ApiError> {
    Ok(json_body(&hub.list_import_export_jobs().await?))
}

async fn get_job(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DeviceRead>,
) -> Result<Response, ApiError> {
    Ok(json_body(&hub.get_import_export_job(&id).await?))
}

async fn cancel_job(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DeviceWrite>,
) -> Result<Response, ApiError> {
    hub.cancel_import_export_job(&id).await?;
    tracing::info!(target: "ServiceOperations", job_id = %id, "import/export job cancelled");
    Ok(StatusCode::NO_CONTENT.into_response())
}

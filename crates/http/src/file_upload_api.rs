//! File upload over HTTPS:
//! - the device API: `POST /devices/{id}/files` (`{"blobName"}` → where to upload, with a SAS)
//!   and `POST /devices/{id}/files/notifications` (`{"correlationId", "isSuccess",
//!   "statusCode", "statusDescription"}` → 204), as IoT Hub serves them, and the older form the
//!   Node SDK sends, `POST /devices/{id}/files/notifications/{correlationId}` without the id in
//!   the body;
//! - the services' file upload notification feed, ironhub's REST counterpart of IoT Hub's AMQP
//!   link `/messages/serviceBound/filenotifications` (the same shape as the REST feedback
//!   feed): `GET /messages/serviceBound/filenotifications` (200 with one notification, its
//!   lock token in `ETag` and `iothub-locktoken`; 204 when there is none),
//!   `DELETE /messages/serviceBound/filenotifications/{lockToken}` (complete, 204) and
//!   `POST /messages/serviceBound/filenotifications/{lockToken}/abandon` (204).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use ironhub_hub::Hub;
use ironhub_hub::file_upload::{FileUploadCompletion, FileUploadRequest};

use crate::auth::{DeviceAuth, FileNotifications, ServiceAuth};
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::extract::Segments;
use crate::respond::{ServiceBoundLock, json_body, locked_service_message};

/// Where the feed lives (also its messages' `iothub-to`).
const FEED: &str = "/messages/serviceBound/filenotifications";

/// The file upload routes (merged into the hub router).
pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/devices/{id}/files", post(start))
        .route("/devices/{id}/files/notifications", post(complete))
        .route(
            "/devices/{id}/files/notifications/{correlation_id}",
            post(complete_with_path_id),
        )
        .route(FEED, get(receive))
        .route(&format!("{FEED}/{{token}}"), delete(settle::<true>))
        .route(&format!("{FEED}/{{token}}/abandon"), post(settle::<false>))
}

async fn start(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: DeviceAuth,
    JsonBody(upload): JsonBody<FileUploadRequest>,
) -> Result<Response, ApiError> {
    let info = hub.start_file_upload(&id, &upload).await?;
    tracing::info!(target: "FileUploadOperations", device_id = %id, blob = %info.blob_name, "file upload started");
    Ok(json_body(&info))
}

async fn complete(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: DeviceAuth,
    JsonBody(completion): JsonBody<FileUploadCompletion>,
) -> Result<Response, ApiError> {
    finish(hub, id, None, completion).await
}

async fn complete_with_path_id(
    State(hub): State<Hub>,
    Segments((id, correlation_id)): Segments<(String, String)>,
    _: DeviceAuth,
    JsonBody(completion): JsonBody<FileUploadCompletion>,
) -> Result<Response, ApiError> {
    finish(hub, id, Some(correlation_id), completion).await
}

/// The device's completion, with the correlation id of the path when it has one.
async fn finish(
    hub: Hub,
    id: String,
    path_id: Option<String>,
    mut completion: FileUploadCompletion,
) -> Result<Response, ApiError> {
    if path_id.is_some() {
        completion.correlation_id = path_id;
    }
    hub.complete_file_upload(&id, &completion).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn receive(
    State(hub): State<Hub>,
    _: ServiceAuth<FileNotifications>,
) -> Result<Response, ApiError> {
    let Some(locked) = hub.receive_file_notification().await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let response = json_body(&locked.notification);
    Ok(locked_service_message(
        response,
        &ServiceBoundLock {
            lock_token: &locked.lock_token,
            to: "/messages/servicebound/filenotifications",
            enqueued_time: locked.notification.enqueued_time_utc,
            delivery_count: locked.delivery_count,
            content_type: "application/vnd.microsoft.iothub.filenotification.json",
        },
    ))
}

/// `DELETE …/{lockToken}` (`COMPLETE`) or `POST …/{lockToken}/abandon`.
async fn settle<const COMPLETE: bool>(
    State(hub): State<Hub>,
    Segments(token): Segments<String>,
    _: ServiceAuth<FileNotifications>,
) -> Result<Response, ApiError> {
    hub.settle_file_notification(&token, COMPLETE).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! The DPS device registration API over HTTPS (`docs/protocol/dps-json.md` §1–2; the Node
//! `azure-iot-provisioning-device-http` transport, Tasmota, and any device that speaks REST):
//!
//! - `PUT /{idScope}/registrations/{registrationId}/register` with
//!   `{"registrationId", "payload"}` → **202** `{"operationId", "status": "assigning"}` and a
//!   `Retry-After` (Tasmota requires exactly 202 and the word `assigning`);
//! - `GET /{idScope}/registrations/{registrationId}/operations/{operationId}` → 202 while
//!   assigning, then 200 with `status` `assigned` (and the `registrationState`), `failed` or
//!   `disabled` (a GET with a body, as Node sends one, is fine);
//! - `POST /{idScope}/registrations/{registrationId}` → 200 with the device's registration
//!   state (the registration status lookup).
//!
//! Every request authenticates: a DPS SAS token in `Authorization`
//! (`sr={idScope}/registrations/{registrationId}`), or the TLS client certificate chain. A
//! TPM device's first register PUT has no token and its TPM's keys in the body: it is
//! answered 401 `{authenticationKey, keyName: "registration"}` (the TPM challenge).
//! `Content-Encoding: utf-8` (Tasmota) is ignored; answers are always
//! `application/json; charset=utf-8`; errors have DPS's body. This file only translates: the
//! request, its checks and its answer (status, body, `Retry-After`) are the domain's
//! (`ironhub_dps::device_api`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use ironhub_auth::Credentials;
use ironhub_dps::Dps;
use ironhub_dps::device_api::{DeviceOperation, DeviceRequest, RequestBody, Transport, Unread};

use crate::body::{self, LazyBody};
use crate::error::DpsApiError;
use crate::extract::Segments;
use crate::listener::ConnectionInfo;

pub(crate) fn routes() -> Router<Dps> {
    Router::new()
        .route(
            "/{scope}/registrations/{registration_id}/register",
            put(register),
        )
        .route(
            "/{scope}/registrations/{registration_id}/operations/{operation_id}",
            get(operation_status),
        )
        .route(
            "/{scope}/registrations/{registration_id}",
            post(status_lookup),
        )
}

fn api_version(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|p| p.strip_prefix("api-version="))
}

/// Hands a request to the domain and renders its answer: the status, DPS's JSON,
/// `Retry-After`, `x-ms-error-code`, and `Location` for a register request. The domain reads
/// the body when it is ready to (after the credentials, when there are any), through the one
/// body reader.
async fn handle(
    dps: &Dps,
    info: &ConnectionInfo,
    headers: &HeaderMap,
    uri: &Uri,
    ids: (&str, &str),
    operation: DeviceOperation<'_>,
    body: Option<LazyBody>,
) -> Response {
    let limit = dps.limits().max_message_bytes;
    let read_body = async move {
        match body {
            Some(body) => body.read(limit).await.map_err(|unread| match unread {
                body::Unread::TooLarge => Unread::TooLarge,
                body::Unread::TimedOut => Unread::TimedOut,
            }),
            None => Ok(axum::body::Bytes::new()),
        }
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let request = DeviceRequest {
        transport: Transport::Https,
        id_scope: ids.0,
        registration_id: ids.1,
        operation,
        credentials: Credentials::new(token, &info.client_certificates),
        // Not looked at: the domain reads the body through `read_body`.
        body: RequestBody::Bytes(&[]),
        api_version: api_version(uri.query()),
    };
    let answer = dps.device_request_reading(&request, read_body).await;
    let mut response = Response::new(Body::from(answer.body.to_json()));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Some(seconds) = answer.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(code) = answer.error_code {
        h.insert("x-ms-error-code", HeaderValue::from(code));
    }
    if let Some(v) = answer
        .location(&request)
        .and_then(|l| HeaderValue::from_str(&l).ok())
    {
        h.insert(header::LOCATION, v);
    }
    response
}

async fn register(
    State(dps): State<Dps>,
    Extension(info): Extension<ConnectionInfo>,
    Segments((scope, registration_id)): Segments<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: LazyBody,
) -> Result<Response, DpsApiError> {
    let operation = DeviceOperation::Register;
    let ids = (scope.as_str(), registration_id.as_str());
    Ok(handle(&dps, &info, &headers, &uri, ids, operation, Some(body)).await)
}

async fn operation_status(
    State(dps): State<Dps>,
    Extension(info): Extension<ConnectionInfo>,
    Segments((scope, registration_id, operation_id)): Segments<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, DpsApiError> {
    let operation = DeviceOperation::OperationStatus {
        operation_id: &operation_id,
    };
    let ids = (scope.as_str(), registration_id.as_str());
    Ok(handle(&dps, &info, &headers, &uri, ids, operation, None).await)
}

async fn status_lookup(
    State(dps): State<Dps>,
    Extension(info): Extension<ConnectionInfo>,
    Segments((scope, registration_id)): Segments<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: LazyBody,
) -> Result<Response, DpsApiError> {
    let operation = DeviceOperation::RegistrationStatus;
    let ids = (scope.as_str(), registration_id.as_str());
    Ok(handle(&dps, &info, &headers, &uri, ids, operation, Some(body)).await)
}

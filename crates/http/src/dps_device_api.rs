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
//! `application/json; charset=utf-8`; errors have DPS's body.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use ironhub_dps::attestation::Attested;
use ironhub_dps::model::{
    DeviceRegistration, RegistrationOperationStatus, RegistrationStatus, TpmChallenge,
};
use ironhub_dps::{Dps, DpsError};

use crate::dps_api::DpsApiError;
use crate::hub_api::json_body;
use crate::{ConnectionInfo, read_body_within};

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

/// The token in `Authorization`, if there is one.
fn token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.trim().is_empty())
}

/// Attests the device behind a request: by its SAS token, else by its client certificate.
pub(crate) async fn attest(
    dps: &Dps,
    scope: &str,
    registration_id: &str,
    headers: &HeaderMap,
    info: &ConnectionInfo,
) -> Result<Attested, DpsError> {
    match token(headers) {
        Some(token) => {
            dps.attest_symmetric_key(scope, registration_id, token)
                .await
        }
        None if !info.client_certificates.is_empty() => {
            dps.attest_x509(scope, registration_id, &info.client_certificates)
                .await
        }
        None => {
            dps.check_id_scope(scope)?;
            Err(DpsError::Unauthorized(
                "Unauthorized: the request has neither an Authorization header nor a client \
                 certificate."
                    .into(),
            ))
        }
    }
}

fn refused(dps: &Dps, scope: &str, registration_id: &str, e: DpsError) -> DpsApiError {
    tracing::info!(target: "DeviceOperations", scope, registration_id, error = %e, "device request refused");
    DpsApiError {
        retry_after: matches!(e, DpsError::Throttled(_)).then(|| dps.retry_after(Some(&e))),
        error: e,
    }
}

/// The three path segments, or DPS's 400.
fn ids<T>(path: Result<Path<T>, PathRejection>) -> Result<T, DpsApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| DpsError::BadRequest(format!("The path is not valid: {e}.")).into())
}

/// An operation's answer: 202 with `Retry-After` while assigning, 200 once it ended.
fn operation_response(dps: &Dps, op: &RegistrationOperationStatus) -> Response {
    let mut response = json_body(op);
    if op.status == RegistrationStatus::Assigning {
        *response.status_mut() = StatusCode::ACCEPTED;
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(dps.retry_after(None)),
        );
    }
    response
}

/// Reads the device's registration request (at most 96 KB: Azure docs, "Quotas and limits"
/// of the Device Provisioning Service).
async fn registration_body(dps: &Dps, body: Body) -> Result<DeviceRegistration, DpsError> {
    let limit = dps.limits().max_message_bytes;
    let bytes = read_body_within(body, limit).await.map_err(|_| {
        DpsError::MessageTooLarge(format!(
            "The request is larger than {limit} bytes, the most DPS accepts."
        ))
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DeviceRegistration::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        DpsError::BadRequest(format!(
            "The body is not a valid device registration (JSON with registrationId): {e}."
        ))
    })
}

fn api_version(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|p| p.strip_prefix("api-version="))
        .map(str::to_owned)
}

async fn register(
    State(dps): State<Dps>,
    Extension(info): Extension<ConnectionInfo>,
    path: Result<Path<(String, String)>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, DpsApiError> {
    let (scope, registration_id) = ids(path)?;
    let fail = |e| refused(&dps, &scope, &registration_id, e);
    // Read the body first, so a malformed request is a 400 whoever sent it.
    let request = registration_body(&dps, body).await.map_err(fail)?;
    if let Some(tpm) = request.tpm.as_ref().filter(|_| token(&headers).is_none()) {
        // TPM attestation's first step: the challenge, as a 401.
        let key = dps
            .tpm_challenge(&scope, &registration_id, tpm)
            .await
            .map_err(fail)?;
        let mut response = json_body(&TpmChallenge {
            authentication_key: key,
            key_name: "registration".into(),
            message: "Sign a SAS token with the key in authenticationKey, once your TPM \
                      imported it, and register again with it."
                .into(),
        });
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(response);
    }
    let attested = attest(&dps, &scope, &registration_id, &headers, &info)
        .await
        .map_err(fail)?;
    let op = dps
        .register(attested, request, api_version(uri.query()).as_deref())
        .await
        .map_err(fail)?;
    // Always 202 `assigning` (docs/protocol/dps-json.md §2), with where to poll.
    let mut response = json_body(&op);
    *response.status_mut() = StatusCode::ACCEPTED;
    let h = response.headers_mut();
    h.insert(
        header::RETRY_AFTER,
        HeaderValue::from(dps.retry_after(None)),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "/{scope}/registrations/{registration_id}/operations/{}",
        op.operation_id
    )) {
        h.insert(header::LOCATION, v);
    }
    Ok(response)
}

async fn operation_status(
    State(dps): State<Dps>,
    Extension(info): Extension<ConnectionInfo>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, DpsApiError> {
    let (scope, registration_id, operation_id) = ids(path)?;
    let fail = |e| refused(&dps, &scope, &registration_id, e);
    attest(&dps, &scope, &registration_id, &headers, &info)
        .await
        .map_err(fail)?;
    let op = dps
        .operation_status(&registration_id, &operation_id)
        .await
        .map_err(fail)?;
    Ok(operation_response(&dps, &op))
}

async fn status_lookup(
    State(dps): State<Dps>,
    Extension(info): Extension<ConnectionInfo>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, DpsApiError> {
    let (scope, registration_id) = ids(path)?;
    let fail = |e| refused(&dps, &scope, &registration_id, e);
    registration_body(&dps, body).await.map_err(fail)?;
    attest(&dps, &scope, &registration_id, &headers, &info)
        .await
        .map_err(fail)?;
    let state = dps
        .device_registration_status(&registration_id)
        .await
        .map_err(fail)?;
    Ok(json_body(&state).into_response())
}

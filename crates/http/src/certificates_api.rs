//! IoT Hub's certificate API (CA certificates for X.509 CA device authentication), in the
//! ARM JSON shape that `az iot hub certificate` and the management SDKs use:
//! `{"id","name","etag","type","properties":{"subject","expiry","thumbprint","isVerified",
//! "created","updated","certificate"}}`, times in RFC 1123 as ARM writes them.
//!
//! Rights: reading (`GET`) needs **RegistryRead**; uploading, deleting, generating a
//! verification code and verifying need **RegistryWrite**: a verified CA admits devices, so
//! changing the set is a registry write.
//!
//! - `GET /certificates` → `{"value":[…]}`
//! - `GET /certificates/{name}` → the certificate, with its quoted `ETag`
//! - `PUT /certificates/{name}` with `{"properties":{"certificate":"<PEM or base64 DER>",
//!   "isVerified":false}}` → `201` when created, `200` when replaced (replacing needs
//!   `If-Match`; without it an existing name is `409`; a stale etag `412`). Uploads with a
//!   private key are refused (`400`).
//! - `DELETE /certificates/{name}` (optional `If-Match`) → `204`
//! - `POST /certificates/{name}/generateVerificationCode` (optional `If-Match`) → the
//!   certificate with `properties.verificationCode` (the etag changes)
//! - `POST /certificates/{name}/verify` with `{"certificate":"<PEM>"}` (optional `If-Match`):
//!   a certificate whose subject CN is the verification code, signed by the CA's key → the
//!   certificate with `isVerified: true`

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use ironhub_auth::Rights;
use ironhub_hub::{Hub, HubError};
use ironhub_store::CertificateRecord;
use serde::Deserialize;
use serde_json::json;

use crate::ApiError;
use crate::hub_api::{authorize, if_match, json_body, read_json};

pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/certificates", get(list))
        .route(
            "/certificates/{name}",
            get(get_one).put(put_one).delete(delete_one),
        )
        .route(
            "/certificates/{name}/generateVerificationCode",
            post(generate_code),
        )
        .route("/certificates/{name}/verify", post(verify))
}

/// The `{name}` of a certificate path, with a path error answered in IoT Hub's shape.
struct Name(String);

impl<S: Send + Sync> FromRequestParts<S> for Name {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(n)| Name(n))
            .map_err(|e| {
                HubError::ArgumentInvalid(format!("The certificate name is not valid: {e}.")).into()
            })
    }
}

fn rfc1123(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn description(c: &CertificateRecord, with_code: bool) -> serde_json::Value {
    let mut properties = json!({
        "subject": c.subject,
        "expiry": rfc1123(c.expiry),
        "thumbprint": c.thumbprint,
        "isVerified": c.is_verified,
        "created": rfc1123(c.created),
        "updated": rfc1123(c.updated),
        "certificate": c.certificate,
    });
    if with_code {
        properties["verificationCode"] = json!(c.verification_code);
    }
    json!({
        "id": format!("/certificates/{}", c.name),
        "name": c.name,
        "etag": c.etag,
        "type": "Microsoft.Devices/IotHubs/Certificates",
        "properties": properties,
    })
}

fn respond(c: &CertificateRecord, with_code: bool) -> Response {
    let mut response = json_body(&description(c, with_code));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", c.etag)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

async fn list(State(hub): State<Hub>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_READ)?;
    let all: Vec<_> = hub
        .list_certificates()
        .await?
        .iter()
        .map(|c| description(c, false))
        .collect();
    Ok(json_body(&json!({ "value": all })))
}

async fn get_one(
    State(hub): State<Hub>,
    Name(name): Name,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_READ)?;
    Ok(respond(&hub.get_certificate(&name).await?, false))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadProperties {
    certificate: Option<String>,
    #[serde(default)]
    is_verified: bool,
}

#[derive(Debug, Deserialize)]
struct Upload {
    properties: Option<UploadProperties>,
}

async fn put_one(
    State(hub): State<Hub>,
    Name(name): Name,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_WRITE)?;
    let upload: Upload = read_json(body).await?;
    let properties = upload.properties.ok_or_else(|| {
        HubError::ArgumentNull("The request needs properties.certificate.".into())
    })?;
    let certificate = properties.certificate.ok_or_else(|| {
        HubError::ArgumentNull("The request needs properties.certificate.".into())
    })?;
    let replacing = if_match(&headers).is_some();
    let stored = hub
        .put_certificate(
            &name,
            &certificate,
            properties.is_verified,
            if_match(&headers),
        )
        .await?;
    tracing::info!(target: "ServiceOperations", certificate = %name, verified = stored.is_verified, "CA certificate uploaded");
    let status = if replacing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, respond(&stored, false)).into_response())
}

async fn delete_one(
    State(hub): State<Hub>,
    Name(name): Name,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_WRITE)?;
    hub.delete_certificate(&name, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", certificate = %name, "CA certificate deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn generate_code(
    State(hub): State<Hub>,
    Name(name): Name,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_WRITE)?;
    let stored = hub
        .generate_verification_code(&name, if_match(&headers))
        .await?;
    Ok(respond(&stored, true))
}

#[derive(Debug, Deserialize)]
struct Proof {
    certificate: Option<String>,
}

async fn verify(
    State(hub): State<Hub>,
    Name(name): Name,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_WRITE)?;
    let proof: Proof = read_json(body).await?;
    let certificate = proof.certificate.ok_or_else(|| {
        HubError::ArgumentNull("The request needs the verification certificate.".into())
    })?;
    let result = hub
        .verify_certificate(&name, &certificate, if_match(&headers))
        .await;
    tracing::info!(target: "ServiceOperations", certificate = %name, ok = result.is_ok(), "CA certificate proof of possession");
    Ok(respond(&result?, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_times_are_rfc1123() {
        let t: DateTime<Utc> = "2039-12-31T23:59:59Z".parse().unwrap_or_default();
        assert_eq!(rfc1123(t), "Sat, 31 Dec 2039 23:59:59 GMT");
    }
}

//! The CA certificate API of the hub (`/certificates`, for X.509 CA device authentication) and
//! of the DPS instance (`/dps/certificates`, for X.509 enrollment groups), in the ARM JSON
//! shape that `az iot hub certificate`, `az iot dps certificate` and the management SDKs use:
//! `{"id","name","etag","type","properties":{"subject","expiry","thumbprint","isVerified",
//! "created","updated","certificate"}}`, times in RFC 1123 as ARM writes them. In Azure both
//! are ARM (management-plane) calls; ironhub serves them on its own host, authorized by the
//! service's shared access policies.
//!
//! Rights: for the hub, reading (`GET`) needs **RegistryRead** and every change
//! **RegistryWrite** (a verified CA admits devices, so changing the set is a registry write);
//! for DPS, **ServiceConfig**.
//!
//! - `GET {prefix}` → `{"value":[…]}`
//! - `GET {prefix}/{name}` → the certificate, with its quoted `ETag`
//! - `PUT {prefix}/{name}` with `{"properties":{"certificate":"<PEM, base64 DER or base64
//!   PEM>","isVerified":false}}` (or the same two fields at the top level, as the older ARM
//!   API has them) → `201` when created, `200` when replaced (replacing needs `If-Match`;
//!   without it an existing name is `409`; a stale etag `412`). Uploads with a private key are
//!   refused (`400`).
//! - `DELETE {prefix}/{name}` (optional `If-Match`) → `204`
//! - `POST {prefix}/{name}/generateVerificationCode` (optional `If-Match`) → the certificate
//!   with `properties.verificationCode` (the etag changes)
//! - `POST {prefix}/{name}/verify` (also `/verifyCertificate`, ARM's name) with
//!   `{"certificate":"<PEM>"}` (optional `If-Match`): a certificate whose subject CN is the
//!   verification code, signed by the CA's key → the certificate with `isVerified: true`

use std::future::Future;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use ironhub_auth::Rights;
use ironhub_dps::{Dps, DpsError};
use ironhub_hub::{Hub, HubError};
use ironhub_store::CertificateRecord;
use ironhub_wire::certificate::{
    CertificateDescription, CertificateList, CertificateProperties, CertificateUpload,
    VerificationProof,
};

use crate::dps_api::{DpsApiError, authorize_dps};
use crate::hub_api::{authorize, if_match, json_body};
use crate::{ApiError, read_body};

/// A service that keeps CA certificates: the hub or the DPS instance.
pub(crate) trait CaService: Clone + Send + Sync + 'static {
    type Error: IntoResponse + Send;
    /// ARM's resource type, e.g. `Microsoft.Devices/IotHubs/Certificates`.
    const TYPE: &'static str;
    /// Where the routes live.
    const PREFIX: &'static str;

    fn authorize(&self, headers: &HeaderMap, write: bool) -> Result<(), Self::Error>;
    fn bad_request(message: String) -> Self::Error;
    fn list(&self) -> impl Future<Output = Result<Vec<CertificateRecord>, Self::Error>> + Send;
    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<CertificateRecord, Self::Error>> + Send;
    fn put(
        &self,
        name: &str,
        pem: &str,
        verified: bool,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<CertificateRecord, Self::Error>> + Send;
    fn delete(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    fn generate_code(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<CertificateRecord, Self::Error>> + Send;
    fn verify(
        &self,
        name: &str,
        proof: &str,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<CertificateRecord, Self::Error>> + Send;
}

impl CaService for Hub {
    type Error = ApiError;
    const TYPE: &'static str = "Microsoft.Devices/IotHubs/Certificates";
    const PREFIX: &'static str = "/certificates";

    fn authorize(&self, headers: &HeaderMap, write: bool) -> Result<(), ApiError> {
        let needed = if write {
            Rights::REGISTRY_WRITE
        } else {
            Rights::REGISTRY_READ
        };
        authorize(self, headers, needed)
    }
    fn bad_request(message: String) -> ApiError {
        HubError::ArgumentInvalid(message).into()
    }
    async fn list(&self) -> Result<Vec<CertificateRecord>, ApiError> {
        Ok(self.list_certificates().await?)
    }
    async fn get(&self, name: &str) -> Result<CertificateRecord, ApiError> {
        Ok(self.get_certificate(name).await?)
    }
    async fn put(
        &self,
        name: &str,
        pem: &str,
        verified: bool,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, ApiError> {
        Ok(self.put_certificate(name, pem, verified, if_match).await?)
    }
    async fn delete(&self, name: &str, if_match: Option<&str>) -> Result<(), ApiError> {
        Ok(self.delete_certificate(name, if_match).await?)
    }
    async fn generate_code(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, ApiError> {
        Ok(self.generate_verification_code(name, if_match).await?)
    }
    async fn verify(
        &self,
        name: &str,
        proof: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, ApiError> {
        Ok(self.verify_certificate(name, proof, if_match).await?)
    }
}

impl CaService for Dps {
    type Error = DpsApiError;
    const TYPE: &'static str = "Microsoft.Devices/ProvisioningServices/Certificates";
    const PREFIX: &'static str = "/dps/certificates";

    fn authorize(&self, headers: &HeaderMap, _write: bool) -> Result<(), DpsApiError> {
        authorize_dps(self, headers, Rights::SERVICE_CONFIG)
    }
    fn bad_request(message: String) -> DpsApiError {
        DpsError::BadRequest(message).into()
    }
    async fn list(&self) -> Result<Vec<CertificateRecord>, DpsApiError> {
        Ok(self.list_certificates().await?)
    }
    async fn get(&self, name: &str) -> Result<CertificateRecord, DpsApiError> {
        Ok(self.get_certificate(name).await?)
    }
    async fn put(
        &self,
        name: &str,
        pem: &str,
        verified: bool,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, DpsApiError> {
        Ok(self.put_certificate(name, pem, verified, if_match).await?)
    }
    async fn delete(&self, name: &str, if_match: Option<&str>) -> Result<(), DpsApiError> {
        Ok(self.delete_certificate(name, if_match).await?)
    }
    async fn generate_code(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, DpsApiError> {
        Ok(self.generate_verification_code(name, if_match).await?)
    }
    async fn verify(
        &self,
        name: &str,
        proof: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, DpsApiError> {
        Ok(self.verify_certificate(name, proof, if_match).await?)
    }
}

pub(crate) fn routes<S: CaService>() -> Router<S> {
    let p = S::PREFIX;
    Router::new()
        .route(p, get(list::<S>))
        .route(
            &format!("{p}/{{name}}"),
            get(get_one::<S>).put(put_one::<S>).delete(delete_one::<S>),
        )
        .route(
            &format!("{p}/{{name}}/generateVerificationCode"),
            post(generate_code::<S>),
        )
        .route(&format!("{p}/{{name}}/verify"), post(verify::<S>))
        .route(
            &format!("{p}/{{name}}/verifyCertificate"),
            post(verify::<S>),
        )
}

/// The `{name}` of a certificate path, or the service's 400.
fn name<S: CaService>(path: Result<Path<String>, PathRejection>) -> Result<String, S::Error> {
    path.map(|Path(n)| n)
        .map_err(|e| S::bad_request(format!("The certificate name is not valid: {e}.")))
}

fn rfc1123(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn description<S: CaService>(c: &CertificateRecord, with_code: bool) -> CertificateDescription {
    CertificateDescription {
        etag: c.etag.clone(),
        id: format!("{}/{}", S::PREFIX, c.name),
        name: c.name.clone(),
        properties: CertificateProperties {
            certificate: c.certificate.clone(),
            created: rfc1123(c.created),
            expiry: rfc1123(c.expiry),
            is_verified: c.is_verified,
            subject: c.subject.clone(),
            thumbprint: c.thumbprint.clone(),
            updated: rfc1123(c.updated),
            verification_code: c.verification_code.clone().filter(|_| with_code),
        },
        kind: S::TYPE.to_owned(),
    }
}

fn respond<S: CaService>(c: &CertificateRecord, with_code: bool) -> Response {
    let mut response = json_body(&description::<S>(c, with_code));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", c.etag)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// Reads a JSON body, with the service's 400 for one that does not parse.
async fn read<S: CaService, T: serde::de::DeserializeOwned>(body: Body) -> Result<T, S::Error> {
    let bytes = read_body(body)
        .await
        .map_err(|e| S::bad_request(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        S::bad_request(format!(
            "The request body is not valid JSON for this operation: {e}."
        ))
    })
}

async fn list<S: CaService>(State(s): State<S>, headers: HeaderMap) -> Result<Response, S::Error> {
    s.authorize(&headers, false)?;
    let value = s
        .list()
        .await?
        .iter()
        .map(|c| description::<S>(c, false))
        .collect();
    Ok(json_body(&CertificateList { value }))
}

async fn get_one<S: CaService>(
    State(s): State<S>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, S::Error> {
    s.authorize(&headers, false)?;
    let name = name::<S>(path)?;
    Ok(respond::<S>(&s.get(&name).await?, false))
}

async fn put_one<S: CaService>(
    State(s): State<S>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, S::Error> {
    s.authorize(&headers, true)?;
    let name = name::<S>(path)?;
    let upload: CertificateUpload = read::<S, _>(body).await?;
    let (certificate, is_verified) = upload.into_parts();
    let certificate = certificate
        .ok_or_else(|| S::bad_request("The request needs properties.certificate.".into()))?;
    let replacing = if_match(&headers).is_some();
    let stored = s
        .put(&name, &certificate, is_verified, if_match(&headers))
        .await?;
    tracing::info!(target: "ServiceOperations", service = S::PREFIX, certificate = %name, verified = stored.is_verified, "CA certificate uploaded");
    let status = if replacing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, respond::<S>(&stored, false)).into_response())
}

async fn delete_one<S: CaService>(
    State(s): State<S>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, S::Error> {
    s.authorize(&headers, true)?;
    let name = name::<S>(path)?;
    s.delete(&name, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", service = S::PREFIX, certificate = %name, "CA certificate deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn generate_code<S: CaService>(
    State(s): State<S>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, S::Error> {
    s.authorize(&headers, true)?;
    let name = name::<S>(path)?;
    let stored = s.generate_code(&name, if_match(&headers)).await?;
    Ok(respond::<S>(&stored, true))
}

async fn verify<S: CaService>(
    State(s): State<S>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, S::Error> {
    s.authorize(&headers, true)?;
    let name = name::<S>(path)?;
    let proof: VerificationProof = read::<S, _>(body).await?;
    let certificate = proof
        .certificate
        .ok_or_else(|| S::bad_request("The request needs the verification certificate.".into()))?;
    let result = s.verify(&name, &certificate, if_match(&headers)).await;
    tracing::info!(target: "ServiceOperations", service = S::PREFIX, certificate = %name, ok = result.is_ok(), "CA certificate proof of possession");
    Ok(respond::<S>(&result?, false))
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

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
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use ironhub_dps::Dps;
use ironhub_hub::Hub;
use ironhub_store::CertificateRecord;
use ironhub_wire::certificate::{
    CertificateDescription, CertificateList, CertificateProperties, CertificateUpload,
    VerificationProof,
};

use crate::auth::{
    DpsCertificatesRead, DpsCertificatesWrite, HubCertificatesRead, HubCertificatesWrite, Needs,
    ServiceAuth,
};
use crate::body::JsonBody;
use crate::error::{ApiError, DpsApiError};
use crate::extract::Segments;
use crate::respond::{if_match, json_body};
use crate::service::Service;

/// A service that keeps CA certificates: the hub or the DPS instance.
pub(crate) trait CaService: Service {
    /// ARM's resource type, e.g. `Microsoft.Devices/IotHubs/Certificates`.
    const TYPE: &'static str;
    /// Where the routes live.
    const PREFIX: &'static str;
    /// The operation reading the certificates is.
    type Read: Needs;
    /// The operation changing them is.
    type Write: Needs;

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
    const TYPE: &'static str = "Microsoft.Devices/IotHubs/Certificates";
    const PREFIX: &'static str = "/certificates";
    type Read = HubCertificatesRead;
    type Write = HubCertificatesWrite;

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
    const TYPE: &'static str = "Microsoft.Devices/ProvisioningServices/Certificates";
    const PREFIX: &'static str = "/dps/certificates";
    type Read = DpsCertificatesRead;
    type Write = DpsCertificatesWrite;

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

async fn list<S: CaService>(
    State(s): State<S>,
    _: ServiceAuth<S::Read>,
) -> Result<Response, S::Error> {
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
    _: ServiceAuth<S::Read>,
    Segments(name): Segments<String>,
) -> Result<Response, S::Error> {
    Ok(respond::<S>(&s.get(&name).await?, false))
}

async fn put_one<S: CaService>(
    State(s): State<S>,
    _: ServiceAuth<S::Write>,
    Segments(name): Segments<String>,
    headers: HeaderMap,
    JsonBody(upload): JsonBody<CertificateUpload>,
) -> Result<Response, S::Error> {
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
    _: ServiceAuth<S::Write>,
    Segments(name): Segments<String>,
    headers: HeaderMap,
) -> Result<Response, S::Error> {
    s.delete(&name, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", service = S::PREFIX, certificate = %name, "CA certificate deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn generate_code<S: CaService>(
    State(s): State<S>,
    _: ServiceAuth<S::Write>,
    Segments(name): Segments<String>,
    headers: HeaderMap,
) -> Result<Response, S::Error> {
    let stored = s.generate_code(&name, if_match(&headers)).await?;
    Ok(respond::<S>(&stored, true))
}

async fn verify<S: CaService>(
    State(s): State<S>,
    _: ServiceAuth<S::Write>,
    Segments(name): Segments<String>,
    headers: HeaderMap,
    JsonBody(proof): JsonBody<VerificationProof>,
) -> Result<Response, S::Error> {
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

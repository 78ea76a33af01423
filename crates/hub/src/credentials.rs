//! Operational X.509 certificates issued from a device's certificate signing request (CSR),
//! as DPS hands them out at registration (`"csr"` in the register body, API
//! `2025-07-01-preview`, answered with `issuedCertificateChain`) and the hub renews them
//! (`$iothub/credentials/POST/issueCertificate/`, IoT Hub's certificate management preview).
//!
//! An [`Issuer`] is one of ironhub's issuing CAs (named in [`crate::issuing_cas`]): generated
//! (ECC P-384, ECDSA-SHA-384, as Azure's certificate management issues) or a CA the operator
//! brings, each with its validity and renewal policy. The hub trusts what they issued
//! without a proof-of-possession step: their certificates are trust anchors of every
//! `certificateAuthority` device, besides the verified CA certificates. A disabled device is
//! refused whatever certificate it holds, and is issued none.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P384_SHA384, PublicKeyData as _, SerialNumber,
    SubjectPublicKeyInfo,
};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::{Hub, HubError};

/// How long an issued certificate is valid when the operator does not say.
pub const DEFAULT_VALIDITY_DAYS: u32 = 30;
/// How long a generated issuing CA is valid.
const CA_VALIDITY_DAYS: u32 = 3650;
/// How far back a new certificate's validity starts, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(300);

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

/// Why a CSR was not signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// The CSR is not base64 PKCS#10, its signature does not verify, or it names another
    /// device.
    #[error("{0}")]
    Invalid(String),
    /// The issuing CA could not sign (its key or certificate is unusable).
    #[error("The issuing CA could not sign the certificate: {0}")]
    Signing(String),
}

impl From<CsrError> for HubError {
    fn from(e: CsrError) -> Self {
        match e {
            CsrError::Invalid(m) => HubError::CsrRejected(m),
            CsrError::Signing(m) => HubError::ServerError(m),
        }
    }
}

/// A CSR that parsed and whose signature verified: the requested common name and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    pub common_name: Option<String>,
    /// The subject public key info, DER.
    spki: Vec<u8>,
}

impl VerifiedCsr {
    /// Reads a base64 PKCS#10 DER request (PEM armour is tolerated) and checks its signature.
    pub fn parse(csr: &str) -> Result<Self, CsrError> {
        let text: String = csr
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
            .split_whitespace()
            .collect();
        let der = ironhub_auth::b64::decode(text)
            .map_err(|e| CsrError::Invalid(format!("The csr is not base64: {e}.")))?;
        let (rest, req) = X509CertificationRequest::from_der(&der).map_err(|e| {
            CsrError::Invalid(format!("The csr is not a PKCS#10 request (DER): {e}."))
        })?;
        if !rest.is_empty() {
            return Err(CsrError::Invalid(
                "The csr has bytes after the request.".into(),
            ));
        }
        req.verify_signature().map_err(|_| {
            CsrError::Invalid("The csr's signature does not verify with its own key.".into())
        })?;
        let info = &req.certification_request_info;
        let common_name = info
            .subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        Ok(VerifiedCsr {
            common_name,
            spki: info.subject_pki.raw.to_vec(),
        })
    }
}

/// ironhub's issuing CA.
pub struct Issuer {
    ca_der: Vec<u8>,
    ca_pem: String,
    key: KeyPair,
    validity_days: u32,
    /// Whether devices may renew over `$iothub/credentials` what this CA issued.
    renewal: bool,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("validity_days", &self.validity_days)
            .field("renewal", &self.renewal)
            .finish_non_exhaustive()
    }
}

fn signing(e: impl fmt::Display) -> CsrError {
    CsrError::Signing(e.to_string())
}

impl Issuer {
    /// A new issuing CA: an ECC P-384 key and a self-signed CA certificate named `name`.
    pub fn generate(name: &str) -> Result<Self, CsrError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(signing)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + days(CA_VALIDITY_DAYS)).into();
        let cert = params.self_signed(&key).map_err(signing)?;
        Ok(Issuer {
            ca_der: cert.der().to_vec(),
            ca_pem: cert.pem(),
            key,
            validity_days: DEFAULT_VALIDITY_DAYS,
            renewal: true,
        })
    }

    /// The operator's CA: its certificate and private key (PEM, PKCS#8).
    pub fn from_pem(certificate: &str, key: &str) -> Result<Self, CsrError> {
        let key = KeyPair::from_pem(key).map_err(signing)?;
        let info = ironhub_auth::x509::read_certificate(certificate).map_err(signing)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&info.der).map_err(signing)?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CsrError::Signing(
                "the CA certificate is not the private key's".into(),
            ));
        }
        Ok(Issuer {
            ca_pem: certificate.to_owned(),
            ca_der: info.der,
            key,
            validity_days: DEFAULT_VALIDITY_DAYS,
            renewal: true,
        })
    }

    /// The same CA, issuing certificates valid for `days` (at least one).
    pub fn with_validity_days(mut self, days: u32) -> Self {
        self.validity_days = days.max(1);
        self
    }

    /// How long the certificates it issues are valid, in days.
    pub fn validity_days(&self) -> u32 {
        self.validity_days
    }

    /// The same CA, renewing (or, with `false`, refusing to renew) over `$iothub/credentials`
    /// the certificates it issued; devices then get new ones by registering again with DPS.
    pub fn with_renewal(mut self, renewal: bool) -> Self {
        self.renewal = renewal;
        self
    }

    /// Whether devices may renew what it issued over `$iothub/credentials`.
    pub fn renews(&self) -> bool {
        self.renewal
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// The CA certificate and its private key, PEM (to keep them).
    pub fn to_pem(&self) -> (String, String) {
        (self.ca_pem.clone(), self.key.serialize_pem())
    }

    /// Signs a device certificate for the key of `csr`: subject `CN={device_id}`, client
    /// authentication, valid from now for the issuer's validity. Returns the chain, leaf
    /// first then the issuing CA, each base64 DER.
    pub fn issue(&self, device_id: &str, csr: &VerifiedCsr) -> Result<Vec<String>, CsrError> {
        let public_key = SubjectPublicKeyInfo::from_der(&csr.spki)
            .map_err(|e| CsrError::Invalid(format!("The csr's public key is not usable: {e}.")))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, device_id);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let mut serial = ironhub_auth::random_bytes(16);
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + days(self.validity_days)).into();
        let issuer = rcgen::Issuer::from_ca_cert_der(&self.ca_der.clone().into(), &self.key)
            .map_err(signing)?;
        let leaf = params.signed_by(&public_key, &issuer).map_err(signing)?;
        Ok(vec![B64.encode(leaf.der()), B64.encode(&self.ca_der)])
    }
}

/// The longest CSR a device may send, base64 (IoT Hub's limit is 8 KB).
const MAX_CSR_LEN: usize = 8 * 1024;

pub use ironhub_wire::hub::IssueCertificateRequest;

fn invalid(m: &str) -> HubError {
    HubError::ArgumentInvalid(format!("Issue certificate request {m}"))
}

/// Whether `rid` is a request id: 4–36 letters, digits and hyphens, no hyphen at either end.
fn is_request_id(rid: &str) -> bool {
    (4..=36).contains(&rid.len())
        && rid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !rid.starts_with('-')
        && !rid.ends_with('-')
}

/// Reads and checks an issueCertificate request of the device `device_id` (the checks IoT Hub
/// makes before it accepts one with 202).
pub fn read_request(device_id: &str, payload: &[u8]) -> Result<IssueCertificateRequest, HubError> {
    {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid(
                "payload is missing. Include a JSON payload with 'id' and 'csr' fields.",
            ));
        }
        let request: IssueCertificateRequest = serde_json::from_slice(payload).map_err(|e| {
            invalid(&format!(
                "payload is not valid: {e}. Only 'id', 'csr' and 'replace' are allowed."
            ))
        })?;
        if request.id.is_empty() {
            return Err(invalid("'id' field is invalid or missing."));
        }
        if request.id != device_id {
            return Err(invalid(
                "'id' field does not match the authenticated device ID.",
            ));
        }
        if request.csr.trim().is_empty() {
            return Err(invalid("'csr' field is invalid or missing."));
        }
        if request.csr.len() > MAX_CSR_LEN {
            return Err(invalid("'csr' field exceeds maximum allowed length."));
        }
        if ironhub_auth::b64::decode(&request.csr).is_err() {
            return Err(invalid("'csr' field is not valid base64."));
        }
        if let Some(r) = request.replace.as_deref()
            && r != "*"
            && !is_request_id(r)
        {
            return Err(invalid(
                "'replace' field has an invalid format: '*' or a request id of 4 to 36 \
                 letters, digits and hyphens.",
            ));
        }
        Ok(request)
    }
}

/// One accepted issueCertificate request: its correlation id (a GUID) and when the
/// operation expires (RFC 3339, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialOperation {
    pub correlation_id: String,
    pub operation_expires: String,
}

/// The time now, RFC 3339 UTC with milliseconds (as IoT Hub stamps its answers).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How long an accepted request stays answerable.
const OPERATION_LIFETIME: Duration = Duration::from_secs(3600);

impl CredentialOperation {
    /// A new operation, starting now.
    pub fn start() -> Self {
        let expires: chrono::DateTime<chrono::Utc> =
            (SystemTime::now() + OPERATION_LIFETIME).into();
        CredentialOperation {
            correlation_id: ironhub_auth::uuid_text(&ironhub_auth::random_bytes(16)),
            operation_expires: expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

impl Hub {
    /// Issues a certificate to a device for the key of its CSR (a request
    /// [`read_request`] accepted). The device must exist and be enabled;
    /// the CSR's signature must verify and its common name, if any, be the device id.
    pub async fn issue_certificate(
        &self,
        device_id: &str,
        request: &IssueCertificateRequest,
    ) -> Result<Vec<String>, HubError> {
        let cas = self
            .issuing_cas()
            .ok_or_else(|| HubError::ArgumentInvalid("This hub issues no certificates.".into()))?;
        let csr = VerifiedCsr::parse(&request.csr)?;
        check_common_name(&csr, device_id)?;
        let device = self
            .store
            .get_device(device_id)
            .await?
            .ok_or_else(|| HubError::DeviceNotFound(device_id.to_owned()))?;
        if device.status != ironhub_store::DeviceStatus::Enabled {
            return Err(HubError::Unauthorized(format!(
                "Unauthorized: the device '{device_id}' is disabled."
            )));
        }
        // The CA that issued the device's certificate renews it; the default for a device
        // that never had one issued.
        let named = device.authentication.certificate_authority_name.as_deref();
        let (name, issuer) = cas
            .get(named)
            .map_err(|e| HubError::ArgumentInvalid(e.to_string()))?;
        if !issuer.renews() {
            return Err(HubError::ArgumentInvalid(format!(
                "The certificate authority '{name}' does not renew certificates over \
                 $iothub/credentials: register with the provisioning service again."
            )));
        }
        let chain = issuer.issue(device_id, &csr)?;
        tracing::info!(device = device_id, ca = name, "certificate issued");
        Ok(chain)
    }
}

/// A CSR names the device it is for, or no one.
pub fn check_common_name(csr: &VerifiedCsr, device_id: &str) -> Result<(), CsrError> {
    match csr.common_name.as_deref() {
        Some(cn) if cn != device_id => Err(CsrError::Invalid(format!(
            "The csr's common name '{cn}' is not the device id '{device_id}'."
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_for(cn: &str) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        let csr = params.serialize_request(&key).unwrap();
        (B64.encode(csr.der()), key)
    }

    #[test]
    fn issues_a_client_certificate_for_the_csr_key() {
        let issuer = Issuer::generate("ironhub issuing CA").unwrap();
        let (csr, key) = csr_for("dev-1");
        let csr = VerifiedCsr::parse(&csr).unwrap();
        assert_eq!(csr.common_name.as_deref(), Some("dev-1"));
        let chain = issuer.issue("dev-1", &csr).unwrap();
        assert_eq!(chain.len(), 2);
        let leaf = B64.decode(&chain[0]).unwrap();
        let info = ironhub_auth::x509::CertificateInfo::from_der(&leaf).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("dev-1"));
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
        assert_eq!(cert.public_key().raw, &key.subject_public_key_info()[..]);
        let now = ironhub_auth::unix_now();
        ironhub_auth::x509::verify_client_chain(&[leaf], &[issuer.ca_der().to_vec()], now).unwrap();
    }

    #[test]
    fn refuses_bad_or_foreign_csrs() {
        assert!(VerifiedCsr::parse("not base64!").is_err());
        assert!(VerifiedCsr::parse("AAAA").is_err());
        let (csr, _) = csr_for("dev-2");
        let mut der = B64.decode(&csr).unwrap();
        let last = der.len() - 1;
        der[last] ^= 1;
        assert!(
            VerifiedCsr::parse(&B64.encode(der)).is_err(),
            "tampered signature"
        );
        let csr = VerifiedCsr::parse(&csr).unwrap();
        assert!(check_common_name(&csr, "dev-3").is_err());
        assert!(check_common_name(&csr, "dev-2").is_ok());
    }

    #[test]
    fn issue_requests_are_checked_before_they_are_accepted() {
        let (csr, _) = csr_for("dev-1");
        let ok = format!(r#"{{"id": "dev-1", "csr": "{csr}", "replace": "*"}}"#);
        assert_eq!(
            read_request("dev-1", ok.as_bytes())
                .unwrap()
                .replace
                .as_deref(),
            Some("*")
        );
        let refused = |body: &str| {
            let e = read_request("dev-1", body.as_bytes()).unwrap_err();
            assert_eq!(e.code(), 400_004, "{body}: {e}");
        };
        refused("");
        refused("{\"id\": \"dev-1\", \"csr\":");
        refused("[\"not\", \"an\", \"object\"]");
        refused(&format!(r#"{{"id": "dev-2", "csr": "{csr}"}}"#));
        refused(r#"{"id": "dev-1", "csr": ""}"#);
        refused(r#"{"id": "dev-1", "csr": "not base64!"}"#);
        refused(&format!(r#"{{"id": "dev-1", "csr": "{csr}", "other": 1}}"#));
        refused(&format!(
            r#"{{"id": "dev-1", "csr": "{csr}", "replace": "123"}}"#
        ));
        refused(&format!(
            r#"{{"id": "dev-1", "csr": "{csr}", "replace": "-abc"}}"#
        ));
        let long = "A".repeat(MAX_CSR_LEN + 4);
        refused(&format!(r#"{{"id": "dev-1", "csr": "{long}"}}"#));
    }

    #[test]
    fn an_operator_ca_must_match_its_key() {
        let a = Issuer::generate("a").unwrap();
        let b = Issuer::generate("b").unwrap();
        let (cert, key) = a.to_pem();
        assert!(Issuer::from_pem(&cert, &key).is_ok());
        assert!(Issuer::from_pem(&cert, &b.to_pem().1).is_err());
    }
}

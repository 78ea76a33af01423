//! CA certificates with proof of possession, as IoT Hub's and DPS's certificate APIs keep
//! them: upload (never with a private key), a verification code, then a certificate with that
//! code as its CN signed by the CA's key, which marks the CA verified. The hub and the DPS
//! instance each have their own set ([`CertificateScope`]); the rules are the same, so they
//! live here once and each domain maps [`CaError`] to its own errors.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ironhub_auth::x509::{self, CertificateError};
use ironhub_store::{CertificateRecord, CertificateScope, Store, StoreError, WriteConflict};

/// Why a certificate operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// The name breaks the naming rule.
    #[error("{0}")]
    InvalidName(String),
    /// The upload or the proof is not acceptable.
    #[error("{0}")]
    Invalid(String),
    #[error("The certificate '{0}' does not exist.")]
    NotFound(String),
    #[error("A certificate named '{0}' already exists; send its etag in If-Match to replace it.")]
    AlreadyExists(String),
    #[error("Precondition failed: the certificate's etag is not '{0}'.")]
    PreconditionFailed(String),
    /// The store failed (logged where it happened).
    #[error("The server could not complete the operation; see its log.")]
    Store,
}

impl From<StoreError> for CaError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        CaError::Store
    }
}

/// An `If-Match` value with one level of quotes (and a weak marker) removed.
fn unquote(value: &str) -> String {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
        .to_owned()
}

/// IoT Hub's and DPS's rule for the names of certificates, routes and endpoints: 1–64 of
/// `A-Z a-z 0-9 - . _`.
pub(crate) fn is_resource_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The certificate name rule ([`is_resource_name`]).
fn validate_name(name: &str) -> Result<(), CaError> {
    if is_resource_name(name) {
        Ok(())
    } else {
        Err(CaError::InvalidName(format!(
            "The certificate name '{name}' is not valid: use 1 to 64 letters, digits, '-', '.' or '_'."
        )))
    }
}

/// `Invalid` when `text` (an upload, a proof, or a subject read from one) holds the NUL
/// character, which no store's text need hold (see [`crate::nul`]).
fn reject_nul(text: &str) -> Result<(), CaError> {
    if text.contains('\0') {
        return Err(CaError::Invalid(crate::nul::nul_message("the certificate")));
    }
    Ok(())
}

fn invalid(e: CertificateError) -> CaError {
    CaError::Invalid(format!("The certificate is not valid: {e}."))
}

fn time(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).unwrap_or_default()
}

fn conflict(e: WriteConflict, name: &str, if_match: Option<&str>) -> CaError {
    match e {
        WriteConflict::AlreadyExists => CaError::AlreadyExists(name.to_owned()),
        WriteConflict::NotFound => CaError::NotFound(name.to_owned()),
        WriteConflict::EtagMismatch => {
            CaError::PreconditionFailed(if_match.unwrap_or_default().to_owned())
        }
    }
}

/// The CA certificates of one scope.
#[derive(Debug, Clone)]
pub struct CaCertificates {
    store: Arc<dyn Store>,
    scope: CertificateScope,
}

impl CaCertificates {
    pub fn new(store: Arc<dyn Store>, scope: CertificateScope) -> Self {
        CaCertificates { store, scope }
    }

    /// Every certificate, by name.
    pub async fn list(&self) -> Result<Vec<CertificateRecord>, CaError> {
        Ok(self.store.list_certificates(self.scope).await?)
    }

    /// One certificate.
    pub async fn get(&self, name: &str) -> Result<CertificateRecord, CaError> {
        self.store
            .get_certificate(self.scope, name)
            .await?
            .ok_or_else(|| CaError::NotFound(name.to_owned()))
    }

    /// Uploads a CA certificate (PEM or base64 DER; never with a private key). Without
    /// `if_match` the name must be free; with it, the certificate with that etag is replaced.
    /// `is_verified` is taken as given (the uploader vouches for possession, as both Azure
    /// services allow); otherwise a new certificate starts unverified and needs proof of
    /// possession, while re-uploading the same certificate keeps its state.
    pub async fn put(
        &self,
        name: &str,
        certificate: &str,
        is_verified: bool,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, CaError> {
        validate_name(name)?;
        reject_nul(certificate)?;
        let info = x509::read_certificate(certificate).map_err(invalid)?;
        reject_nul(&info.subject)?;
        let if_match = if_match.map(unquote);
        let now = Utc::now();
        let existing = match &if_match {
            Some(_) => Some(self.get(name).await?),
            None => None,
        };
        let pem = info.pem();
        let same = existing.as_ref().filter(|e| e.certificate == pem);
        let record = CertificateRecord {
            name: name.to_owned(),
            etag: String::new(),
            certificate: pem,
            subject: info.subject.clone(),
            thumbprint: info.thumbprint.clone(),
            expiry: time(info.not_after),
            is_verified: is_verified || same.is_some_and(|e| e.is_verified),
            verification_code: same.and_then(|e| e.verification_code.clone()),
            created: existing.as_ref().map_or(now, |e| e.created),
            updated: now,
        };
        self.store
            .put_certificate(self.scope, record, if_match.clone())
            .await?
            .map_err(|e| conflict(e, name, if_match.as_deref()))
    }

    /// Deletes a certificate; with `if_match`, only the one with that etag.
    pub async fn delete(&self, name: &str, if_match: Option<&str>) -> Result<(), CaError> {
        let if_match = if_match.map(unquote);
        self.store
            .delete_certificate(self.scope, name, if_match.clone())
            .await?
            .map_err(|e| conflict(e, name, if_match.as_deref()))
    }

    /// Issues a fresh verification code for proof of possession (the etag changes).
    pub async fn generate_verification_code(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, CaError> {
        let current = self.checked(name, if_match).await?;
        let code: String = ironhub_auth::random_bytes(24)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        let etag = current.etag.clone();
        let record = CertificateRecord {
            verification_code: Some(code),
            updated: Utc::now(),
            ..current
        };
        self.store
            .put_certificate(self.scope, record, Some(etag.clone()))
            .await?
            .map_err(|e| conflict(e, name, Some(&etag)))
    }

    /// Proof of possession: `proof` (PEM or base64 DER) must have the current verification
    /// code as its subject CN, be valid now, and be signed by the CA's key. Marks the CA
    /// verified and retires the code.
    pub async fn verify(
        &self,
        name: &str,
        proof: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, CaError> {
        let current = self.checked(name, if_match).await?;
        let code = current.verification_code.clone().ok_or_else(|| {
            CaError::Invalid(format!(
                "The certificate '{name}' has no verification code: generate one first."
            ))
        })?;
        let proof = x509::read_certificate(proof).map_err(invalid)?;
        if proof.common_name.as_deref() != Some(code.as_str()) {
            return Err(CaError::Invalid(format!(
                "The verification certificate's subject CN must be the verification code '{code}'; it is '{}'.",
                proof.common_name.as_deref().unwrap_or("")
            )));
        }
        let now = Utc::now().timestamp();
        if proof.not_before > now || proof.not_after < now {
            return Err(CaError::Invalid(
                "The verification certificate is not valid at this time.".into(),
            ));
        }
        let ca = x509::read_certificate(&current.certificate).map_err(invalid)?;
        x509::verify_signed_by(&proof.der, &ca.der).map_err(invalid)?;
        let etag = current.etag.clone();
        let record = CertificateRecord {
            is_verified: true,
            verification_code: None,
            updated: Utc::now(),
            ..current
        };
        self.store
            .put_certificate(self.scope, record, Some(etag.clone()))
            .await?
            .map_err(|e| conflict(e, name, Some(&etag)))
    }

    /// The certificate, if `if_match` (when given) is its etag.
    async fn checked(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, CaError> {
        let current = self.get(name).await?;
        if let Some(tag) = if_match.map(unquote)
            && tag != "*"
            && tag != current.etag
        {
            return Err(CaError::PreconditionFailed(tag));
        }
        Ok(current)
    }

    /// The verified certificates that have not expired, DER: the trust anchors devices chain
    /// to.
    pub async fn verified_anchors(&self) -> Result<Vec<Vec<u8>>, CaError> {
        let now = Utc::now();
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|c| c.is_verified && c.expiry > now)
            .filter_map(|c| x509::read_certificate(&c.certificate).ok())
            .map(|c| c.der)
            .collect())
    }
}

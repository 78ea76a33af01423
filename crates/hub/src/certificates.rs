//! CA certificates, as IoT Hub's certificate API keeps them: upload, proof of possession
//! (verification code, then a certificate with that code as its CN signed by the CA's key),
//! and the verified CAs that devices with `authentication.type = certificateAuthority` chain to.

use chrono::{DateTime, Utc};
use ironhub_auth::x509::{self, CertificateError, CertificateInfo};
use ironhub_store::{CertificateRecord, WriteConflict};

use crate::registry::normalize_if_match;
use crate::{Hub, HubError};

/// IoT Hub's rule for certificate names: 1–64 of `A-Z a-z 0-9 - . _`.
fn validate_name(name: &str) -> Result<(), HubError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(HubError::ArgumentInvalid(format!(
            "The certificate name '{name}' is not valid: use 1 to 64 letters, digits, '-', '.' or '_'."
        )))
    }
}

fn invalid(e: CertificateError) -> HubError {
    HubError::CertificateInvalid(format!("The certificate is not valid: {e}."))
}

fn time(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).unwrap_or_default()
}

fn conflict(e: WriteConflict, name: &str, if_match: Option<&str>) -> HubError {
    match e {
        WriteConflict::AlreadyExists => HubError::CertificateAlreadyExists(name.to_owned()),
        WriteConflict::NotFound => HubError::CertificateNotFound(name.to_owned()),
        WriteConflict::EtagMismatch => {
            HubError::CertificatePreconditionFailed(if_match.unwrap_or_default().to_owned())
        }
    }
}

impl Hub {
    /// Every uploaded CA certificate, by name.
    pub async fn list_certificates(&self) -> Result<Vec<CertificateRecord>, HubError> {
        Ok(self.store.list_certificates().await?)
    }

    /// One CA certificate.
    pub async fn get_certificate(&self, name: &str) -> Result<CertificateRecord, HubError> {
        self.store
            .get_certificate(name)
            .await?
            .ok_or_else(|| HubError::CertificateNotFound(name.to_owned()))
    }

    /// Uploads a CA certificate (PEM or base64 DER; never with a private key). Without
    /// `if_match` the name must be free; with it, the certificate with that etag is replaced.
    /// `is_verified` is taken as given, as IoT Hub does (the uploader vouches for possession);
    /// otherwise a new certificate starts unverified and needs proof of possession, while
    /// re-uploading the same certificate keeps its state.
    pub async fn put_certificate(
        &self,
        name: &str,
        certificate: &str,
        is_verified: bool,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, HubError> {
        validate_name(name)?;
        let info = x509::read_certificate(certificate).map_err(invalid)?;
        let if_match = if_match.map(normalize_if_match);
        let now = Utc::now();
        let existing = match &if_match {
            Some(_) => Some(self.get_certificate(name).await?),
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
            .put_certificate(record, if_match.clone())
            .await?
            .map_err(|e| conflict(e, name, if_match.as_deref()))
    }

    /// Deletes a CA certificate; with `if_match`, only the one with that etag.
    pub async fn delete_certificate(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<(), HubError> {
        let if_match = if_match.map(normalize_if_match);
        self.store
            .delete_certificate(name, if_match.clone())
            .await?
            .map_err(|e| conflict(e, name, if_match.as_deref()))
    }

    /// Issues a fresh verification code for proof of possession (the etag changes).
    pub async fn generate_verification_code(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, HubError> {
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
            .put_certificate(record, Some(etag.clone()))
            .await?
            .map_err(|e| conflict(e, name, Some(&etag)))
    }

    /// Proof of possession: `proof` (PEM or base64 DER) must have the current verification
    /// code as its subject CN, be valid now, and be signed by the CA's key. Marks the CA
    /// verified and retires the code.
    pub async fn verify_certificate(
        &self,
        name: &str,
        proof: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, HubError> {
        let current = self.checked(name, if_match).await?;
        let code = current.verification_code.clone().ok_or_else(|| {
            HubError::CertificateInvalid(format!(
                "The certificate '{name}' has no verification code: generate one first."
            ))
        })?;
        let proof = x509::read_certificate(proof).map_err(invalid)?;
        if proof.common_name.as_deref() != Some(code.as_str()) {
            return Err(HubError::CertificateInvalid(format!(
                "The verification certificate's subject CN must be the verification code '{code}'; it is '{}'.",
                proof.common_name.as_deref().unwrap_or("")
            )));
        }
        let now = Utc::now().timestamp();
        if proof.not_before > now || proof.not_after < now {
            return Err(HubError::CertificateInvalid(
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
            .put_certificate(record, Some(etag.clone()))
            .await?
            .map_err(|e| conflict(e, name, Some(&etag)))
    }

    /// The certificate, if `if_match` (when given) is its etag.
    async fn checked(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, HubError> {
        let current = self.get_certificate(name).await?;
        if let Some(tag) = if_match.map(normalize_if_match)
            && tag != "*"
            && tag != current.etag
        {
            return Err(HubError::CertificatePreconditionFailed(tag));
        }
        Ok(current)
    }

    /// Verifies a device's client certificate chain (leaf first) against the verified,
    /// unexpired CA certificates, and checks that the leaf's CN is the device id.
    pub(crate) async fn verify_ca_chain(
        &self,
        device_id: &str,
        chain: &[impl AsRef<[u8]>],
    ) -> Result<(), HubError> {
        let now = Utc::now();
        let anchors: Vec<Vec<u8>> = self
            .store
            .list_certificates()
            .await?
            .into_iter()
            .filter(|c| c.is_verified && c.expiry > now)
            .filter_map(|c| x509::read_certificate(&c.certificate).ok())
            .map(|c| c.der)
            .collect();
        if anchors.is_empty() {
            return Err(HubError::Unauthorized(format!(
                "Unauthorized: '{device_id}' authenticates by CA, and no verified CA certificate is registered."
            )));
        }
        let unauthorized =
            |e: CertificateError| HubError::Unauthorized(format!("Unauthorized: {e}."));
        x509::verify_client_chain(chain, &anchors, u64::try_from(now.timestamp()).unwrap_or(0))
            .map_err(unauthorized)?;
        let leaf = chain.first().map(AsRef::as_ref).unwrap_or_default();
        let cn = CertificateInfo::from_der(leaf)
            .map_err(unauthorized)?
            .common_name;
        if cn.as_deref() != Some(device_id) {
            return Err(HubError::Unauthorized(format!(
                "Unauthorized: the certificate's CN '{}' is not the device id '{device_id}'.",
                cn.unwrap_or_default()
            )));
        }
        Ok(())
    }
}

//! The DPS instance's CA certificates (Azure docs, How to do proof-of-possession for X.509 CA
//! certificates with your Device Provisioning Service): upload (PEM or `.cer`,
//! never with a private key), verified on upload or by proof of possession, list, get and
//! delete with etags. X.509 enrollment groups trust devices through them. The rules are IoT
//! Hub's too, so they are shared ([`ironhub_hub::ca`]); the instance keeps its own set.

use ironhub_hub::ca::{CaCertificates, CaError};
use ironhub_store::{CertificateRecord, CertificateScope};

use crate::{Dps, DpsError};

impl From<CaError> for DpsError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::InvalidName(m) | CaError::Invalid(m) => DpsError::BadRequest(m),
            CaError::NotFound(n) => DpsError::CertificateNotFound(n),
            CaError::AlreadyExists(n) => DpsError::Conflict(format!(
                "A certificate named '{n}' already exists; send its etag in If-Match to replace it."
            )),
            CaError::PreconditionFailed(t) => DpsError::PreconditionFailed(t),
            CaError::Store => DpsError::ServerError(e.to_string()),
        }
    }
}

impl Dps {
    /// The instance's CA certificates.
    pub(crate) fn cas(&self) -> CaCertificates {
        CaCertificates::new(self.store.clone(), CertificateScope::Dps)
    }

    /// Every CA certificate, by name.
    pub async fn list_certificates(&self) -> Result<Vec<CertificateRecord>, DpsError> {
        Ok(self.cas().list().await?)
    }

    /// One CA certificate.
    pub async fn get_certificate(&self, name: &str) -> Result<CertificateRecord, DpsError> {
        Ok(self.cas().get(name).await?)
    }

    /// Uploads a CA certificate; `is_verified` sets it verified on upload (Azure docs,
    /// Configure verified CA certificates, 'Automatic verification of intermediate or root CA
    /// through self-attestation'). See [`CaCertificates::put`].
    pub async fn put_certificate(
        &self,
        name: &str,
        certificate: &str,
        is_verified: bool,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, DpsError> {
        Ok(self
            .cas()
            .put(name, certificate, is_verified, if_match)
            .await?)
    }

    /// Deletes a CA certificate; with `if_match`, only the one with that etag. Devices
    /// already on their hubs stay there (Azure docs, How to roll X.509 device certificates,
    /// 'Individual enrollments and security breaches').
    pub async fn delete_certificate(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<(), DpsError> {
        Ok(self.cas().delete(name, if_match).await?)
    }

    /// A fresh verification code (Azure docs, Configure verified CA certificates, 'Manual
    /// verification of intermediate or root CA').
    pub async fn generate_verification_code(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, DpsError> {
        Ok(self
            .cas()
            .generate_verification_code(name, if_match)
            .await?)
    }

    /// Proof of possession: a certificate with the verification code as its CN, signed by
    /// the CA's key (Azure docs, Configure verified CA certificates, 'Digitally sign the
    /// verification code to create a verification certificate').
    pub async fn verify_certificate(
        &self,
        name: &str,
        proof: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, DpsError> {
        Ok(self.cas().verify(name, proof, if_match).await?)
    }
}

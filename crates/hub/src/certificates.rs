//! CA certificates, as IoT Hub's certificate API keeps them: upload, proof of possession
//! (verification code, then a certificate with that code as its CN signed by the CA's key),
//! and the verified CAs that devices with `authentication.type = certificateAuthority` chain to.

use chrono::Utc;
use ironhub_auth::x509::{self, CertificateError, CertificateInfo};
use ironhub_store::{CertificateRecord, CertificateScope};

use crate::ca::{CaCertificates, CaError};
use crate::{Hub, HubError};

impl From<CaError> for HubError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::InvalidName(m) => HubError::ArgumentInvalid(m),
            CaError::Invalid(m) => HubError::CertificateInvalid(m),
            CaError::NotFound(n) => HubError::CertificateNotFound(n),
            CaError::AlreadyExists(n) => HubError::CertificateAlreadyExists(n),
            CaError::PreconditionFailed(t) => HubError::CertificatePreconditionFailed(t),
            CaError::Store => HubError::ServerError(e.to_string()),
        }
    }
}

impl Hub {
    /// The hub's CA certificates.
    fn cas(&self) -> CaCertificates {
        CaCertificates::new(self.store.clone(), CertificateScope::Hub)
    }

    /// Every uploaded CA certificate, by name.
    pub async fn list_certificates(&self) -> Result<Vec<CertificateRecord>, HubError> {
        Ok(self.cas().list().await?)
    }

    /// One CA certificate.
    pub async fn get_certificate(&self, name: &str) -> Result<CertificateRecord, HubError> {
        Ok(self.cas().get(name).await?)
    }

    /// Uploads a CA certificate (see [`CaCertificates::put`]).
    pub async fn put_certificate(
        &self,
        name: &str,
        certificate: &str,
        is_verified: bool,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, HubError> {
        Ok(self
            .cas()
            .put(name, certificate, is_verified, if_match)
            .await?)
    }

    /// Deletes a CA certificate; with `if_match`, only the one with that etag.
    pub async fn delete_certificate(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<(), HubError> {
        Ok(self.cas().delete(name, if_match).await?)
    }

    /// Issues a fresh verification code for proof of possession (the etag changes).
    pub async fn generate_verification_code(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, HubError> {
        Ok(self
            .cas()
            .generate_verification_code(name, if_match)
            .await?)
    }

    /// Proof of possession (see [`CaCertificates::verify`]).
    pub async fn verify_certificate(
        &self,
        name: &str,
        proof: &str,
        if_match: Option<&str>,
    ) -> Result<CertificateRecord, HubError> {
        Ok(self.cas().verify(name, proof, if_match).await?)
    }

    /// Verifies a device's or module's client certificate chain (leaf first) against the
    /// verified, unexpired CA certificates, and checks that the leaf's CN is `identity` (the
    /// device id, or `{deviceId}/{moduleId}`).
    pub(crate) async fn verify_ca_chain(
        &self,
        identity: &str,
        chain: &[impl AsRef<[u8]>],
    ) -> Result<(), HubError> {
        let now = Utc::now();
        let mut anchors = self.cas().verified_anchors().await?;
        // What the hub issued it trusts without a proof of possession.
        if let Some(cas) = &self.issuing_cas {
            anchors.extend(cas.anchors().map(<[u8]>::to_vec));
        }
        if anchors.is_empty() {
            return Err(HubError::Unauthorized(format!(
                "Unauthorized: '{identity}' authenticates by CA, and no verified CA certificate is registered."
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
        if cn.as_deref() != Some(identity) {
            return Err(HubError::Unauthorized(format!(
                "Unauthorized: the certificate's CN '{}' is not the identity's id '{identity}'.",
                cn.unwrap_or_default()
            )));
        }
        Ok(())
    }
}

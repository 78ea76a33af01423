//! Operational certificates issued at registration (DPS API `2025-07-01-preview`): a device
//! that sends `"csr"` (base64 PKCS#10 DER) in its register body gets
//! `issuedCertificateChain` (leaf first, base64 DER) in its assigned registration state, and
//! its hub device authenticates by that certificate (`certificateAuthority`: the hub trusts
//! the issuing CA it shares with the DPS, [`ironhub_hub::credentials`]).
//!
//! The CSR is checked when the device registers (a 400, nothing started, for one that is not
//! PKCS#10, whose signature does not verify, or whose common name is not the registration
//! id); the certificate is signed before the device is assigned, so a device is switched to
//! certificate authentication only once its certificate exists.

use std::sync::Arc;

use ironhub_hub::credentials::{CsrError, Issuer, VerifiedCsr, check_common_name};

use crate::attestation::Attested;
use crate::{Dps, DpsError};

fn csr_refused(e: CsrError) -> DpsError {
    match e {
        CsrError::Invalid(m) => DpsError::BadRequest(m),
        CsrError::Signing(m) => DpsError::ServerError(m),
    }
}

impl Dps {
    /// The same instance, issuing certificates to devices that send a CSR.
    pub fn with_issuer(mut self, issuer: Arc<Issuer>) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// The CSR of a register request, checked; `None` when the device sent none.
    pub(crate) fn read_csr(
        &self,
        attested: &Attested,
        csr: Option<&str>,
    ) -> Result<Option<VerifiedCsr>, DpsError> {
        let Some(csr) = csr else {
            return Ok(None);
        };
        if self.issuer.is_none() {
            return Err(DpsError::BadRequest(
                "This provisioning service issues no certificates: register without a csr.".into(),
            ));
        }
        let csr = VerifiedCsr::parse(csr).map_err(csr_refused)?;
        check_common_name(&csr, &attested.registration_id)
            .or_else(|_| check_common_name(&csr, attested.device_id()))
            .map_err(csr_refused)?;
        Ok(Some(csr))
    }

    /// The certificate chain issued to `device_id` for `csr` (none without a CSR).
    pub(crate) fn issue_for(
        &self,
        device_id: &str,
        csr: Option<&VerifiedCsr>,
    ) -> Result<Option<Vec<String>>, DpsError> {
        let (Some(csr), Some(issuer)) = (csr, &self.issuer) else {
            return Ok(None);
        };
        let chain = issuer.issue(device_id, csr).map_err(csr_refused)?;
        tracing::info!(target: "DeviceOperations", device_id, "certificate issued");
        Ok(Some(chain))
    }
}

//! Operational certificates issued at registration (DPS API `2025-07-01-preview`): a device
//! that sends `"csr"` (base64 PKCS#10 DER) in its register body gets
//! `issuedCertificateChain` (leaf first, base64 DER) in its assigned registration state, and
//! its hub device authenticates by that certificate (`certificateAuthority`: the hub trusts
//! the issuing CAs it shares with the DPS, [`ironhub_hub::issuing_cas`]).
//!
//! The issuing CA is the one the enrollment's `clientCertificateIssuancePolicy` names (the
//! individual enrollment's when the device has one, else its group's), the default one when
//! it names none; an enrollment naming a CA that is not configured is refused when written.
//! The hub device records the CA, so the hub renews with the same one.
//!
//! The CSR is checked when the device registers (a 400, nothing started, for one that is not
//! PKCS#10, whose signature does not verify, whose common name is not the registration id,
//! or whose enrollment names a CA no longer configured); the certificate is signed before the
//! device is assigned, so a device is switched to certificate authentication only once its
//! certificate exists.

use std::sync::Arc;

use ironhub_hub::credentials::{CsrError, Issuer, VerifiedCsr, check_common_name};
use ironhub_hub::issuing_cas::IssuingCas;

use crate::attestation::Attested;
use crate::model::EnrollmentSettings;
use crate::{Dps, DpsError};

fn csr_refused(e: CsrError) -> DpsError {
    match e {
        CsrError::Invalid(m) => DpsError::BadRequest(m),
        CsrError::Signing(m) => DpsError::ServerError(m),
    }
}

/// The CA the attested device's enrollment names (the default when none): a 400 when the name
/// is no longer configured.
fn issuing_ca<'a>(
    cas: &'a IssuingCas,
    attested: &Attested,
) -> Result<(&'a str, &'a Issuer), DpsError> {
    cas.get(attested.enrollment.settings().certificate_authority_name())
        .map_err(|e| {
            DpsError::BadRequest(format!(
                "The enrollment's clientCertificateIssuancePolicy cannot be applied: {e}"
            ))
        })
}

/// A certificate issued at registration: the CA's name and the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    pub certificate_authority: String,
    pub chain: Vec<String>,
}

impl Dps {
    /// The same instance, issuing certificates with `cas` to devices that send a CSR.
    pub fn with_issuing_cas(mut self, cas: Arc<IssuingCas>) -> Self {
        self.issuing_cas = Some(cas);
        self
    }

    /// Checks an enrollment's `clientCertificateIssuancePolicy` as it is written: a blank
    /// name is no policy; a name must be a configured issuing CA.
    pub(crate) fn check_issuance_policy(&self, s: &mut EnrollmentSettings) -> Result<(), DpsError> {
        if let Some(policy) = &mut s.client_certificate_issuance_policy {
            policy.certificate_authority_name = policy
                .certificate_authority_name
                .take()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty());
        }
        let Some(name) = s.certificate_authority_name() else {
            s.client_certificate_issuance_policy = None;
            return Ok(());
        };
        let cas = self.issuing_cas.as_ref().ok_or_else(|| {
            DpsError::BadRequest(format!(
                "clientCertificateIssuancePolicy names the certificate authority '{name}', and \
                 this provisioning service issues no certificates."
            ))
        })?;
        cas.check(name).map_err(|e| {
            DpsError::BadRequest(format!("clientCertificateIssuancePolicy is not valid: {e}"))
        })
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
        let Some(cas) = &self.issuing_cas else {
            return Err(DpsError::BadRequest(
                "This provisioning service issues no certificates: register without a csr.".into(),
            ));
        };
        issuing_ca(cas, attested)?;
        let csr = VerifiedCsr::parse(csr).map_err(csr_refused)?;
        check_common_name(&csr, &attested.registration_id)
            .or_else(|_| check_common_name(&csr, attested.device_id()))
            .map_err(csr_refused)?;
        Ok(Some(csr))
    }

    /// The certificate issued to the attested device for `csr` by its enrollment's CA (none
    /// without a CSR).
    pub(crate) fn issue_for(
        &self,
        attested: &Attested,
        csr: Option<&VerifiedCsr>,
    ) -> Result<Option<Issued>, DpsError> {
        let (Some(csr), Some(cas)) = (csr, &self.issuing_cas) else {
            return Ok(None);
        };
        let (name, issuer) = issuing_ca(cas, attested)?;
        let device_id = attested.device_id();
        let chain = issuer.issue(device_id, csr).map_err(csr_refused)?;
        tracing::info!(target: "DeviceOperations", device_id, ca = name, "certificate issued");
        Ok(Some(Issued {
            certificate_authority: name.to_owned(),
            chain,
        }))
    }
}

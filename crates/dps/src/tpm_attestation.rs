//! TPM attestation of a device, as DPS runs it over HTTPS (`docs/protocol/tpm.md`, "The
//! exchange"; Azure docs, TPM attestation, 'Detailed attestation process'):
//!
//! 1. the device registers with no token and `tpm: {endorsementKey, storageRootKey}`; if an
//!    individual TPM enrollment of its registration id holds that endorsement key, it is
//!    answered 401 with `{authenticationKey, keyName: "registration"}` ([`Dps::tpm_challenge`]),
//!    which only its TPM can open;
//! 2. the device imports the key and registers with a SAS token signed by it (`skn=registration`),
//!    checked like a symmetric key enrollment's ([`Dps::tpm_keys`]);
//! 3. on assignment the key is the hub device's symmetric key, and the registration state
//!    carries it sealed to the TPM again (`tpm.authenticationKey`).
//!
//! The key is derived from the enrollment's endorsement key and the instance's owner policy
//! key ([`tpm::device_key`]), so it needs no storage, every node computes the same one, and
//! a device that registers again keeps its key. The endorsement key in the enrollment is the
//! allow-list: a TPM whose EK is not enrolled gets DPS's 401 and nothing is created.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ironhub_store::DpsCollection;

use crate::attestation::{Attested, AttestedEnrollment};
use crate::model::{AttestationType, IndividualEnrollment, TpmAttestation, TpmRegistrationResult};
use crate::rules::validate_registration_id;
use crate::tpm::{self, TpmPublic};
use crate::{Dps, DpsError, OWNER_POLICY, from_record};

fn not_enrolled() -> DpsError {
    // One answer for no enrollment, another attestation, or another EK: a TPM that is not
    // enrolled learns nothing about the enrollment list.
    DpsError::Unauthorized(
        "Unauthorized: no TPM enrollment of this registration id holds this endorsement key."
            .into(),
    )
}

impl Dps {
    /// The secret TPM device keys are derived from: the owner policy's primary key (never
    /// regenerated, [`ironhub_store::DpsSettings`]).
    fn tpm_secret(&self) -> Result<Vec<u8>, DpsError> {
        let settings = self.settings();
        let policy = settings
            .policy(OWNER_POLICY)
            .or_else(|| settings.policies.first())
            .ok_or_else(|| {
                DpsError::ServerError("The provisioning service has no policy key.".into())
            })?;
        Ok(policy.primary_key.as_bytes().to_vec())
    }

    /// The enrollment's endorsement key, parsed.
    fn enrolled_ek(e: &IndividualEnrollment) -> Result<TpmPublic, DpsError> {
        let tpm = e
            .settings
            .attestation
            .tpm
            .as_ref()
            .filter(|_| e.settings.attestation.kind == AttestationType::Tpm)
            .ok_or_else(not_enrolled)?;
        TpmPublic::from_base64(&tpm.endorsement_key, "endorsement key of the enrollment")
            .map_err(|_| not_enrolled())
    }

    /// The symmetric keys (primary, secondary: the same key) of a device of a TPM
    /// enrollment: what its TPM signs with once it imported the challenge's key.
    pub fn tpm_keys(&self, e: &IndividualEnrollment) -> Result<[String; 2], DpsError> {
        let ek = Self::enrolled_ek(e)?;
        let key = B64.encode(tpm::device_key(
            &self.tpm_secret()?,
            &e.registration_id,
            &ek,
        ));
        Ok([key.clone(), key])
    }

    /// The individual TPM enrollment of `registration_id` whose EK is `ek`.
    async fn tpm_enrollment(
        &self,
        registration_id: &str,
        ek: &TpmPublic,
    ) -> Result<IndividualEnrollment, DpsError> {
        let record = self
            .store
            .dps_get(DpsCollection::Enrollments, registration_id)
            .await?
            .ok_or_else(not_enrolled)?;
        let e: IndividualEnrollment = from_record(&record)?;
        if Self::enrolled_ek(&e)? != *ek {
            return Err(not_enrolled());
        }
        Ok(e)
    }

    /// The key blob for the TPM of `given` (its EK and SRK), sealing the enrollment's key.
    fn seal_key(
        &self,
        e: &IndividualEnrollment,
        given: &TpmAttestation,
    ) -> Result<String, DpsError> {
        let ek = TpmPublic::from_base64(&given.endorsement_key, "endorsementKey")?;
        let srk_text = given
            .storage_root_key
            .as_deref()
            .or(e
                .settings
                .attestation
                .tpm
                .as_ref()
                .and_then(|t| t.storage_root_key.as_deref()))
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                DpsError::BadRequest(
                    "A TPM registration needs the TPM's storageRootKey as well as its \
                     endorsementKey."
                        .into(),
                )
            })?;
        let srk = TpmPublic::from_base64(srk_text, "storageRootKey")?;
        let key = tpm::device_key(&self.tpm_secret()?, &e.registration_id, &ek);
        Ok(B64.encode(tpm::authentication_key(&ek, &srk, &key)?))
    }

    /// The first step of TPM attestation: the `authenticationKey` for a device that sent its
    /// TPM's keys and no token. The adapter answers it with 401 (HTTPS).
    pub async fn tpm_challenge(
        &self,
        id_scope: &str,
        registration_id: &str,
        given: &TpmAttestation,
    ) -> Result<String, DpsError> {
        self.check_id_scope(id_scope)?;
        validate_registration_id(registration_id)?;
        let ek = TpmPublic::from_base64(&given.endorsement_key, "endorsementKey")?;
        let e = self.tpm_enrollment(registration_id, &ek).await?;
        let blob = self.seal_key(&e, given)?;
        tracing::info!(target: "DeviceOperations", registration_id, "TPM challenge issued");
        Ok(blob)
    }

    /// What an assigned TPM device gets in its registration state: its key sealed to its TPM
    /// (the TPM keys of the register request, else none).
    pub(crate) fn tpm_registration_result(
        &self,
        attested: &Attested,
        given: Option<&TpmAttestation>,
    ) -> Result<Option<TpmRegistrationResult>, DpsError> {
        let (AttestedEnrollment::Individual(e), Some(given)) = (&attested.enrollment, given) else {
            return Ok(None);
        };
        if e.settings.attestation.kind != AttestationType::Tpm {
            return Ok(None);
        }
        let ek = TpmPublic::from_base64(&given.endorsement_key, "endorsementKey")?;
        if Self::enrolled_ek(e)? != ek {
            return Err(not_enrolled());
        }
        Ok(Some(TpmRegistrationResult {
            authentication_key: self.seal_key(e, given)?,
        }))
    }
}

//! Device attestation by symmetric key: a device's DPS SAS token (`sr={idScope}/registrations/
//! {registrationId}`, any field order, `skn=registration` ignored; `clients.md` §2.1, seed 004
//! L6313–L6323) checked against its individual enrollment's keys, or against the key derived
//! from an enrollment group's key (seed 004 L6329, L6369; `clients.md` §2.2).
//!
//! The lookup order is the seed's (L6477–L6481): the individual enrollment first, then the
//! groups; the first entry that matches decides, and a disabled one refuses.

use std::fmt;

use ironhub_auth::{SasError, SasToken, derive_device_key, unix_now};
use ironhub_store::DpsCollection;

use crate::model::{AttestationType, EnrollmentGroup, IndividualEnrollment};
use crate::rules::validate_registration_id;
use crate::{Dps, DpsError, from_record, read_all};

/// The enrollment a device attested against.
#[derive(Debug, Clone, PartialEq)]
pub enum AttestedEnrollment {
    Individual(Box<IndividualEnrollment>),
    Group(Box<EnrollmentGroup>),
}

impl AttestedEnrollment {
    /// The settings of the enrollment.
    pub fn settings(&self) -> &crate::model::EnrollmentSettings {
        match self {
            AttestedEnrollment::Individual(e) => &e.settings,
            AttestedEnrollment::Group(g) => &g.settings,
        }
    }

    /// The enrollment group's id, for a group device.
    pub fn group_id(&self) -> Option<&str> {
        match self {
            AttestedEnrollment::Individual(_) => None,
            AttestedEnrollment::Group(g) => Some(&g.enrollment_group_id),
        }
    }
}

/// A device that proved who it is.
#[derive(Clone, PartialEq)]
pub struct Attested {
    /// The registration id as the device sent it (its case kept).
    pub registration_id: String,
    pub enrollment: AttestedEnrollment,
    /// The keys the hub device must get, primary then secondary: the enrollment's own keys,
    /// or the keys derived from the group's (the device signed with one of them, and
    /// reconnects to its hub with the same key, `clients.md` §2.2).
    pub device_keys: [String; 2],
    /// When the device's token expires (Unix seconds).
    pub expires: u64,
}

impl fmt::Debug for Attested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attested")
            .field("registration_id", &self.registration_id)
            .field("enrollment", &self.enrollment)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Attested {
    /// The IoT Hub device id: the individual enrollment's `deviceId`, else the registration
    /// id (seed 004 L6214, L6226, L9905).
    pub fn device_id(&self) -> &str {
        match &self.enrollment {
            AttestedEnrollment::Individual(e) => {
                e.device_id.as_deref().unwrap_or(&self.registration_id)
            }
            AttestedEnrollment::Group(_) => &self.registration_id,
        }
    }
}

fn refused(e: SasError) -> DpsError {
    DpsError::Unauthorized(format!("Unauthorized: {e}."))
}

fn no_match() -> DpsError {
    // The same answer whether there is no enrollment or the signature is wrong: a device
    // without credentials learns nothing about the enrollment list.
    DpsError::Unauthorized(
        "Unauthorized: the token is not signed with the key of an enrollment for this \
         registration id."
            .into(),
    )
}

fn disabled(what: &str) -> DpsError {
    DpsError::EnrollmentDisabled(format!("The {what} of this device is disabled."))
}

impl Dps {
    /// Attests a device that registers with a SAS token, at `now` (Unix seconds).
    pub async fn attest_symmetric_key(
        &self,
        id_scope: &str,
        registration_id: &str,
        token: &str,
    ) -> Result<Attested, DpsError> {
        self.attest_symmetric_key_at(id_scope, registration_id, token, unix_now())
            .await
    }

    /// [`Dps::attest_symmetric_key`] at a given time (tests move the clock).
    pub async fn attest_symmetric_key_at(
        &self,
        id_scope: &str,
        registration_id: &str,
        token: &str,
        now: u64,
    ) -> Result<Attested, DpsError> {
        self.check_id_scope(id_scope)?;
        validate_registration_id(registration_id)?;
        let token = SasToken::parse(token).map_err(refused)?;
        token.check_expiry(now).map_err(refused)?;
        // The token names exactly this registration (segments compared case-insensitively,
        // as registration ids are).
        let target = format!("{id_scope}/registrations/{registration_id}");
        let resource = token.resource();
        if !(ironhub_auth::resource_covers(&resource, &target)
            && ironhub_auth::resource_covers(&target, &resource))
        {
            return Err(refused(SasError::ResourceMismatch(resource)));
        }
        let expires = token.expiry();

        if let Some(record) = self
            .store
            .dps_get(DpsCollection::Enrollments, registration_id)
            .await?
        {
            let e: IndividualEnrollment = from_record(&record)?;
            let keys = e
                .settings
                .attestation
                .symmetric_key
                .as_ref()
                .filter(|_| e.settings.attestation.kind == AttestationType::SymmetricKey)
                .and_then(|k| Some([k.primary_key.clone()?, k.secondary_key.clone()?]))
                .ok_or_else(|| {
                    DpsError::Unauthorized(format!(
                        "Unauthorized: the enrollment of this device attests by {}, not by \
                         symmetric key.",
                        e.settings.attestation.kind.as_str()
                    ))
                })?;
            token
                .verify_keys(keys.iter().map(String::as_str))
                .map_err(|_| no_match())?;
            if !e.settings.is_enabled() {
                return Err(disabled("individual enrollment"));
            }
            return Ok(Attested {
                registration_id: registration_id.to_owned(),
                enrollment: AttestedEnrollment::Individual(Box::new(e)),
                device_keys: keys,
                expires,
            });
        }

        // Groups, in id order: at most 100 symmetric key groups exist (seed 004 L326).
        for record in read_all(self.store.as_ref(), DpsCollection::EnrollmentGroups, None).await? {
            let g: EnrollmentGroup = from_record(&record)?;
            if g.settings.attestation.kind != AttestationType::SymmetricKey {
                continue;
            }
            let Some(k) = &g.settings.attestation.symmetric_key else {
                continue;
            };
            let (Some(primary), Some(secondary)) = (&k.primary_key, &k.secondary_key) else {
                continue;
            };
            // Derived over the registration id exactly as sent (Tasmota sends upper-case
            // MACs); the raw group key is never tried (seed 004 L6369).
            let derived = [
                derive_device_key(primary, registration_id),
                derive_device_key(secondary, registration_id),
            ];
            let [Ok(p), Ok(s)] = derived else {
                continue;
            };
            if token.verify_keys([p.as_str(), s.as_str()]).is_ok() {
                if !g.settings.is_enabled() {
                    return Err(disabled("enrollment group"));
                }
                return Ok(Attested {
                    registration_id: registration_id.to_owned(),
                    enrollment: AttestedEnrollment::Group(Box::new(g)),
                    device_keys: [p, s],
                    expires,
                });
            }
        }
        Err(no_match())
    }
}

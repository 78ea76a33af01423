//! Device attestation.
//!
//! - By symmetric key: a device's DPS SAS token (`sr={idScope}/registrations/{registrationId}`,
//!   any field order, `skn=registration` ignored; `docs/protocol/sas-tokens.md`; Azure docs,
//!   Symmetric key attestation, 'Detailed attestation process')
//!   checked against its individual enrollment's keys, or against the key derived from an
//!   enrollment group's key (Azure docs, Symmetric key attestation, 'Group Enrollments';
//!   `docs/protocol/sas-tokens.md`, "Group key derivation").
//! - By X.509: the TLS client certificate chain. The leaf's CN is the registration id (Azure
//!   docs, X.509 certificate attestation, 'End-entity "leaf" certificate'). An individual
//!   enrollment holds the device's own certificate (matched
//!   by thumbprint); a group holds a root or intermediate certificate (its
//!   `signingCertificates`, or `caReferences` naming a certificate of the DPS instance), and
//!   admits a device whose presented chain goes through that certificate to a verified CA
//!   certificate of the instance (Azure docs, X.509 certificate attestation, 'DPS device chain
//!   requirements'; Configure verified CA certificates).
//!
//! The lookup order is DPS's (Azure docs, X.509 certificate attestation, 'DPS order of
//! operations with certificates'): the individual enrollment first, then the
//! groups (for X.509, from the first intermediate of the chain towards the root); the first
//! entry that matches decides. A disabled one still attests the device (it proved who it
//! is), and its registration ends `disabled` ([`Attested::is_enabled`]).

use std::fmt;

use ironhub_auth::x509::{CertificateInfo, read_certificate, verify_client_chain_via};
use ironhub_auth::{SasError, SasToken, derive_device_key, unix_now};
use ironhub_store::DpsCollection;

use crate::model::{
    AttestationType, DeviceRegistrationState, EnrollmentGroup, IndividualEnrollment,
    X509Attestation, X509CertificateInfo, X509Certificates,
};
use crate::rules::{
    MAX_X509_REGISTRATION_ID_LEN, certificate_info, same_id, validate_registration_id,
};
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

/// What the device proved itself with, and so what the hub device gets.
#[derive(Clone, PartialEq)]
pub enum DeviceCredential {
    /// The keys the hub device must get, primary then secondary: the enrollment's own keys,
    /// or the keys derived from the group's (the device signed with one of them, and
    /// reconnects to its hub with the same key, `docs/protocol/sas-tokens.md`, "Group key
    /// derivation").
    SymmetricKey([String; 2]),
    /// An X.509 device. The hub device authenticates by thumbprint (`selfSigned`, as DPS
    /// registers X.509 devices: Azure docs, Tutorial: Provision multiple X.509 devices using
    /// enrollment groups, 'Confirm your device provisioning registration'): the enrollment's
    /// certificates for an
    /// individual enrollment, the device's own certificate for a group.
    X509 {
        /// SHA-1 thumbprints, upper-case hex, primary then secondary.
        thumbprints: [String; 2],
        /// The device certificate (the custom allocation webhook gets it).
        certificate: X509CertificateInfo,
    },
}

impl DeviceCredential {
    /// The symmetric keys, for a symmetric key device.
    pub fn keys(&self) -> Option<&[String; 2]> {
        match self {
            DeviceCredential::SymmetricKey(k) => Some(k),
            DeviceCredential::X509 { .. } => None,
        }
    }
}

impl fmt::Debug for DeviceCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceCredential::SymmetricKey(_) => f.write_str("SymmetricKey(..)"),
            DeviceCredential::X509 { thumbprints, .. } => {
                f.debug_tuple("X509").field(&thumbprints[0]).finish()
            }
        }
    }
}

/// A device that proved who it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Attested {
    /// The registration id as the device sent it (its case kept).
    pub registration_id: String,
    pub enrollment: AttestedEnrollment,
    pub credential: DeviceCredential,
    /// When the device's token expires (Unix seconds); `None` for a certificate.
    pub expires: Option<u64>,
}

impl Attested {
    /// Whether the enrollment that matched may provision the device. A disabled one refuses
    /// it (the first entry that matches decides: Azure docs, X.509 certificate attestation,
    /// 'DPS order of operations with certificates'): the registration ends with status
    /// `disabled` (How to use custom allocation policies, 'Troubleshooting custom allocation
    /// policies').
    pub fn is_enabled(&self) -> bool {
        self.enrollment.settings().is_enabled()
    }

    /// The IoT Hub device id: the individual enrollment's `deviceId`, else the registration
    /// id (Azure docs, IoT Hub Device Provisioning Service (DPS) terminology, 'Enrollment
    /// group' and 'Individual enrollment').
    pub fn device_id(&self) -> &str {
        match &self.enrollment {
            AttestedEnrollment::Individual(e) => {
                e.device_id.as_deref().unwrap_or(&self.registration_id)
            }
            AttestedEnrollment::Group(_) => &self.registration_id,
        }
    }

    /// [`Attested::device_id`] for a device whose registration record is `previous`: a device
    /// id taken from the registration id keeps the case of the record (the first
    /// registration's), as registration ids are case-insensitive and device ids are not.
    pub fn device_id_after<'a>(&'a self, previous: Option<&'a DeviceRegistrationState>) -> &'a str {
        let own = self.device_id();
        match previous {
            Some(p) if own == self.registration_id && same_id(own, &p.registration_id) => {
                &p.registration_id
            }
            _ => own,
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
        if !ironhub_auth::resource_is_ignoring_case(&resource, &target) {
            return Err(refused(SasError::ResourceMismatch(resource)));
        }
        let expires = token.expiry();

        if let Some(record) = self
            .store
            .dps_get(DpsCollection::Enrollments, registration_id)
            .await?
        {
            let e: IndividualEnrollment = from_record(&record)?;
            // A TPM device signs with the key its TPM imported from the challenge.
            let tpm_keys = match e.settings.attestation.kind {
                AttestationType::Tpm => Some(self.tpm_keys(&e).map_err(|_| no_match())?),
                _ => None,
            };
            let keys = e
                .settings
                .attestation
                .symmetric_key
                .as_ref()
                .filter(|_| e.settings.attestation.kind == AttestationType::SymmetricKey)
                .and_then(|k| Some([k.primary_key.clone()?, k.secondary_key.clone()?]))
                .or(tpm_keys)
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
            return Ok(Attested {
                registration_id: registration_id.to_owned(),
                enrollment: AttestedEnrollment::Individual(Box::new(e)),
                credential: DeviceCredential::SymmetricKey(keys),
                expires: Some(expires),
            });
        }

        // Groups, in id order: at most 100 symmetric key groups exist (Azure docs, What is
        // Azure IoT Hub Device Provisioning Service?, 'Quotas and Limits').
        for record in read_all(self.store.as_ref(), DpsCollection::EnrollmentGroups, None).await? {
            let g = self.groups.group(&record)?;
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
            // MACs); the raw group key is never tried (Azure docs, Symmetric key attestation,
            // 'Group Enrollments').
            let derived = [
                derive_device_key(primary, registration_id),
                derive_device_key(secondary, registration_id),
            ];
            let [Ok(p), Ok(s)] = derived else {
                continue;
            };
            if token.verify_keys([p.as_str(), s.as_str()]).is_ok() {
                return Ok(Attested {
                    registration_id: registration_id.to_owned(),
                    enrollment: AttestedEnrollment::Group(Box::new((*g).clone())),
                    credential: DeviceCredential::SymmetricKey([p, s]),
                    expires: Some(expires),
                });
            }
        }
        Err(no_match())
    }
}

/// The DER of the certificates an X.509 attestation trusts devices through: the PEMs of
/// `signingCertificates`, or the instance's certificates named by `caReferences`.
async fn signing_certificates(dps: &Dps, x: &X509Attestation) -> Result<Vec<Vec<u8>>, DpsError> {
    let mut out = Vec::new();
    if let Some(certs) = &x.signing_certificates {
        for slot in [&certs.primary, &certs.secondary].into_iter().flatten() {
            if let Some(info) = slot
                .certificate
                .as_deref()
                .and_then(|p| read_certificate(p).ok())
            {
                out.push(info.der);
            }
        }
    }
    if let Some(refs) = &x.ca_references {
        for name in [&refs.primary, &refs.secondary].into_iter().flatten() {
            if let Ok(record) = dps.get_certificate(name).await
                && let Ok(info) = read_certificate(&record.certificate)
            {
                out.push(info.der);
            }
        }
    }
    Ok(out)
}

/// Whether a device certificate is one of a pair (by SHA-1 or SHA-256 thumbprint).
fn is_one_of(leaf: &CertificateInfo, certs: &X509Certificates) -> bool {
    [&certs.primary, &certs.secondary]
        .into_iter()
        .flatten()
        .filter_map(|slot| slot.info.as_ref())
        .any(|info| {
            info.sha1_thumbprint.eq_ignore_ascii_case(&leaf.thumbprint)
                || info
                    .sha256_thumbprint
                    .eq_ignore_ascii_case(&leaf.sha256_thumbprint)
        })
}

/// The SHA-1 thumbprints of a pair of certificates, primary then secondary (the primary's
/// twice when there is no secondary).
fn thumbprints_of(certs: &X509Certificates) -> Option<[String; 2]> {
    let primary = certs
        .primary
        .as_ref()?
        .info
        .as_ref()?
        .sha1_thumbprint
        .clone();
    let secondary = certs
        .secondary
        .as_ref()
        .and_then(|s| s.info.as_ref())
        .map_or_else(|| primary.clone(), |i| i.sha1_thumbprint.clone());
    Some([primary, secondary])
}

/// Whether `chain` (leaf first) goes through one of `signers` to one of `anchors`.
fn through_any(
    chain: &[impl AsRef<[u8]>],
    anchors: &[Vec<u8>],
    now: u64,
    signers: &[Vec<u8>],
) -> bool {
    signers
        .iter()
        .any(|g| verify_client_chain_via(chain, anchors, now, Some(g)).is_ok())
}

fn x509_no_match() -> DpsError {
    DpsError::Unauthorized(
        "Unauthorized: no enrollment admits this device certificate: it is not an individual \
         enrollment's certificate, and its chain does not go through an enrollment group's \
         certificate to a verified CA certificate (send the whole chain, leaf first)."
            .into(),
    )
}

impl Dps {
    /// Attests a device by its TLS client certificate chain (DER, leaf first).
    pub async fn attest_x509(
        &self,
        id_scope: &str,
        registration_id: &str,
        chain: &[impl AsRef<[u8]>],
    ) -> Result<Attested, DpsError> {
        self.attest_x509_at(id_scope, registration_id, chain, unix_now())
            .await
    }

    /// [`Dps::attest_x509`] at a given time (Unix seconds).
    pub async fn attest_x509_at(
        &self,
        id_scope: &str,
        registration_id: &str,
        chain: &[impl AsRef<[u8]>],
        now: u64,
    ) -> Result<Attested, DpsError> {
        self.check_id_scope(id_scope)?;
        validate_registration_id(registration_id)?;
        let unauthorized = |m: String| DpsError::Unauthorized(format!("Unauthorized: {m}"));
        let leaf_der = chain
            .first()
            .ok_or_else(|| unauthorized("the device sent no client certificate.".into()))?;
        let leaf = CertificateInfo::from_der(leaf_der.as_ref())
            .map_err(|e| unauthorized(format!("the device certificate is not valid: {e}.")))?;
        let cn = leaf.common_name.clone().unwrap_or_default();
        if registration_id.len() > MAX_X509_REGISTRATION_ID_LEN || !same_id(&cn, registration_id) {
            return Err(unauthorized(format!(
                "the registration id '{registration_id}' is not the common name of the device \
                 certificate ('{cn}')."
            )));
        }
        let now_secs = i64::try_from(now).unwrap_or(i64::MAX);
        if leaf.not_before > now_secs || leaf.not_after < now_secs {
            return Err(unauthorized(
                "the device certificate is not valid at this time.".into(),
            ));
        }
        let runtime_info = certificate_info(&leaf);
        // The verified CA certificates are read only where a chain is verified: a device of
        // an individual enrollment is matched by its certificate alone.

        if let Some(record) = self
            .store
            .dps_get(DpsCollection::Enrollments, registration_id)
            .await?
        {
            let e: IndividualEnrollment = from_record(&record)?;
            let x = e
                .settings
                .attestation
                .x509
                .as_ref()
                .filter(|_| e.settings.attestation.kind == AttestationType::X509)
                .ok_or_else(|| {
                    unauthorized(format!(
                        "the enrollment of this device attests by {}, not by X.509.",
                        e.settings.attestation.kind.as_str()
                    ))
                })?;
            let thumbprints = match &x.client_certificates {
                Some(certs) if is_one_of(&leaf, certs) => thumbprints_of(certs),
                Some(_) => None,
                // An individual enrollment may hold a signing certificate instead.
                None => {
                    let signers = signing_certificates(self, x).await?;
                    let anchors = self.cas().verified_anchors().await?;
                    through_any(chain, &anchors, now, &signers)
                        .then(|| [leaf.thumbprint.clone(), leaf.thumbprint.clone()])
                }
            }
            .ok_or_else(x509_no_match)?;
            return Ok(Attested {
                registration_id: registration_id.to_owned(),
                enrollment: AttestedEnrollment::Individual(Box::new(e)),
                credential: DeviceCredential::X509 {
                    thumbprints,
                    certificate: runtime_info,
                },
                expires: None,
            });
        }

        // X.509 groups, ordered by where their certificate sits in the presented chain (the
        // first intermediate first); groups whose certificate the device did not send (a
        // verified root it may leave out) come last.
        let position = |der: &[u8]| {
            chain
                .iter()
                .skip(1)
                .position(|c| c.as_ref() == der)
                .unwrap_or(chain.len())
        };
        let mut groups = Vec::new();
        for record in read_all(self.store.as_ref(), DpsCollection::EnrollmentGroups, None).await? {
            let g = self.groups.group(&record)?;
            let Some(x) = g
                .settings
                .attestation
                .x509
                .as_ref()
                .filter(|_| g.settings.attestation.kind == AttestationType::X509)
            else {
                continue;
            };
            let signers = signing_certificates(self, x).await?;
            let Some(first) = signers.iter().map(|d| position(d)).min() else {
                continue;
            };
            groups.push((first, g, signers));
        }
        groups.sort_by_key(|(first, ..)| *first);
        if groups.is_empty() {
            return Err(x509_no_match());
        }
        let anchors = self.cas().verified_anchors().await?;
        for (_, g, signers) in groups {
            if through_any(chain, &anchors, now, &signers) {
                return Ok(Attested {
                    registration_id: registration_id.to_owned(),
                    enrollment: AttestedEnrollment::Group(Box::new((*g).clone())),
                    credential: DeviceCredential::X509 {
                        thumbprints: [leaf.thumbprint.clone(), leaf.thumbprint.clone()],
                        certificate: runtime_info,
                    },
                    expires: None,
                });
            }
        }
        Err(x509_no_match())
    }
}

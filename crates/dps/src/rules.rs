//! DPS's rules for ids, keys and attestation, as the Azure DPS documentation states them (the
//! pages are listed in `docs/protocol/azure-docs.md`).

use chrono::DateTime;
use ironhub_auth::x509::{CertificateError, CertificateInfo, read_certificate};
use ironhub_auth::{generate_key, validate_key};

use crate::DpsError;
use crate::model::{
    AttestationMechanism, AttestationType, SymmetricKeyAttestation, TpmAttestation,
    X509Attestation, X509CertificateInfo, X509CertificateWithInfo, X509Certificates,
};

/// Longest registration or enrollment group id (Azure docs, How to manage device enrollments
/// with Azure portal, 'Create a symmetric key enrollment group').
pub const MAX_ID_LEN: usize = 128;
/// Longest registration id of an X.509 device: its certificate's CN (Azure docs, Quickstart:
/// Provision an X.509 certificate simulated device, 'Create a self-signed X.509 device
/// certificate').
pub const MAX_X509_REGISTRATION_ID_LEN: usize = 64;
/// Size of generated symmetric keys, in bytes (Azure docs, Symmetric key attestation,
/// 'Symmetric key creation').
pub const GENERATED_KEY_BYTES: usize = 64;

fn validate_id(id: &str, what: &str) -> Result<(), DpsError> {
    let rule = "use up to 128 ASCII letters, digits, '-', '.', '_' and ':', ending with a letter, \
                a digit or '-'";
    if id.is_empty() {
        return Err(DpsError::BadRequest(format!(
            "The {what} is empty; {rule}."
        )));
    }
    if id.len() > MAX_ID_LEN {
        return Err(DpsError::BadRequest(format!(
            "The {what} '{id}' is longer than {MAX_ID_LEN} characters."
        )));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
    let last_ok = id
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
    if !id.chars().all(allowed) || !last_ok {
        return Err(DpsError::BadRequest(format!(
            "The {what} '{id}' is not valid: {rule}."
        )));
    }
    Ok(())
}

/// A registration id: case-insensitive, 1–128 of `A-Z a-z 0-9 - . _ :`, ending with a letter,
/// a digit or `-` (Azure docs, IoT Hub Device Provisioning Service (DPS) terminology,
/// 'Enrollment group' and 'Registration ID'; Quickstart: Provision a simulated symmetric key
/// device, 'Create a device enrollment').
pub fn validate_registration_id(id: &str) -> Result<(), DpsError> {
    validate_id(id, "registration id")
}

/// An enrollment group id: the same rules as a registration id (Azure docs, How to manage
/// device enrollments with Azure portal, 'Create a symmetric key enrollment group').
pub fn validate_group_id(id: &str) -> Result<(), DpsError> {
    validate_id(id, "enrollment group id")
}

/// Whether two DPS ids name the same thing (ids are case-insensitive).
pub fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// An `If-Match` value with a weak marker and one level of quotes removed; `*` matches any.
/// Node sends the etag it read as is, which may itself be quoted
/// (`docs/protocol/dps-service.md`, "If-Match and etags").
pub fn normalize_if_match(value: &str) -> String {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
        .to_owned()
}

/// A value a client supplied, with `""` counted as absent.
fn supplied(value: Option<&String>) -> Option<&str> {
    value.map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// The keys of a symmetric key attestation: supplied keys are checked (base64, 16–64 bytes);
/// missing ones are kept from `previous` (an update that leaves them out, as a `GET` answer
/// does, keeps them) or generated (64 bytes). Both rules: Azure docs, Symmetric key
/// attestation, 'Symmetric key creation'.
pub fn symmetric_keys(
    given: Option<&SymmetricKeyAttestation>,
    previous: Option<&SymmetricKeyAttestation>,
) -> Result<SymmetricKeyAttestation, DpsError> {
    let pick = |given: Option<&String>, old: Option<&String>, which: &str| match supplied(given) {
        Some(k) => validate_key(k)
            .map(|()| k.to_owned())
            .map_err(|e| DpsError::BadRequest(format!("The {which} key is not valid: {e}."))),
        None => Ok(old
            .cloned()
            .unwrap_or_else(|| generate_key(GENERATED_KEY_BYTES))),
    };
    Ok(SymmetricKeyAttestation {
        primary_key: Some(pick(
            given.and_then(|g| g.primary_key.as_ref()),
            previous.and_then(|p| p.primary_key.as_ref()),
            "primary",
        )?),
        secondary_key: Some(pick(
            given.and_then(|g| g.secondary_key.as_ref()),
            previous.and_then(|p| p.secondary_key.as_ref()),
            "secondary",
        )?),
    })
}

fn certificate_error(which: &str, e: CertificateError) -> DpsError {
    DpsError::BadRequest(format!("The {which} certificate is not valid: {e}."))
}

/// DPS's `info` for a certificate.
pub fn certificate_info(info: &CertificateInfo) -> X509CertificateInfo {
    X509CertificateInfo {
        subject_name: info.subject.clone(),
        sha1_thumbprint: info.thumbprint.clone(),
        sha256_thumbprint: info.sha256_thumbprint.clone(),
        issuer_name: info.issuer.clone(),
        not_before_utc: DateTime::from_timestamp(info.not_before, 0),
        not_after_utc: DateTime::from_timestamp(info.not_after, 0),
        serial_number: info.serial_number.clone(),
        version: info.version,
    }
}

/// One certificate slot: a new certificate is read (PEM or base64 DER, never with a private
/// key) and stored as PEM with its info; a slot with `info` but no certificate (what a read
/// returns) keeps the previous slot. Returns the slot and the parsed certificate.
fn certificate_slot(
    given: &X509CertificateWithInfo,
    previous: Option<&X509CertificateWithInfo>,
    which: &str,
) -> Result<(X509CertificateWithInfo, CertificateInfo), DpsError> {
    let pem = match supplied(given.certificate.as_ref()) {
        Some(text) => text.to_owned(),
        None => previous
            .and_then(|p| p.certificate.clone())
            .filter(|_| given.info.is_some())
            .ok_or_else(|| {
                DpsError::BadRequest(format!("The {which} certificate has no 'certificate'."))
            })?,
    };
    let info = read_certificate(&pem).map_err(|e| certificate_error(which, e))?;
    Ok((
        X509CertificateWithInfo {
            certificate: Some(info.pem()),
            info: Some(certificate_info(&info)),
        },
        info,
    ))
}

/// A primary (required) and secondary (optional) pair of certificates, with what was parsed.
fn certificate_pair(
    given: &X509Certificates,
    previous: Option<&X509Certificates>,
    what: &str,
) -> Result<(X509Certificates, Vec<CertificateInfo>), DpsError> {
    let primary = given
        .primary
        .as_ref()
        .ok_or_else(|| DpsError::BadRequest(format!("The {what} need a primary certificate.")))?;
    let (primary, p) = certificate_slot(
        primary,
        previous.and_then(|p| p.primary.as_ref()),
        &format!("primary {what}"),
    )?;
    let mut parsed = vec![p];
    let secondary = match &given.secondary {
        Some(s) => {
            let (slot, info) = certificate_slot(
                s,
                previous.and_then(|p| p.secondary.as_ref()),
                &format!("secondary {what}"),
            )?;
            parsed.push(info);
            Some(slot)
        }
        None => None,
    };
    Ok((
        X509Certificates {
            primary: Some(primary),
            secondary,
        },
        parsed,
    ))
}

/// Whether the attestation belongs to an individual enrollment (of this registration id) or
/// to an enrollment group.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    Individual(&'a str),
    Group,
}

/// Checks and completes an attestation for a write. `previous` is the stored attestation on
/// an update: its type may not change (Azure docs, How to manage device enrollments with Azure
/// portal, 'Update an enrollment entry'), and keys or certificates the client
/// left out are kept.
pub fn attestation(
    given: &AttestationMechanism,
    previous: Option<&AttestationMechanism>,
    owner: Owner<'_>,
) -> Result<AttestationMechanism, DpsError> {
    if let Some(p) = previous
        && p.kind != given.kind
    {
        return Err(DpsError::BadRequest(format!(
            "The attestation type cannot change from '{}' to '{}'; delete the enrollment and \
             create it again.",
            p.kind.as_str(),
            given.kind.as_str()
        )));
    }
    let empty = |kind: AttestationType| AttestationMechanism {
        kind,
        tpm: None,
        x509: None,
        symmetric_key: None,
    };
    match given.kind {
        AttestationType::None => Err(DpsError::BadRequest(
            "An enrollment needs an attestation: symmetricKey, x509 or tpm.".into(),
        )),
        AttestationType::SymmetricKey => Ok(AttestationMechanism {
            symmetric_key: Some(symmetric_keys(
                given.symmetric_key.as_ref(),
                previous.and_then(|p| p.symmetric_key.as_ref()),
            )?),
            ..empty(AttestationType::SymmetricKey)
        }),
        AttestationType::Tpm => {
            let Owner::Individual(_) = owner else {
                // TPM enrollments are individual only (Azure docs, Create and provision IoT
                // Edge devices at scale with a TPM on Linux, 'Device requirements').
                return Err(DpsError::BadRequest(
                    "Enrollment groups attest by symmetric key or X.509, not TPM.".into(),
                ));
            };
            let tpm = given
                .tpm
                .clone()
                .or_else(|| previous.and_then(|p| p.tpm.clone()))
                .unwrap_or_default();
            tpm_attestation(&tpm)?;
            Ok(AttestationMechanism {
                tpm: Some(tpm),
                ..empty(AttestationType::Tpm)
            })
        }
        AttestationType::X509 => {
            let x509 = given
                .x509
                .as_ref()
                .ok_or_else(|| DpsError::BadRequest("An x509 attestation needs 'x509'.".into()))?;
            let before = previous.and_then(|p| p.x509.as_ref());
            Ok(AttestationMechanism {
                x509: Some(x509_attestation(x509, before, owner)?),
                ..empty(AttestationType::X509)
            })
        }
    }
}

fn tpm_attestation(tpm: &TpmAttestation) -> Result<(), DpsError> {
    let ek = tpm.endorsement_key.trim();
    if ek.is_empty() || ironhub_auth::b64::decode(ek).is_err() {
        return Err(DpsError::BadRequest(
            "A tpm attestation needs an endorsementKey in base64.".into(),
        ));
    }
    if let Some(srk) = supplied(tpm.storage_root_key.as_ref())
        && ironhub_auth::b64::decode(srk).is_err()
    {
        return Err(DpsError::BadRequest(
            "The tpm storageRootKey is not base64.".into(),
        ));
    }
    Ok(())
}

fn x509_attestation(
    given: &X509Attestation,
    previous: Option<&X509Attestation>,
    owner: Owner<'_>,
) -> Result<X509Attestation, DpsError> {
    let kinds = [
        given.client_certificates.is_some(),
        given.signing_certificates.is_some(),
        given.ca_references.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(DpsError::BadRequest(
            "An x509 attestation has exactly one of clientCertificates, signingCertificates \
             and caReferences."
                .into(),
        ));
    }
    let mut out = X509Attestation::default();
    if let Some(client) = &given.client_certificates {
        let Owner::Individual(registration_id) = owner else {
            return Err(DpsError::BadRequest(
                "An enrollment group attests by signingCertificates or caReferences; \
                 clientCertificates belong to individual enrollments."
                    .into(),
            ));
        };
        let (pair, parsed) = certificate_pair(
            client,
            previous.and_then(|p| p.client_certificates.as_ref()),
            "client certificates",
        )?;
        // The registration id is the certificate's CN (Azure docs, X.509 certificate
        // attestation, 'End-entity "leaf" certificate'), so a
        // certificate with another CN could never register.
        if registration_id.len() > MAX_X509_REGISTRATION_ID_LEN {
            return Err(DpsError::BadRequest(format!(
                "The registration id of an X.509 device is its certificate's common name, at \
                 most {MAX_X509_REGISTRATION_ID_LEN} characters."
            )));
        }
        for info in &parsed {
            if !info
                .common_name
                .as_deref()
                .is_some_and(|cn| same_id(cn, registration_id))
            {
                return Err(DpsError::BadRequest(format!(
                    "The certificate's subject '{}' does not have the registration id \
                     '{registration_id}' as its common name.",
                    info.subject
                )));
            }
        }
        out.client_certificates = Some(pair);
    }
    if let Some(signing) = &given.signing_certificates {
        let (pair, parsed) = certificate_pair(
            signing,
            previous.and_then(|p| p.signing_certificates.as_ref()),
            "signing certificates",
        )?;
        if let Some(leaf) = parsed.iter().find(|i| !i.is_ca) {
            return Err(DpsError::BadRequest(format!(
                "The signing certificate '{}' is not a CA certificate (basic constraints).",
                leaf.subject
            )));
        }
        out.signing_certificates = Some(pair);
    }
    if let Some(refs) = &given.ca_references {
        if supplied(refs.primary.as_ref()).is_none() {
            return Err(DpsError::BadRequest(
                "caReferences needs the name of a primary CA certificate.".into(),
            ));
        }
        out.ca_references = Some(refs.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_rules_as_documented() {
        for ok in [
            "symm-key-dev-42",
            "sn-12-34-mac-0a-1b-2c-3d-4e-5f",
            "a.b_c:d-",
            "AABBCCDDEEFF",
            "x",
            &"x".repeat(128),
        ] {
            validate_registration_id(ok).unwrap();
            validate_group_id(ok).unwrap();
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "ends.",
            "ends_",
            "ends:",
            "é",
            "a#b",
            &"x".repeat(129),
        ] {
            let e = validate_registration_id(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}");
        }
        assert!(same_id("Reg-1", "reg-1"));
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(normalize_if_match("*"), "*");
        assert_eq!(normalize_if_match("\"*\""), "*");
        assert_eq!(normalize_if_match("MTI="), "MTI=");
        assert_eq!(normalize_if_match("\"MTI=\""), "MTI=");
        assert_eq!(normalize_if_match("W/\"MTI=\""), "MTI=");
    }

    #[test]
    fn keys_are_generated_checked_and_kept() {
        let k = symmetric_keys(Some(&SymmetricKeyAttestation::default()), None).unwrap();
        let (p, s) = (
            k.primary_key.clone().unwrap(),
            k.secondary_key.clone().unwrap(),
        );
        assert_eq!(p.len(), 88, "64 bytes, base64");
        assert_ne!(p, s);
        let empty = SymmetricKeyAttestation {
            primary_key: Some(String::new()),
            secondary_key: None,
        };
        let kept = symmetric_keys(Some(&empty), Some(&k)).unwrap();
        assert_eq!(kept, k);
        let short = SymmetricKeyAttestation {
            primary_key: Some(generate_key(15)),
            secondary_key: None,
        };
        assert_eq!(
            symmetric_keys(Some(&short), None).unwrap_err().status(),
            400
        );
        let not_b64 = SymmetricKeyAttestation {
            primary_key: Some("not base64!".into()),
            secondary_key: None,
        };
        assert!(symmetric_keys(Some(&not_b64), None).is_err());
        let own = SymmetricKeyAttestation {
            primary_key: Some(generate_key(16)),
            secondary_key: Some(generate_key(64)),
        };
        assert_eq!(symmetric_keys(Some(&own), Some(&k)).unwrap(), own);
    }

    #[test]
    fn attestation_type_is_fixed_and_tpm_is_individual_only() {
        let sym = AttestationMechanism::symmetric_key(None, None);
        let tpm = AttestationMechanism {
            kind: AttestationType::Tpm,
            tpm: Some(TpmAttestation {
                endorsement_key: "AToAAQAL".into(),
                storage_root_key: None,
            }),
            x509: None,
            symmetric_key: None,
        };
        attestation(&tpm, None, Owner::Individual("r")).unwrap();
        assert!(attestation(&tpm, None, Owner::Group).is_err());
        assert!(attestation(&tpm, Some(&sym), Owner::Individual("r")).is_err());
        let none = AttestationMechanism {
            kind: AttestationType::None,
            ..sym.clone()
        };
        assert!(attestation(&none, None, Owner::Group).is_err());
        let bad_ek = AttestationMechanism {
            tpm: Some(TpmAttestation::default()),
            ..tpm
        };
        assert!(attestation(&bad_ek, None, Owner::Individual("r")).is_err());
    }
}

//! How devices attest, as enrollments carry it (Azure REST API reference, Device Provisioning
//! Service, "Individual Enrollment - Create Or Update", definition `AttestationMechanism`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::time;

/// How a device proves its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttestationType {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "tpm", alias = "TPM", alias = "Tpm")]
    Tpm,
    #[serde(rename = "x509", alias = "X509")]
    X509,
    #[serde(
        rename = "symmetricKey",
        alias = "SymmetricKey",
        alias = "symmetrickey"
    )]
    SymmetricKey,
}

impl AttestationType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttestationType::None => "none",
            AttestationType::Tpm => "tpm",
            AttestationType::X509 => "x509",
            AttestationType::SymmetricKey => "symmetricKey",
        }
    }
}

/// A pair of symmetric keys (base64). `Debug` never shows them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyAttestation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
}

impl fmt::Debug for SymmetricKeyAttestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKeyAttestation(..)")
    }
}

/// A TPM's keys (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TpmAttestation {
    #[serde(default)]
    pub endorsement_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_root_key: Option<String>,
}

/// What DPS shows about a certificate it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateInfo {
    pub subject_name: String,
    pub sha1_thumbprint: String,
    pub sha256_thumbprint: String,
    pub issuer_name: String,
    #[serde(default, with = "time", skip_serializing_if = "Option::is_none")]
    pub not_before_utc: Option<DateTime<Utc>>,
    #[serde(default, with = "time", skip_serializing_if = "Option::is_none")]
    pub not_after_utc: Option<DateTime<Utc>>,
    pub serial_number: String,
    pub version: u32,
}

/// A certificate slot: the PEM a client uploads, and the information DPS derives from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateWithInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<X509CertificateInfo>,
}

/// A primary and an optional secondary certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509Certificates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<X509CertificateWithInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<X509CertificateWithInfo>,
}

/// Names of CA certificates uploaded to the provisioning service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509CaReferences {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
}

/// X.509 attestation: the device's own certificates (individual enrollments), the signing
/// certificates of a group (root or intermediate), or references to uploaded CAs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509Attestation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificates: Option<X509Certificates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificates: Option<X509Certificates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_references: Option<X509CaReferences>,
}

/// How devices of an enrollment attest. Absent in a request, it is `none`, which every write
/// refuses with a clear message (a bulk delete needs only the ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationMechanism {
    #[serde(rename = "type")]
    pub kind: AttestationType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmAttestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509Attestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyAttestation>,
}

impl Default for AttestationMechanism {
    fn default() -> Self {
        AttestationMechanism {
            kind: AttestationType::None,
            tpm: None,
            x509: None,
            symmetric_key: None,
        }
    }
}

impl AttestationMechanism {
    /// Symmetric key attestation with the given keys (`None` to have them generated).
    pub fn symmetric_key(primary: Option<&str>, secondary: Option<&str>) -> Self {
        AttestationMechanism {
            kind: AttestationType::SymmetricKey,
            tpm: None,
            x509: None,
            symmetric_key: Some(SymmetricKeyAttestation {
                primary_key: primary.map(str::to_owned),
                secondary_key: secondary.map(str::to_owned),
            }),
        }
    }

    /// The same mechanism without secrets or certificates: symmetric keys and certificate
    /// PEMs removed, certificate `info` kept. DPS answers `GET` and queries this way since
    /// api-version 2019-03-31 (the keys come from the attestation-mechanism call, which is
    /// why `az iot dps enrollment show` has `--show-keys`).
    pub fn without_secrets(&self) -> Self {
        let mut m = self.without_certificates();
        if let Some(k) = m.symmetric_key.as_mut() {
            *k = SymmetricKeyAttestation::default();
        }
        m
    }

    /// The same mechanism with certificate PEMs removed (`info` kept) and keys kept: what
    /// the attestation-mechanism call and a create-or-update answer with.
    pub fn without_certificates(&self) -> Self {
        let mut m = self.clone();
        if let Some(x) = m.x509.as_mut() {
            for certs in [&mut x.client_certificates, &mut x.signing_certificates]
                .into_iter()
                .flatten()
            {
                for slot in [&mut certs.primary, &mut certs.secondary]
                    .into_iter()
                    .flatten()
                {
                    slot.certificate = None;
                }
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_removed_for_reads() {
        let mut m = AttestationMechanism::symmetric_key(Some("a2V5"), Some("a2V5"));
        assert!(!format!("{m:?}").contains("a2V5"));
        let bare = m.without_secrets();
        assert_eq!(bare.symmetric_key, Some(SymmetricKeyAttestation::default()));
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            json!({ "type": "symmetricKey", "symmetricKey": {} })
        );
        m.kind = AttestationType::X509;
        m.symmetric_key = None;
        m.x509 = Some(X509Attestation {
            client_certificates: Some(X509Certificates {
                primary: Some(X509CertificateWithInfo {
                    certificate: Some("PEM".into()),
                    info: Some(X509CertificateInfo::default()),
                }),
                secondary: None,
            }),
            ..X509Attestation::default()
        });
        let shown = m.without_certificates();
        let slot = shown
            .x509
            .unwrap()
            .client_certificates
            .unwrap()
            .primary
            .unwrap();
        assert!(slot.certificate.is_none());
        assert!(slot.info.is_some());
    }
}

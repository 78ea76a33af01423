//! CA certificates, in the Azure Resource Manager shape both services use for them
//! (`{"etag", "id", "name", "properties": {…}, "type"}`): the hub's under `/certificates`
//! (Azure REST API reference, IoT Hub resource, "Certificates"), the DPS instance's under
//! `/dps/certificates` ("Dps Certificate").

use serde::{Deserialize, Serialize};

/// A certificate as the API shows it. Fields are declared in the order of their JSON names,
/// which is the order the server has always written them in.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct CertificateDescription {
    pub etag: String,
    /// `{service prefix}/{name}`.
    pub id: String,
    pub name: String,
    pub properties: CertificateProperties,
    /// The ARM resource type (`Microsoft.Devices/IotHubs/Certificates`, …).
    #[serde(rename = "type")]
    pub kind: String,
}

/// `properties` of a certificate. Times are RFC 1123 (`Sat, 31 Dec 2039 23:59:59 GMT`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct CertificateProperties {
    /// The certificate, PEM.
    pub certificate: String,
    pub created: String,
    pub expiry: String,
    pub is_verified: bool,
    pub subject: String,
    /// SHA-1 of the DER, upper-case hex.
    pub thumbprint: String,
    pub updated: String,
    /// The CN a proof-of-possession certificate must carry; only in the answer to
    /// `generateVerificationCode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_code: Option<String>,
}

/// `GET {prefix}`: `{"value": [certificate, …]}`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct CertificateList {
    #[serde(default)]
    pub value: Vec<CertificateDescription>,
}

/// `PUT {prefix}/{name}`: `{"properties": {"certificate", "isVerified"}}`. The flat form
/// (`{"certificate", "isVerified"}`) is read too.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateUpload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<CertificateUploadProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_verified: bool,
}

/// `properties` of an upload.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateUploadProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default)]
    pub is_verified: bool,
}

impl CertificateUpload {
    /// The nested form the SDKs and az send.
    pub fn new(certificate: &str, is_verified: bool) -> Self {
        CertificateUpload {
            properties: Some(CertificateUploadProperties {
                certificate: Some(certificate.to_owned()),
                is_verified,
            }),
            certificate: None,
            is_verified: false,
        }
    }

    /// The certificate and its verified flag, from whichever form was sent.
    pub fn into_parts(self) -> (Option<String>, bool) {
        match self.properties {
            Some(p) => (p.certificate, p.is_verified),
            None => (self.certificate, self.is_verified),
        }
    }
}

/// `POST {prefix}/{name}/verify`: `{"certificate": proof}`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct VerificationProof {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !b
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uploads_read_both_forms_and_write_the_nested_one() {
        let nested: CertificateUpload = serde_json::from_value(
            json!({"properties": {"certificate": "PEM", "isVerified": true}}),
        )
        .unwrap();
        assert_eq!(nested.into_parts(), (Some("PEM".into()), true));
        let flat: CertificateUpload =
            serde_json::from_value(json!({"certificate": "PEM"})).unwrap();
        assert_eq!(flat.into_parts(), (Some("PEM".into()), false));
        assert_eq!(
            serde_json::to_value(CertificateUpload::new("PEM", false)).unwrap(),
            json!({"properties": {"certificate": "PEM", "isVerified": false}})
        );
    }

    #[test]
    fn a_description_keeps_the_key_order_it_was_written_in() {
        let d = CertificateDescription {
            properties: CertificateProperties {
                verification_code: Some("ABC".into()),
                ..CertificateProperties::default()
            },
            ..CertificateDescription::default()
        };
        let text = serde_json::to_string(&d).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, value.to_string());
    }
}

//! IoT Hub's certificate management over MQTT: a device publishes an [`IssueCertificateRequest`]
//! to `$iothub/credentials/POST/issueCertificate/?$rid={rid}` and is answered on
//! `$iothub/credentials/res/{status}/?$rid={rid}` with 202 [`IssueCertificateAccepted`], then
//! 200 [`IssuedCertificate`], or a [`CredentialErrorBody`]. See
//! `docs/protocol/certificate-issuance.md`, "Renewal through the hub (MQTT)".

use serde::{Deserialize, Serialize};

/// A device's request: `{"id", "csr", "replace"}` and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueCertificateRequest {
    /// The device's own id.
    pub id: String,
    /// A PKCS#10 certificate signing request, base64 DER.
    pub csr: String,
    /// The `$rid` of an earlier request this one replaces, or `*` for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<String>,
}

/// The 202 answer: the request is accepted (fields in the order the hub writes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueCertificateAccepted {
    pub correlation_id: String,
    /// When the operation expires (RFC 3339, UTC).
    pub operation_expires: String,
}

/// The 200 answer: the issued certificate, then its issuers (base64 DER).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCertificate {
    pub certificates: Vec<String>,
    pub correlation_id: String,
}

/// An error answer; `info` is `null` for a request refused before it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialErrorBody {
    pub error_code: u32,
    #[serde(default)]
    pub info: Option<CredentialErrorInfo>,
    pub message: String,
    pub timestamp_utc: String,
}

/// What an error of an accepted request says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialErrorInfo {
    pub correlation_id: String,
    /// The error code, as text.
    pub credential_error: String,
    pub credential_message: String,
    pub operation_expires: String,
    pub request_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_written_with_their_keys_in_order() {
        let accepted = IssueCertificateAccepted {
            correlation_id: "c".into(),
            operation_expires: "e".into(),
        };
        assert_eq!(
            serde_json::to_string(&accepted).unwrap(),
            r#"{"correlationId":"c","operationExpires":"e"}"#
        );
        let issued = IssuedCertificate {
            certificates: vec!["MII=".into()],
            correlation_id: "c".into(),
        };
        assert_eq!(
            serde_json::to_string(&issued).unwrap(),
            r#"{"certificates":["MII="],"correlationId":"c"}"#
        );
        let refused = CredentialErrorBody {
            error_code: 400_004,
            info: None,
            message: "m".into(),
            timestamp_utc: "t".into(),
        };
        assert_eq!(
            serde_json::to_string(&refused).unwrap(),
            r#"{"errorCode":400004,"info":null,"message":"m","timestampUtc":"t"}"#
        );
        assert!(
            serde_json::from_str::<IssueCertificateRequest>(r#"{"id":"d","csr":"x","y":1}"#)
                .is_err()
        );
    }
}

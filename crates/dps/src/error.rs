//! The DPS domain's errors, each carrying an HTTP status and a DPS error code.
//!
//! Where the codes come from:
//! - the HTTP statuses are those of the Azure docs' "Troubleshooting with Azure IoT Hub Device
//!   Provisioning Service", section "Common error codes" (400 bad body, 401 token not valid, 404
//!   instance or resource missing, 409 already exists, 412 etag mismatch, 429 throttled, 500
//!   internal);
//! - 400207, 400208, 400209 are the custom-allocation failures of the Azure docs' "How to use
//!   custom allocation policies", section "Troubleshooting custom allocation policies"
//!   (`CustomAllocationFailed`, `CustomAllocationIoTHubNotSpecified`,
//!   `CustomAllocationUnauthorizedAccess`); the C SDK maps 400209 to
//!   `PROV_DEVICE_RESULT_UNAUTHORIZED` and 400208 to `..._HUB_NOT_SPECIFIED`;
//! - 401002 is the code DPS answers an unauthorized device or service with (the
//!   `ProvisioningServiceErrorDetails` of the service SDKs, `docs/protocol/dps-json.md` §3);
//! - 404201 / 404202 (enrollment / registration not found) are codes users report from real DPS
//!   (MicrosoftDocs/azure-docs#57082), not from the documentation;
//! - the others follow IoT Hub's pattern (status × 1000 + a small number). Clients key on the HTTP
//!   status (and the C SDK on 4002xx in a failed registration), not on these.

use ironhub_wire::error::ErrorBody;

/// A DPS error. `status()` is the HTTP status, `code()` the `errorCode` of DPS's error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpsError {
    /// The request is malformed or a value breaks a rule (400).
    #[error("{0}")]
    BadRequest(String),
    /// The token is missing, malformed, expired, for another resource, or does not verify;
    /// or the device's attestation failed (401).
    #[error("{0}")]
    Unauthorized(String),
    /// No DPS instance has this ID scope (404, "Common error codes" above).
    #[error("There is no provisioning service with the ID scope '{0}'.")]
    InstanceNotFound(String),
    #[error("The enrollment '{0}' does not exist.")]
    EnrollmentNotFound(String),
    #[error("The enrollment group '{0}' does not exist.")]
    EnrollmentGroupNotFound(String),
    #[error("The registration '{0}' does not exist.")]
    RegistrationNotFound(String),
    #[error("The IoT hub '{0}' is not linked to this provisioning service.")]
    LinkedHubNotFound(String),
    #[error("The certificate '{0}' does not exist.")]
    CertificateNotFound(String),
    /// The device's registration operation is not known (a wrong id, or a newer
    /// registration replaced it).
    #[error("The registration operation '{0}' does not exist.")]
    OperationNotFound(String),
    /// The request is larger than DPS accepts (96 KB: Azure docs, "What is Azure IoT Hub
    /// Device Provisioning Service?", section "Quotas and limits").
    #[error("{0}")]
    MessageTooLarge(String),
    /// The transport gave up waiting for the request's body (408; ironhub's code, see above).
    #[error("{0}")]
    RequestTimeout(String),
    /// The record exists already and the write did not say which version it replaces (409).
    #[error("{0}")]
    Conflict(String),
    /// The `If-Match` etag is not the record's (412).
    #[error("Precondition failed: the etag '{0}' does not match.")]
    PreconditionFailed(String),
    /// No linked hub can take the device (static hub not linked, no candidates).
    #[error("{0}")]
    NoHubAvailable(String),
    #[error("{0}")]
    CustomAllocationFailed(String),
    #[error("{0}")]
    CustomAllocationIotHubNotSpecified(String),
    #[error("{0}")]
    CustomAllocationUnauthorizedAccess(String),
    /// Too many requests (429 with `Retry-After`: the seconds given, or the poll window).
    #[error("{0}")]
    Throttled(String, Option<u32>),
    #[error("{0}")]
    ServerError(String),
    /// The service's storage cannot be reached now (see `StoreError::Unavailable`).
    #[error("{0}")]
    ServiceUnavailable(String),
}

impl DpsError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            DpsError::BadRequest(_)
            | DpsError::NoHubAvailable(_)
            | DpsError::CustomAllocationFailed(_)
            | DpsError::CustomAllocationIotHubNotSpecified(_)
            | DpsError::CustomAllocationUnauthorizedAccess(_) => 400,
            DpsError::Unauthorized(_) => 401,
            DpsError::InstanceNotFound(_)
            | DpsError::EnrollmentNotFound(_)
            | DpsError::EnrollmentGroupNotFound(_)
            | DpsError::RegistrationNotFound(_)
            | DpsError::LinkedHubNotFound(_)
            | DpsError::CertificateNotFound(_)
            | DpsError::OperationNotFound(_) => 404,
            DpsError::MessageTooLarge(_) => 413,
            DpsError::RequestTimeout(_) => 408,
            DpsError::Conflict(_) => 409,
            DpsError::PreconditionFailed(_) => 412,
            DpsError::Throttled(..) => 429,
            DpsError::ServerError(_) => 500,
            DpsError::ServiceUnavailable(_) => 503,
        }
    }

    /// DPS's numeric `errorCode` (see the module documentation for where each comes from).
    pub fn code(&self) -> u32 {
        match self {
            DpsError::BadRequest(_) | DpsError::NoHubAvailable(_) => 400_004,
            DpsError::CustomAllocationFailed(_) => 400_207,
            DpsError::CustomAllocationIotHubNotSpecified(_) => 400_208,
            DpsError::CustomAllocationUnauthorizedAccess(_) => 400_209,
            DpsError::Unauthorized(_) => 401_002,
            DpsError::InstanceNotFound(_)
            | DpsError::LinkedHubNotFound(_)
            | DpsError::CertificateNotFound(_) => 404_000,
            DpsError::OperationNotFound(_) => 404_203,
            DpsError::MessageTooLarge(_) => 413_001,
            DpsError::RequestTimeout(_) => 408_000,
            DpsError::EnrollmentNotFound(_) | DpsError::EnrollmentGroupNotFound(_) => 404_201,
            DpsError::RegistrationNotFound(_) => 404_202,
            DpsError::Conflict(_) => 409_001,
            DpsError::PreconditionFailed(_) => 412_002,
            DpsError::Throttled(..) => 429_001,
            DpsError::ServerError(_) => 500_001,
            DpsError::ServiceUnavailable(_) => 503_001,
        }
    }

    /// A short name for logs and bulk results.
    pub fn name(&self) -> &'static str {
        match self {
            DpsError::BadRequest(_) => "BadRequest",
            DpsError::Unauthorized(_) => "Unauthorized",
            DpsError::InstanceNotFound(_) => "ProvisioningServiceNotFound",
            DpsError::EnrollmentNotFound(_) => "EnrollmentNotFound",
            DpsError::EnrollmentGroupNotFound(_) => "EnrollmentGroupNotFound",
            DpsError::RegistrationNotFound(_) => "RegistrationNotFound",
            DpsError::LinkedHubNotFound(_) => "LinkedHubNotFound",
            DpsError::CertificateNotFound(_) => "CertificateNotFound",
            DpsError::OperationNotFound(_) => "OperationNotFound",
            DpsError::MessageTooLarge(_) => "MessageTooLarge",
            DpsError::RequestTimeout(_) => "RequestTimeout",
            DpsError::Conflict(_) => "Conflict",
            DpsError::PreconditionFailed(_) => "PreconditionFailed",
            DpsError::NoHubAvailable(_) => "NoHubAvailable",
            DpsError::CustomAllocationFailed(_) => "CustomAllocationFailed",
            DpsError::CustomAllocationIotHubNotSpecified(_) => "CustomAllocationIoTHubNotSpecified",
            DpsError::CustomAllocationUnauthorizedAccess(_) => "CustomAllocationUnauthorizedAccess",
            DpsError::Throttled(..) => "TooManyRequests",
            DpsError::ServerError(_) => "InternalServerError",
            DpsError::ServiceUnavailable(_) => "ServiceUnavailable",
        }
    }
}

impl DpsError {
    /// DPS's error body, the same on every transport (`ProvisioningServiceErrorDetails`):
    /// `{"errorCode", "trackingId", "message", "timestampUtc"}`.
    pub fn body(&self) -> ErrorBody {
        let t: String = ironhub_auth::random_bytes(16)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ErrorBody {
            error_code: Some(self.code()),
            tracking_id: Some(format!(
                "{}-{}-{}-{}-{}",
                &t[..8],
                &t[8..12],
                &t[12..16],
                &t[16..20],
                &t[20..]
            )),
            message: Some(self.to_string()),
            timestamp_utc: Some(crate::model::time::format(&chrono::Utc::now())),
            ..ErrorBody::default()
        }
    }
}

impl From<ironhub_store::StoreError> for DpsError {
    fn from(e: ironhub_store::StoreError) -> Self {
        let message = ironhub_store::failure_message(&e).into();
        if let ironhub_store::StoreError::Unavailable(_) = e {
            tracing::warn!(error = %e, "store unavailable");
            return DpsError::ServiceUnavailable(message);
        }
        tracing::error!(error = %e, "store failure");
        DpsError::ServerError(message)
    }
}

impl From<serde_json::Error> for DpsError {
    fn from(e: serde_json::Error) -> Self {
        tracing::error!(error = %e, "a stored DPS record does not parse");
        DpsError::ServerError("A stored record is corrupt; see the server's log.".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_agree() {
        let all = [
            DpsError::BadRequest(String::new()),
            DpsError::Unauthorized(String::new()),
            DpsError::InstanceNotFound(String::new()),
            DpsError::EnrollmentNotFound(String::new()),
            DpsError::RegistrationNotFound(String::new()),
            DpsError::CertificateNotFound(String::new()),
            DpsError::OperationNotFound(String::new()),
            DpsError::MessageTooLarge(String::new()),
            DpsError::RequestTimeout(String::new()),
            DpsError::Conflict(String::new()),
            DpsError::PreconditionFailed(String::new()),
            DpsError::CustomAllocationFailed(String::new()),
            DpsError::CustomAllocationIotHubNotSpecified(String::new()),
            DpsError::CustomAllocationUnauthorizedAccess(String::new()),
            DpsError::Throttled(String::new(), None),
            DpsError::ServerError(String::new()),
        ];
        for e in all {
            assert_eq!(u32::from(e.status()), e.code() / 1000, "{e:?}");
        }
        // "Troubleshooting custom allocation policies" (see the module's notes).
        assert_eq!(
            DpsError::CustomAllocationUnauthorizedAccess(String::new()).code(),
            400_209
        );
        assert_eq!(
            DpsError::CustomAllocationIotHubNotSpecified(String::new()).name(),
            "CustomAllocationIoTHubNotSpecified"
        );
    }
}

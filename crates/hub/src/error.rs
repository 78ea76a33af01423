//! The hub's errors, each carrying IoT Hub's status and error code.

/// An IoT Hub error. `code()` is IoT Hub's six-digit code, `name()` its error-code name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    ArgumentInvalid(String),
    #[error("{0}")]
    ArgumentNull(String),
    #[error("{0}")]
    DeviceDefinedMultipleTimes(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("Device {0} not found.")]
    DeviceNotFound(String),
    #[error("A device with ID '{0}' is already registered.")]
    DeviceAlreadyExists(String),
    #[error("Precondition failed: the device's etag is not '{0}'.")]
    PreconditionFailed(String),
    /// A module that does not exist: (device id, module id).
    #[error("Module {1} on device {0} not found.")]
    ModuleNotFound(String, String),
    /// A module id already taken on its device: (device id, module id).
    #[error("A module with ID '{1}' already exists on device '{0}'.")]
    ModuleAlreadyExistsOnDevice(String, String),
    #[error("The request body is larger than {0} bytes.")]
    MessageTooLarge(usize),
    #[error(
        "The operation failed because the requested device isn't online or hasn't registered the direct method callback: {0}."
    )]
    DeviceNotOnline(String),
    #[error("{0}")]
    GatewayTimeout(String),
    #[error("The event log has no partition {0}.")]
    PartitionNotFound(u32),
    #[error("The consumer group '{0}' does not exist.")]
    ConsumerGroupNotFound(String),
    #[error("The certificate '{0}' does not exist.")]
    CertificateNotFound(String),
    #[error("A certificate named '{0}' already exists; send its etag in If-Match to replace it.")]
    CertificateAlreadyExists(String),
    #[error("Precondition failed: the certificate's etag is not '{0}'.")]
    CertificatePreconditionFailed(String),
    #[error("{0}")]
    CertificateInvalid(String),
    #[error("{0}")]
    DeviceMaximumQueueDepthExceeded(String),
    #[error("{0}")]
    DeviceMessageLockLost(String),
    /// A certificate signing request the issuing CA refused (not PKCS#10, a signature that
    /// does not verify, another device's name).
    #[error("{0}")]
    CsrRejected(String),
    #[error("{0}")]
    DefaultStorageEndpointNotConfigured(String),
    #[error("{0}")]
    InvalidFileUploadCorrelationId(String),
    #[error("{0}")]
    ExpiredFileUploadCorrelationId(String),
    #[error("{0}")]
    InvalidFileUploadCompletionStatus(String),
    #[error("{0}")]
    InvalidStorageEndpointOrBlob(String),
    /// A query that does not parse or make sense (the message points at the position).
    #[error("{0}")]
    InvalidQuery(String),
    /// A routing endpoint that does not exist (or is not an event stream).
    #[error("{0}")]
    EndpointNotFound(String),
    /// Over a throttling limit (`throttle`): 429 with `Retry-After`.
    #[error("{message}")]
    Throttled {
        message: String,
        retry_after_secs: u32,
    },
    /// A configuration or deployment that does not exist.
    #[error("Configuration '{0}' was not found.")]
    ConfigurationNotFound(String),
    /// A configuration created with an id already taken.
    #[error("Configuration '{0}' already exists.")]
    ConfigurationAlreadyExists(String),
    /// A scheduled job that does not exist.
    #[error("Job '{0}' was not found.")]
    JobNotFound(String),
    /// A scheduled job created with an id already taken.
    #[error("A job with id '{0}' already exists.")]
    JobAlreadyExists(String),
    #[error("{0}")]
    ServerError(String),
    /// The hub's storage cannot be reached now (see `StoreError::Unavailable`).
    #[error("{0}")]
    ServiceUnavailable(String),
}

impl HubError {
    /// The JSON body a device reads an error from on a response channel (an MQTT twin
    /// response topic, an AMQP twin link): `{"errorCode": …, "message": …}`.
    pub fn device_body(&self) -> Vec<u8> {
        let body = ironhub_wire::error::ErrorBody {
            error_code: Some(self.code()),
            message: Some(self.to_string()),
            ..ironhub_wire::error::ErrorBody::default()
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// When a throttled client may try again, in seconds (the `Retry-After` of a 429).
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            HubError::Throttled {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        // The first three digits of the code are the status.
        u16::try_from(self.code() / 1000).unwrap_or(500)
    }

    /// IoT Hub's numeric error code.
    pub fn code(&self) -> u32 {
        match self {
            HubError::ArgumentInvalid(_) => 400_004,
            HubError::ArgumentNull(_) => 400_005,
            HubError::DeviceDefinedMultipleTimes(_) => 400_011,
            HubError::Unauthorized(_) => 401_002,
            HubError::DeviceNotFound(_) => 404_001,
            HubError::DeviceAlreadyExists(_) => 409_001,
            HubError::PreconditionFailed(_) => 412_002,
            HubError::ModuleNotFound(..) => 404_010,
            HubError::ModuleAlreadyExistsOnDevice(..) => 409_301,
            HubError::MessageTooLarge(_) => 413_001,
            HubError::DeviceNotOnline(_) => 404_103,
            HubError::GatewayTimeout(_) => 504_101,
            HubError::DeviceMaximumQueueDepthExceeded(_) => 403_004,
            HubError::DeviceMessageLockLost(_) => 412_020,
            HubError::PartitionNotFound(_) => 404_003,
            HubError::ConsumerGroupNotFound(_) | HubError::CertificateNotFound(_) => 404_000,
            HubError::CertificateAlreadyExists(_) => 409_000,
            HubError::CertificatePreconditionFailed(_) => 412_002,
            HubError::CertificateInvalid(_) => 400_004,
            HubError::CsrRejected(_) => 400_037,
            HubError::DefaultStorageEndpointNotConfigured(_) => 400_014,
            HubError::InvalidFileUploadCorrelationId(_) => 400_015,
            HubError::ExpiredFileUploadCorrelationId(_) => 400_016,
            HubError::InvalidFileUploadCompletionStatus(_) => 400_019,
            HubError::InvalidStorageEndpointOrBlob(_) => 400_020,
            HubError::InvalidQuery(_) => 400_000,
            HubError::EndpointNotFound(_) => 404_000,
            HubError::Throttled { .. } => 429_001,
            HubError::ConfigurationNotFound(_) => 404_000,
            HubError::ConfigurationAlreadyExists(_) => 409_000,
            HubError::JobNotFound(_) => 404_002,
            HubError::JobAlreadyExists(_) => 409_000,
            HubError::ServerError(_) => 500_001,
            HubError::ServiceUnavailable(_) => 503_001,
        }
    }

    /// IoT Hub's error-code name, as in `ErrorCode:DeviceNotFound`.
    pub fn name(&self) -> &'static str {
        match self {
            HubError::ArgumentInvalid(_) => "ArgumentInvalid",
            HubError::ArgumentNull(_) => "ArgumentNull",
            HubError::DeviceDefinedMultipleTimes(_) => "DeviceDefinedMultipleTimes",
            HubError::Unauthorized(_) => "IotHubUnauthorizedAccess",
            HubError::DeviceNotFound(_) => "DeviceNotFound",
            HubError::DeviceAlreadyExists(_) => "DeviceAlreadyExists",
            HubError::PreconditionFailed(_) => "PreconditionFailed",
            HubError::ModuleNotFound(..) => "ModuleNotFound",
            HubError::ModuleAlreadyExistsOnDevice(..) => "ModuleAlreadyExistsOnDevice",
            HubError::MessageTooLarge(_) => "MessageTooLarge",
            HubError::DeviceNotOnline(_) => "DeviceNotOnline",
            HubError::GatewayTimeout(_) => "GatewayTimeout",
            HubError::DeviceMaximumQueueDepthExceeded(_) => "DeviceMaximumQueueDepthExceeded",
            HubError::DeviceMessageLockLost(_) => "DeviceMessageLockLost",
            HubError::PartitionNotFound(_) => "PartitionNotFound",
            HubError::ConsumerGroupNotFound(_) => "ConsumerGroupNotFound",
            HubError::CertificateNotFound(_) => "CertificateNotFound",
            HubError::CertificateAlreadyExists(_) => "CertificateAlreadyExists",
            HubError::CertificatePreconditionFailed(_) => "PreconditionFailed",
            HubError::CertificateInvalid(_) => "CertificateInvalid",
            HubError::CsrRejected(_) => "CsrRejected",
            HubError::DefaultStorageEndpointNotConfigured(_) => {
                "DefaultStorageEndpointNotConfigured"
            }
            HubError::InvalidFileUploadCorrelationId(_) => "InvalidFileUploadCorrelationId",
            HubError::ExpiredFileUploadCorrelationId(_) => "ExpiredFileUploadCorrelationId",
            HubError::InvalidFileUploadCompletionStatus(_) => "InvalidFileUploadCompletionStatus",
            HubError::InvalidStorageEndpointOrBlob(_) => "InvalidStorageEndpointOrBlob",
            HubError::InvalidQuery(_) => "BadRequest",
            HubError::EndpointNotFound(_) => "EndpointNotFound",
            HubError::Throttled { .. } => "ThrottlingException",
            HubError::ConfigurationNotFound(_) => "ConfigurationNotFound",
            HubError::ConfigurationAlreadyExists(_) => "ConfigurationAlreadyExists",
            HubError::JobNotFound(_) => "JobNotFound",
            HubError::JobAlreadyExists(_) => "JobAlreadyExists",
            HubError::ServerError(_) => "ServerError",
            HubError::ServiceUnavailable(_) => "ServiceUnavailable",
        }
    }
}

impl From<ironhub_store::StoreError> for HubError {
    fn from(e: ironhub_store::StoreError) -> Self {
        let message = ironhub_store::failure_message(&e).into();
        if let ironhub_store::StoreError::Unavailable(_) = e {
            tracing::warn!(error = %e, "store unavailable");
            return HubError::ServiceUnavailable(message);
        }
        tracing::error!(error = %e, "store failure");
        HubError::ServerError(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_code() {
        assert_eq!(HubError::DeviceNotFound("d".into()).status(), 404);
        assert_eq!(HubError::PreconditionFailed("x".into()).status(), 412);
        assert_eq!(HubError::Unauthorized("x".into()).code(), 401_002);
        assert_eq!(HubError::MessageTooLarge(1).status(), 413);
        assert_eq!(
            HubError::DeviceMaximumQueueDepthExceeded("q".into()).status(),
            403
        );
        assert_eq!(HubError::DeviceMessageLockLost("l".into()).code(), 412_020);
    }

    #[test]
    fn an_unreachable_store_is_a_503_and_any_other_failure_a_500() {
        let down = HubError::from(ironhub_store::StoreError::Unavailable("gone".into()));
        assert_eq!((down.status(), down.name()), (503, "ServiceUnavailable"));
        assert!(
            !down.to_string().contains("gone"),
            "details stay in the log"
        );
        let broken = HubError::from(ironhub_store::StoreError::Engine("bad".into()));
        assert_eq!(broken.status(), 500);
    }
}

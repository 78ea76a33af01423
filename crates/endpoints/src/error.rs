//! The one error of endpoint configuration.

/// Why an endpoint's settings were refused; the message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EndpointConfigError(pub String);

impl EndpointConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        EndpointConfigError(message.into())
    }
}

//! The two services the HTTPS port serves, the hub and the DPS instance, as the extractors see
//! them: how each authorizes a service call and how each shapes a client's mistake (IoT Hub's
//! error body or DPS's), so one extractor serves the routes of both.

use axum::response::IntoResponse;
use ironhub_auth::access::Operation;
use ironhub_dps::{Dps, DpsError};
use ironhub_hub::{Hub, HubError};

use crate::error::{ApiError, DpsApiError};

/// A service behind the HTTPS port (the routers' state).
pub(crate) trait Service: Clone + Send + Sync + 'static {
    /// Its error response.
    type Error: IntoResponse + Send;

    /// Checks the `Authorization` header of a service call of `operation` (`request` names
    /// it in a refusal; the domain decides).
    fn authorize(
        &self,
        authorization: Option<&str>,
        operation: Operation,
        request: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// A malformed request (400).
    fn bad_request(message: String) -> Self::Error;
    /// A body over the route's limit of `limit` bytes (413).
    fn too_large(limit: usize) -> Self::Error;
    /// A request without the body its route needs (400).
    fn no_body() -> Self::Error;
    /// A body that did not arrive within the read timeout (408).
    fn timed_out() -> Self::Error;
}

impl Service for Hub {
    type Error = ApiError;

    async fn authorize(
        &self,
        authorization: Option<&str>,
        operation: Operation,
        request: &str,
    ) -> Result<(), ApiError> {
        Ok(self
            .authorize_operation(authorization, operation, request)
            .await?)
    }
    fn bad_request(message: String) -> ApiError {
        HubError::ArgumentInvalid(message).into()
    }
    fn too_large(limit: usize) -> ApiError {
        HubError::MessageTooLarge(limit).into()
    }
    fn no_body() -> ApiError {
        HubError::ArgumentNull("The request has no body.".into()).into()
    }
    fn timed_out() -> ApiError {
        ApiError::request_timeout()
    }
}

impl Service for Dps {
    type Error = DpsApiError;

    async fn authorize(
        &self,
        authorization: Option<&str>,
        operation: Operation,
        request: &str,
    ) -> Result<(), DpsApiError> {
        Ok(self
            .authorize_operation(authorization, operation, request)
            .await?)
    }
    fn bad_request(message: String) -> DpsApiError {
        DpsError::BadRequest(message).into()
    }
    fn too_large(limit: usize) -> DpsApiError {
        DpsError::MessageTooLarge(format!("The request body is larger than {limit} bytes.")).into()
    }
    fn no_body() -> DpsApiError {
        DpsError::BadRequest("The request has no body.".into()).into()
    }
    fn timed_out() -> DpsApiError {
        DpsError::RequestTimeout("The request's body did not arrive in time.".into()).into()
    }
}

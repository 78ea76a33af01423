//! The two services the HTTPS port serves, the hub and the DPS instance, as the extractors see
//! them: how each authorizes a service call and how each shapes a client's mistake (IoT Hub's
//! error body or DPS's), so one extractor serves the routes of both.

use axum::response::IntoResponse;
use ironhub_auth::Rights;
use ironhub_dps::{Dps, DpsError};
use ironhub_hub::{Hub, HubError};

use crate::error::{ApiError, DpsApiError};

/// A service behind the HTTPS port (the routers' state).
pub(crate) trait Service: Clone + Send + Sync + 'static {
    /// Its error response.
    type Error: IntoResponse + Send;

    /// Checks the `Authorization` header of a service call: a token of one of its shared
    /// access policies with any one of `any_of` (the domain decides).
    fn authorize(&self, authorization: Option<&str>, any_of: &[Rights]) -> Result<(), Self::Error>;
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

    fn authorize(&self, authorization: Option<&str>, any_of: &[Rights]) -> Result<(), ApiError> {
        self.authorize_service_any(authorization, any_of)?;
        Ok(())
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

    fn authorize(&self, authorization: Option<&str>, any_of: &[Rights]) -> Result<(), DpsApiError> {
        let mut refusal = DpsError::Unauthorized("Unauthorized.".into());
        for needed in any_of {
            match self.authorize_service(authorization, *needed) {
                Ok(_) => return Ok(()),
                Err(e) => refusal = e,
            }
        }
        Err(refusal.into())
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

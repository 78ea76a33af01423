//! Azure-shaped error responses: IoT Hub's ([`ApiError`]) and DPS's ([`DpsApiError`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ironhub_dps::DpsError;
use ironhub_hub::HubError;
use ironhub_wire::error::ErrorBody;

/// An error as IoT Hub renders it: the status, an `iothub-errorcode` header, and a JSON body
/// with both the classic `Message: "ErrorCode:Name;text"` form (parsed by the Node SDK) and the
/// newer `errorCode`/`trackingId`/`message`/`timestampUtc` fields.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: u32,
    pub name: &'static str,
    pub message: String,
    /// The `Retry-After` of a throttled request, in seconds.
    pub retry_after: Option<u32>,
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        ApiError {
            status: e.status(),
            code: e.code(),
            name: e.name(),
            message: e.to_string(),
            retry_after: e.retry_after(),
        }
    }
}

impl ApiError {
    pub fn not_found(what: &str) -> Self {
        ApiError {
            status: 404,
            code: 404_000,
            name: "NotFound",
            message: format!("{what} was not found."),
            retry_after: None,
        }
    }

    pub fn method_not_allowed() -> Self {
        ApiError {
            status: 405,
            code: 405_000,
            name: "MethodNotAllowed",
            message: "The HTTP method is not allowed on this resource.".into(),
            retry_after: None,
        }
    }

    /// The request's body did not arrive within the server's body read timeout (ironhub's
    /// code: IoT Hub documents none for it).
    pub fn request_timeout() -> Self {
        ApiError {
            status: 408,
            code: 408_000,
            name: "RequestTimeout",
            message: "The request's body did not arrive in time.".into(),
            retry_after: None,
        }
    }

    pub fn invalid_protocol_version(v: &str) -> Self {
        ApiError {
            status: 400,
            code: 400_001,
            name: "InvalidProtocolVersion",
            message: format!("The api-version '{v}' is not valid."),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let now = chrono::Utc::now();
        let tracking_id = format!("{:032x}", rand_u128());
        let body = ErrorBody {
            classic_message: Some(format!("ErrorCode:{};{}", self.name, self.message)),
            exception_message: Some(format!(
                "Tracking ID:{tracking_id}-G:0-TimeStamp:{}",
                now.format("%m/%d/%Y %H:%M:%S")
            )),
            error_code: Some(self.code),
            tracking_id: Some(tracking_id),
            message: Some(self.message),
            timestamp_utc: Some(ironhub_hub::model::azure_time(Some(now))),
            error: None,
        };
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(self.name) {
            headers.insert("iothub-errorcode", v);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        response
    }
}

/// A DPS error as DPS renders it: its status, DPS's JSON body and an `x-ms-error-code` header
/// (the device API's answers, `retry-after` included, come whole from the domain:
/// `ironhub_dps::device_api`).
#[derive(Debug)]
pub struct DpsApiError {
    pub error: DpsError,
}

impl From<DpsError> for DpsApiError {
    fn from(error: DpsError) -> Self {
        DpsApiError { error }
    }
}

impl IntoResponse for DpsApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.error.body()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&self.error.code().to_string()) {
            headers.insert("x-ms-error-code", v);
        }
        response
    }
}

fn rand_u128() -> u128 {
    let bytes = ironhub_auth::random_bytes(16);
    bytes
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}

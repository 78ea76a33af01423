//! What the route files share to answer and to read headers: JSON bodies, `ETag`s, `If-Match`,
//! and the headers of a locked service-bound message.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ironhub_hub::HubError;
use ironhub_hub::model::azure_time;

use crate::error::ApiError;

/// Serialises a JSON response body.
pub(crate) fn json_body(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError::from(HubError::ServerError(e.to_string())).into_response(),
    }
}

/// `response` with a quoted `ETag` header.
pub(crate) fn with_etag(mut response: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// The `If-Match` header.
pub(crate) fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}

/// A header's value, trimmed; `None` when absent, empty or not text.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// What a service receives with a message of a service-bound feed under a lock.
pub(crate) struct ServiceBoundLock<'a> {
    pub lock_token: &'a str,
    pub to: &'static str,
    pub enqueued_time: chrono::DateTime<chrono::Utc>,
    pub delivery_count: u32,
    pub content_type: &'static str,
}

/// `response` with the headers of a locked service-bound message: the lock token in `ETag`,
/// `iothub-locktoken` and `iothub-messageid`, then `iothub-to`, `iothub-enqueuedtime`,
/// `iothub-deliverycount` and the content type.
pub(crate) fn locked_service_message(
    mut response: Response,
    lock: &ServiceBoundLock<'_>,
) -> Response {
    let h = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set("etag", format!("\"{}\"", lock.lock_token));
    set("iothub-locktoken", lock.lock_token.to_owned());
    set("iothub-messageid", lock.lock_token.to_owned());
    set("iothub-to", lock.to.to_owned());
    set("iothub-enqueuedtime", azure_time(Some(lock.enqueued_time)));
    set("iothub-deliverycount", lock.delivery_count.to_string());
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(lock.content_type),
    );
    response
}

//! The paging headers of the query APIs, the hub's (`POST /devices/query`) and DPS's
//! (enrollments, enrollment groups, registrations): the client asks for a page size with
//! `x-ms-max-item-count` and continues with the `x-ms-continuation` token of the last page;
//! the answer names its items' type in `x-ms-item-type`.

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use serde::Serialize;

use crate::respond::json_body;

/// `x-ms-max-item-count` and `x-ms-continuation` of a query request; the error's message
/// when the count is not a whole number.
pub(crate) fn paging(headers: &HeaderMap) -> Result<(Option<usize>, Option<String>), String> {
    let max = match headers
        .get("x-ms-max-item-count")
        .and_then(|v| v.to_str().ok())
    {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("x-ms-max-item-count must be a whole number, not '{v}'."))?,
        ),
    };
    let continuation = headers
        .get("x-ms-continuation")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Ok((max, continuation))
}

/// A page of a query: the items, `x-ms-item-type`, `x-ms-max-item-count`, and
/// `x-ms-continuation` only when more follow (the Node service SDK reads an empty header as
/// "more": its `query.js` tests the header against `undefined`).
pub(crate) fn page_response<T: Serialize>(
    items: &[T],
    item_type: &'static str,
    max: usize,
    continuation: Option<&str>,
) -> Response {
    let mut response = json_body(&items);
    let headers = response.headers_mut();
    headers.insert("x-ms-item-type", HeaderValue::from_static(item_type));
    headers.insert("x-ms-max-item-count", HeaderValue::from(max));
    if let Some(token) = continuation
        && let Ok(v) = HeaderValue::from_str(token)
    {
        headers.insert("x-ms-continuation", v);
    }
    response
}

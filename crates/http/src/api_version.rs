//! The `api-version` check every route goes through.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use crate::error::ApiError;

/// Accepts `api-version` values shaped like IoT Hub's (`2021-04-12`, `2020-05-31-preview`);
/// a request without one is served as the newest version.
pub(crate) async fn check_api_version(request: Request, next: Next) -> Response {
    let query = request.uri().query().unwrap_or("");
    let mut version = None;
    for (k, v) in form_pairs(query) {
        if k == "api-version" {
            if !valid_api_version(&v) {
                return ApiError::invalid_protocol_version(&v).into_response();
            }
            version = Some(v);
        }
    }
    // The diagnostic log's `operationVersion` of whatever the request does.
    ironhub_observe::caller::with_api_version(version.as_deref(), next.run(request)).await
}

fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        (decode(k), decode(v))
    })
}

fn valid_api_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && date >= "2016-01-01"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        for ok in ["2021-04-12", "2020-05-31-preview", "2018-06-30"] {
            assert!(valid_api_version(ok), "{ok}");
        }
        for bad in ["", "latest", "2021-4-12", "1999-01-01", "2021-04-12-beta"] {
            assert!(!valid_api_version(bad), "{bad}");
        }
    }

    #[test]
    fn query_decoding() {
        let pairs: Vec<_> = form_pairs("api-version=2021-04-12&top=%31%30&x").collect();
        assert_eq!(pairs[0], ("api-version".into(), "2021-04-12".into()));
        assert_eq!(pairs[1], ("top".into(), "10".into()));
        assert_eq!(pairs[2], ("x".into(), String::new()));
        let odd: Vec<_> = form_pairs("a=%2&b=%E2%82").collect();
        assert_eq!(odd[0].1, "%2");
    }
}

//! Service queries: `SELECT *` over a collection, in pages with a continuation token
//! (`x-ms-max-item-count`, `x-ms-continuation`; `clients.md` §7).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::DpsError;
use crate::model::QuerySpecification;

/// Items in a page when the client does not ask for a size.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Most items in one page.
pub const MAX_PAGE_SIZE: usize = 1000;

/// One page of a query. `continuation` is present only when more items follow, which is how
/// the SDKs know to ask again (Node: `hasMoreResults = x-ms-continuation !== undefined`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage<T> {
    pub items: Vec<T>,
    pub continuation: Option<String>,
}

/// The query a client meant. The Azure CLI (`az iot dps enrollment list`, `enrollment-group
/// list`) wraps its `QuerySpecification` in another one, so the text it sends is the Python
/// repr of the inner one: `{'additional_properties': {}, 'query': 'SELECT *'}`; DPS answers it
/// as the inner query. Any other text is the query itself.
fn meant(text: &str) -> &str {
    let t = text.trim();
    if !(t.starts_with('{') && t.ends_with('}')) {
        return t;
    }
    for key in ["'query'", "\"query\""] {
        let Some(at) = t.find(key) else { continue };
        let rest = t[at + key.len()..].trim_start();
        let Some(rest) = rest.strip_prefix(':').map(str::trim_start) else {
            continue;
        };
        let Some(quote) = rest.chars().next().filter(|c| matches!(c, '\'' | '"')) else {
            continue;
        };
        if let Some(end) = rest[1..].find(quote) {
            return rest[1..=end].trim();
        }
    }
    t
}

/// Checks a query: ironhub answers `SELECT *` (optionally `FROM <collection>`) and `*`, which
/// is what the SDKs send (the Azure CLI's wrapped form included, see [`meant`]); a filter is
/// refused rather than ignored.
pub fn check_query(spec: &QuerySpecification) -> Result<(), DpsError> {
    let words: Vec<String> = meant(&spec.query)
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["*"] | ["select", "*"] | ["select", "*", "from", _] => Ok(()),
        _ => Err(DpsError::BadRequest(format!(
            "The query '{}' is not supported: ironhub answers 'SELECT *'.",
            spec.query
        ))),
    }
}

/// The page size to use for `x-ms-max-item-count`.
pub fn page_size(asked: Option<usize>) -> usize {
    asked
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .min(MAX_PAGE_SIZE)
}

/// The continuation token that resumes after the record with this id.
pub(crate) fn continuation_after(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("after:{}", id.to_ascii_lowercase()))
}

/// The id a continuation token resumes after.
pub(crate) fn resume_after(token: Option<&str>) -> Result<Option<String>, DpsError> {
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("after:").map(str::to_owned))
        .map(Some)
        .ok_or_else(|| DpsError::BadRequest("The continuation token is not valid.".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> QuerySpecification {
        QuerySpecification { query: text.into() }
    }

    #[test]
    fn queries_the_sdks_send_are_accepted() {
        for ok in [
            "SELECT *",
            "select *",
            " * ",
            "",
            "SELECT * FROM enrollments",
            // What `az iot dps enrollment list` sends.
            "{'additional_properties': {}, 'query': 'SELECT *'}",
            r#"{"query": "select *"}"#,
        ] {
            check_query(&q(ok)).unwrap();
        }
        for bad in [
            "SELECT * FROM enrollments WHERE x = 1",
            "SELECT deviceId",
            "{'additional_properties': {}, 'query': 'SELECT * WHERE a = 1'}",
            "{'query': 'SELECT *'",
            "{}",
        ] {
            assert_eq!(check_query(&q(bad)).unwrap_err().status(), 400);
        }
    }

    #[test]
    fn page_sizes_and_tokens() {
        assert_eq!(page_size(None), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(Some(0)), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(Some(5)), 5);
        assert_eq!(page_size(Some(1_000_000)), MAX_PAGE_SIZE);
        let t = continuation_after("Reg-7");
        assert_eq!(resume_after(Some(&t)).unwrap().as_deref(), Some("reg-7"));
        assert_eq!(resume_after(None).unwrap(), None);
        assert_eq!(resume_after(Some("")).unwrap(), None);
        assert!(resume_after(Some("!!!")).is_err());
    }
}

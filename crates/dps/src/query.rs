//! Service queries: `SELECT *` over a collection, in pages with a continuation token
//! (`x-ms-max-item-count`, `x-ms-continuation`; `docs/protocol/dps-service.md`, "Queries").

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

/// Checks a query. DPS does not evaluate the text of an enrollment or enrollment-group query:
/// whatever it says, the answer is the whole collection, page by page (reported in the C#
/// SDK's issue #794, "Individual Enrollment query returns always all enrollments", and what the
/// Azure CLI relies on: `az iot dps enrollment list` sends the Python repr of a
/// `QuerySpecification`, `{'additional_properties': {}, 'query': 'SELECT *'}`, as its text).
/// ironhub answers the same way, and logs a query that asked for more than `SELECT *`, so that
/// a filter that is not applied does not go unnoticed.
pub fn check_query(spec: &QuerySpecification) -> Result<(), DpsError> {
    let words: Vec<String> = spec
        .query
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let plain = matches!(
        words.as_slice(),
        [] | ["*"] | ["select", "*"] | ["select", "*", "from", _]
    ) || is_cli_wrapped_select_all(&spec.query);
    if !plain {
        tracing::info!(query = %spec.query, "the query text is not evaluated: DPS answers every record");
    }
    Ok(())
}

/// Whether the text is the Azure CLI's wrapped `SELECT *` (see [`check_query`]).
fn is_cli_wrapped_select_all(text: &str) -> bool {
    let squeezed: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    squeezed.starts_with('{') && squeezed.contains("'query':'select*'")
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
    fn every_query_text_is_answered() {
        for text in [
            "SELECT *",
            "select *",
            " * ",
            "",
            "SELECT * FROM enrollments",
            // What `az iot dps enrollment list` sends.
            "{'additional_properties': {}, 'query': 'SELECT *'}",
            // DPS answers every record whatever the text says.
            "SELECT * FROM enrollments WHERE x = 1",
            "SELECT deviceId",
        ] {
            check_query(&q(text)).unwrap();
        }
        assert!(is_cli_wrapped_select_all(
            "{'additional_properties': {}, 'query': 'SELECT *'}"
        ));
        assert!(!is_cli_wrapped_select_all("SELECT *"));
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

//! The one way to read a path's ids and a query string: extractors whose rejections are
//! answered in the service's error shape (IoT Hub's or DPS's, after the router's state), not
//! axum's plain text, so a client's malformed path or query is a 400 like every other client
//! mistake. Ids (device, module, registration, enrollment, certificate names, lock tokens) are
//! percent-decoded; what makes an id valid is the domain's to say.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use ironhub_hub::HubError;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::service::Service;

/// Path segments (`Path<T>`): one that does not decode (percent-encoded bytes that are not
/// UTF-8) or parse (a partition that is not a number) is the service's 400.
pub(crate) struct Segments<T>(pub T);

impl<S: Service, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = S::Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, S::Error> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Segments(t))
            .map_err(|e| S::bad_request(format!("The path is not valid: {e}.")))
    }
}

/// The query string (`Query<T>`): a parameter given twice, or one that does not decode, is the
/// service's 400.
pub(crate) struct QueryArgs<T>(pub T);

impl<S: Service, T: DeserializeOwned + Send> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = S::Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, S::Error> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| QueryArgs(t))
            .map_err(|e| S::bad_request(format!("The query string is not valid: {e}.")))
    }
}

/// `?top=n` of a list (`GET /devices`, `GET /configurations`).
#[derive(Debug, Deserialize)]
pub(crate) struct TopQuery {
    top: Option<String>,
}

impl TopQuery {
    /// The cap asked for: a whole number, or none when absent or empty.
    pub(crate) fn top(&self) -> Result<Option<usize>, HubError> {
        match self.top.as_deref() {
            None | Some("") => Ok(None),
            Some(t) => t.parse::<usize>().map(Some).map_err(|_| {
                HubError::ArgumentInvalid(format!("top must be a whole number, not '{t}'."))
            }),
        }
    }
}

//! Extractors whose rejections are answered in IoT Hub's error shape (an Azure JSON body with
//! `iothub-errorcode`), not axum's plain text: a client's malformed path or query is a 400
//! like every other client mistake.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use ironhub_hub::HubError;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// Path segments (`Path<T>`): one that does not decode (percent-encoded bytes that are not
/// UTF-8) or parse (a partition that is not a number) is a 400 `ArgumentInvalid`.
pub(crate) struct Segments<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Segments(t))
            .map_err(|e| HubError::ArgumentInvalid(format!("The path is not valid: {e}.")).into())
    }
}

/// The query string (`Query<T>`): a parameter given twice, or one that does not decode, is a
/// 400 `ArgumentInvalid`.
pub(crate) struct QueryArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| QueryArgs(t))
            .map_err(|e| {
                HubError::ArgumentInvalid(format!("The query string is not valid: {e}.")).into()
            })
    }
}

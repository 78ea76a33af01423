//! The one request body reader. A route takes its body as its handler's last extractor, so its
//! credentials (an earlier extractor, see `auth`) are checked before a byte of it is read; the
//! size limit is the route's (a const parameter), the read has a time limit (the server's body
//! read timeout, put on each request by the listener), and every refusal is in the service's
//! error shape: a body declared or found larger than the limit is a 413 (a declared one at once,
//! without reading it), one that does not arrive in time a 408, JSON that does not parse a 400.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::service::Service;

/// Largest request body the service APIs accept, in bytes (a bulk request of 100 devices fits
/// easily).
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// How long a request's body may take to arrive (the listener puts the server's on every
/// request; a request without one, in tests, gets [`BodyReadTimeout::DEFAULT`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyReadTimeout(pub Duration);

impl BodyReadTimeout {
    pub(crate) const DEFAULT: Duration = Duration::from_secs(30);
}

impl Default for BodyReadTimeout {
    fn default() -> Self {
        BodyReadTimeout(Self::DEFAULT)
    }
}

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unread {
    /// It is larger than the limit (declared so, or found so), or the client broke off.
    TooLarge,
    /// It did not arrive within the body read timeout.
    TimedOut,
}

/// A request body not read yet: the handler (or the domain it hands it to) reads it with
/// [`LazyBody::read`] when it is ready to.
pub(crate) struct LazyBody {
    body: Body,
    declared: Option<u64>,
    timeout: Duration,
}

impl<S: Send + Sync> FromRequest<S> for LazyBody {
    type Rejection = Infallible;

    async fn from_request(request: Request, _: &S) -> Result<Self, Infallible> {
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let BodyReadTimeout(timeout) = parts
            .extensions
            .get::<BodyReadTimeout>()
            .copied()
            .unwrap_or_default();
        Ok(LazyBody {
            body,
            declared,
            timeout,
        })
    }
}

impl LazyBody {
    /// The whole body, at most `limit` bytes, within the body read timeout.
    pub(crate) async fn read(self, limit: usize) -> Result<Bytes, Unread> {
        if self
            .declared
            .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit))
        {
            return Err(Unread::TooLarge);
        }
        match tokio::time::timeout(self.timeout, axum::body::to_bytes(self.body, limit)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(_)) => Err(Unread::TooLarge),
            Err(_) => Err(Unread::TimedOut),
        }
    }

    /// [`LazyBody::read`], refused in `S`'s error shape.
    async fn read_for<S: Service>(self, limit: usize) -> Result<Bytes, S::Error> {
        self.read(limit).await.map_err(|unread| match unread {
            Unread::TooLarge => S::too_large(limit),
            Unread::TimedOut => S::timed_out(),
        })
    }
}

/// The body's bytes, at most `MAX`.
pub(crate) struct RawBody<const MAX: usize = MAX_BODY_BYTES>(pub Bytes);

impl<S: Service, const MAX: usize> FromRequest<S> for RawBody<MAX> {
    type Rejection = S::Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, S::Error> {
        let Ok(body) = LazyBody::from_request(request, state).await;
        Ok(RawBody(body.read_for::<S>(MAX).await?))
    }
}

/// A JSON body of at most `MAX` bytes; an empty one (or only whitespace) is the service's 400.
pub(crate) struct JsonBody<T, const MAX: usize = MAX_BODY_BYTES>(pub T);

impl<S: Service, T: DeserializeOwned, const MAX: usize> FromRequest<S> for JsonBody<T, MAX> {
    type Rejection = S::Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, S::Error> {
        let JsonOrEmpty(value) = JsonOrEmpty::<T, MAX>::from_request(request, state).await?;
        value.map(JsonBody).ok_or_else(S::no_body)
    }
}

/// A JSON body of at most `MAX` bytes, or `None` when it is empty (or only whitespace): the
/// SDKs send some calls with no body.
pub(crate) struct JsonOrEmpty<T, const MAX: usize = MAX_BODY_BYTES>(pub Option<T>);

impl<S: Service, T: DeserializeOwned, const MAX: usize> FromRequest<S> for JsonOrEmpty<T, MAX> {
    type Rejection = S::Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, S::Error> {
        let RawBody(bytes) = RawBody::<MAX>::from_request(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonOrEmpty(None));
        }
        serde_json::from_slice(&bytes)
            .map(|value| JsonOrEmpty(Some(value)))
            .map_err(|e| {
                S::bad_request(format!(
                    "The request body is not valid JSON for this operation: {e}."
                ))
            })
    }
}

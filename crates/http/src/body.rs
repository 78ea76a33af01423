//! The one request body reader. A route takes its body as its handler's last extractor, so its
//! credentials (an earlier extractor, see `auth`) are checked before a byte of it is read; the
//! size limit is the route's (a const parameter), the read has a time limit (the server's body
//! read timeout, put on each request by the listener), and every refusal is in the service's
//! error shape: a body declared or found larger than the limit is a 413 (a declared one at once,
//! without reading it), one that does not arrive in time a 408, JSON that does not parse a 400.

use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as _, Frame, SizeHint};
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
        let declared = content_length(&parts.headers);
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

/// Most of an unread body the server still reads, and throws away, after answering early.
const MAX_LINGER_BYTES: u64 = 1024 * 1024;

/// A layer for every route: when a request is answered before its body was read (refused by
/// its credentials, or by its size), the rest of the body is read and thrown away while the
/// answer goes out, for at most the body read timeout (counted from the request) and
/// [`MAX_LINGER_BYTES`]. A client that writes its whole body before it reads the answer (most
/// do) then gets the 401 or 413 instead of a reset connection, and a kept-alive connection stays
/// usable. A body declared larger than that is not waited for: its connection is closed
/// after the answer.
pub(crate) async fn linger(request: Request, next: Next) -> Response {
    let declared = content_length(request.headers());
    if request.body().is_end_stream() || declared.is_some_and(|n| n > MAX_LINGER_BYTES) {
        return next.run(request).await;
    }
    let BodyReadTimeout(timeout) = request
        .extensions()
        .get::<BodyReadTimeout>()
        .copied()
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    let slot = Arc::new(Mutex::new(None));
    let (parts, body) = request.into_parts();
    let body = Body::new(Watched {
        inner: Some(body),
        slot: Arc::clone(&slot),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    let unread = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    match unread {
        None => response,
        Some(unread) => response.map(|answer| {
            Body::new(ThenDrain {
                answer,
                answered: false,
                unread: Some(unread),
                drained: 0,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
            })
        }),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// A request body that, dropped before its end, leaves itself in `slot`.
struct Watched {
    inner: Option<Body>,
    slot: Arc<Mutex<Option<Body>>>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take().filter(|b| !b.is_end_stream()) {
            *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(inner);
        }
    }
}

/// An answer whose end waits until the request's unread body is read (see [`linger`]). Its
/// length is not announced, so the answer is sent chunked and the server keeps polling it.
struct ThenDrain {
    answer: Body,
    answered: bool,
    unread: Option<Body>,
    drained: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for ThenDrain {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if !this.answered {
            match ready!(Pin::new(&mut this.answer).poll_frame(cx)) {
                Some(frame) => return Poll::Ready(Some(frame)),
                None => this.answered = true,
            }
        }
        while let Some(unread) = this.unread.as_mut() {
            if this.deadline.as_mut().poll(cx).is_ready() || this.drained > MAX_LINGER_BYTES {
                this.unread = None;
                break;
            }
            match ready!(Pin::new(unread).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    this.drained += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                Some(Err(_)) | None => this.unread = None,
            }
        }
        Poll::Ready(None)
    }
}

//! Who is signed in to the hub's pages, as extractors: [`Signed`] opens the session cookie
//! and acts as its principal (a policy, or a bearer token: [`Principal`]) through the hub's
//! own authorization, the one the REST API uses, and [`Posted`] adds what every form post must
//! carry: a same-origin request and the session's CSRF token. The DPS pages' extractors
//! (`dps::access`) are the same over [`crate::principal`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::access::Operation;
use ironhub_hub::{Hub, HubError};
use serde::de::DeserializeOwned;

use crate::principal::{self, Principal, Service};
use crate::session::Session;

/// Where a request without a session is sent.
pub const SIGN_IN: &str = <Hub as Service>::SIGN_IN;

/// A signed-in session: the hub, the principal it acts as and its CSRF token.
#[derive(Clone)]
pub struct Signed {
    pub hub: Hub,
    /// The principal's name, for logs: the policy's as the hub spells it, or the token's.
    pub policy: String,
    pub principal: Principal,
    pub session: Session,
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl Signed {
    /// Whether the principal may perform `operation`, decided as for a REST call.
    pub async fn may(&self, operation: Operation) -> Result<(), HubError> {
        self.principal.may(&self.hub, operation).await
    }

    /// [`Signed::may`] as a yes or no, to decide which controls a page shows.
    pub async fn can(&self, operation: Operation) -> bool {
        self.may(operation).await.is_ok()
    }

    /// The policy's connection string (it holds the key the user signed in with); none for a
    /// bearer token.
    pub fn connection_string(&self) -> Option<String> {
        self.principal.connection_string(self.hub.host_name())
    }
}

impl FromRequestParts<Hub> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, Response> {
        let (principal, session) = principal::open(&parts.headers, hub)
            .ok_or_else(|| Redirect::to(SIGN_IN).into_response())?;
        Ok(Signed {
            hub: hub.clone(),
            policy: principal.name().to_owned(),
            principal,
            session,
        })
    }
}

/// A form post of a signed-in session: same origin, with the session's CSRF token (`csrf`)
/// among the fields of `T`.
#[derive(Debug)]
pub struct Posted<T>(pub Signed, pub T);

/// A form's fields with the CSRF token every console form carries.
#[derive(serde::Deserialize)]
struct WithCsrf<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

impl<T: DeserializeOwned + Send + 'static> FromRequest<Hub> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, hub: &Hub) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, hub).await?;
        let form =
            checked_form(Request::from_parts(parts, body), hub, &signed.session.csrf).await?;
        Ok(Posted(signed, form))
    }
}

/// The fields of a signed-in session's form post, after the checks every post passes: it
/// comes from this server, and carries the session's CSRF token (`expected`).
pub(crate) async fn checked_form<T: DeserializeOwned, S: Send + Sync>(
    request: Request,
    state: &S,
    expected: &str,
) -> Result<T, Response> {
    if !same_origin(request.headers()) {
        return Err(cross_site());
    }
    let WithCsrf { csrf, form } = read_form(request, state).await?;
    if !same_token(&csrf, expected) {
        return Err(forbidden(
            "The form was refused: its security token is missing or stale. Reload the page and try again.",
        ));
    }
    Ok(form)
}

/// Reads a form post's `application/x-www-form-urlencoded` body (axum's default body limit).
pub async fn read_form<T: DeserializeOwned, S: Send + Sync>(
    request: Request,
    state: &S,
) -> Result<T, Response> {
    let bad = |message: String| {
        (
            StatusCode::BAD_REQUEST,
            crate::frame::bare("Refused", &message),
        )
            .into_response()
    };
    let form_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(bad(
            "A console form is posted as application/x-www-form-urlencoded.".into(),
        ));
    }
    let body = Bytes::from_request(request, state)
        .await
        .map_err(IntoResponse::into_response)?;
    serde_urlencoded::from_bytes(&body).map_err(|e| bad(format!("The form is not valid: {e}.")))
}

/// Compares two tokens in a time that does not depend on where they differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// Whether a post comes from this server: its `Origin`, when the browser sends one, is it.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST))
    else {
        return true;
    };
    let origin = origin.to_str().unwrap_or_default();
    let host = host.to_str().unwrap_or_default();
    origin.strip_prefix("https://") == Some(host)
}

/// The refusal of a post from another site.
pub fn cross_site() -> Response {
    forbidden("The form was refused: it was posted from another site.")
}

fn forbidden(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        crate::frame::bare("Refused", message),
    )
        .into_response()
}

/// The fields of a form that posts nothing but its CSRF token.
#[derive(Debug, serde::Deserialize)]
pub struct NoFields {}

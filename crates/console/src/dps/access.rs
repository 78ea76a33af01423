//! Who is signed in to DPS: [`SignedDps`] opens the DPS session cookie and acts as its
//! principal (a DPS policy, or a bearer token for DPS's audience) through
//! `Dps::authorize_operation`, as a REST call is checked, and [`PostedDps`] adds what every
//! form post carries (same origin, the session's CSRF token). Sign-in takes a DPS service
//! connection string, a DPS policy name and key, or an access token, under the hub's limit on
//! failed sign-ins; the flow is the hub's (`signin::sign_in_to`).

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::access::Operation;
use ironhub_auth::{Rights, sas, unix_now};
use ironhub_dps::{Dps, DpsError};
use maud::Markup;
use serde::de::DeserializeOwned;

use super::DpsConsole;
use crate::access::{NoFields, checked_form};
use crate::principal::{self, Principal, Service};
use crate::session::{self, DPS_COOKIE, Session};
use crate::signin::{Texts, page, sign_in_to};

/// The DPS sign-in page.
pub const SIGN_IN: &str = <Dps as Service>::SIGN_IN;

/// The DPS sign-in page's texts.
const DPS: Texts = Texts {
    action: SIGN_IN,
    title: "Sign in to DPS",
    heading: "Sign in to the Device Provisioning Service",
    intro: "Sign in with a shared access policy of the DPS instance (its service connection string, or its name and key), or with an access token of its identity provider. The DPS pages act with exactly that policy's rights, or that token's roles; the hub's pages keep their own sign-in.",
    connection_string: "DPS service connection string",
    placeholder: "HostName=…;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=…",
    policy: "DPS policy name",
    audience: ironhub_auth::oidc::DPS_AUDIENCE,
    other: ("/console/signin", "Sign in to the IoT hub instead"),
};

/// A signed-in DPS session: the DPS instance, the principal it acts as and its CSRF token.
#[derive(Clone)]
pub struct SignedDps {
    pub dps: Dps,
    /// The principal's name, for logs: the DPS policy's as DPS spells it, or the token's.
    pub policy: String,
    pub principal: Principal,
    pub session: Session,
}

impl std::fmt::Debug for SignedDps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedDps")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl SignedDps {
    /// Whether the principal may perform `operation`, decided as for a REST call.
    pub async fn may(&self, operation: Operation) -> Result<(), DpsError> {
        self.principal.may(&self.dps, operation).await
    }

    /// [`SignedDps::may`] as a yes or no, to decide which controls a page shows.
    pub async fn can(&self, operation: Operation) -> bool {
        self.may(operation).await.is_ok()
    }

    /// The DPS policy's service connection string (it holds the key signed in with); none
    /// for a bearer token.
    pub fn connection_string(&self) -> Option<String> {
        self.principal.connection_string(self.dps.host_name())
    }
}

impl FromRequestParts<DpsConsole> for SignedDps {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &DpsConsole) -> Result<Self, Response> {
        let (principal, session) = principal::open(&parts.headers, &state.dps)
            .ok_or_else(|| Redirect::to(SIGN_IN).into_response())?;
        Ok(SignedDps {
            dps: state.dps.clone(),
            policy: principal.name().to_owned(),
            principal,
            session,
        })
    }
}

/// A form post of a signed-in DPS session.
#[derive(Debug)]
pub struct PostedDps<T>(pub SignedDps, pub T);

impl<T: DeserializeOwned + Send + 'static> FromRequest<DpsConsole> for PostedDps<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &DpsConsole) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = SignedDps::from_request_parts(&mut parts, state).await?;
        let form = checked_form(
            Request::from_parts(parts, body),
            state,
            &signed.session.csrf,
        )
        .await?;
        Ok(PostedDps(signed, form))
    }
}

/// `GET /console/dps/signin`.
pub async fn form() -> Markup {
    page(&DPS, None)
}

/// `POST /console/dps/signin`: checks the DPS policy and key the way a DPS REST call's token
/// is checked, or the access token as a DPS REST call's bearer token, under the hub's limit on failed sign-ins per client address, then sets the DPS
/// session cookie.
pub async fn sign_in(State(state): State<DpsConsole>, request: Request) -> Response {
    let DpsConsole { hub, dps } = &state;
    let check = |policy: &str, key: &str| {
        let any_right = [
            Rights::SERVICE_CONFIG,
            Rights::ENROLLMENT_READ,
            Rights::ENROLLMENT_WRITE,
            Rights::REGISTRATION_STATUS_READ,
            Rights::REGISTRATION_STATUS_WRITE,
        ];
        let token = sas::generate(dps.host_name(), key, unix_now() + 60, Some(policy)).ok()?;
        any_right
            .iter()
            .find_map(|r| dps.authorize_service(Some(&token), *r).ok())
            .map(|principal| principal.policy)
    };
    sign_in_to(hub, dps, &state, request, &DPS, "/console/dps", check).await
}

/// `POST /console/dps/signout`: removes the DPS session cookie (the hub's stays).
pub async fn sign_out(PostedDps(_, NoFields {}): PostedDps<NoFields>) -> Response {
    (
        [(
            header::SET_COOKIE,
            session::set_named_cookie(DPS_COOKIE, ""),
        )],
        Redirect::to(SIGN_IN),
    )
        .into_response()
}

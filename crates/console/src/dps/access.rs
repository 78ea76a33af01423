//! Who is signed in to DPS: [`SignedDps`] opens the DPS session cookie and acts as its DPS
//! policy through `Dps::authorize_operation` (a token the console signs with the policy's
//! key, checked as a REST call's is), and [`PostedDps`] adds what every form post carries
//! (same origin, the session's CSRF token). Sign-in takes a DPS service connection string or
//! a DPS policy name and key, under the hub's limit on failed sign-ins.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::access::Operation;
use ironhub_auth::{Rights, sas, unix_now};
use ironhub_dps::{Dps, DpsError};
use maud::{DOCTYPE, Markup, html};
use serde::de::DeserializeOwned;

use super::DpsConsole;
use crate::access::{NoFields, checked_form};
use crate::session::{self, DPS_COOKIE, Session};
use crate::signin::{Target, sign_in_to};

/// The DPS sign-in page.
pub const SIGN_IN: &str = "/console/dps/signin";
/// How long a token the console signs for one check lives, in seconds.
const TOKEN_SECS: u64 = 300;

/// What a DPS session's cookie is sealed for: the DPS host, kept apart from the hub's.
fn sealed_for(dps: &Dps) -> String {
    format!("dps:{}", dps.host_name())
}

/// A signed-in DPS session: the DPS instance, the DPS policy it acts as and its CSRF token.
#[derive(Clone)]
pub struct SignedDps {
    pub dps: Dps,
    /// The DPS policy's name as DPS spells it.
    pub policy: String,
    key: String,
    pub session: Session,
}

impl std::fmt::Debug for SignedDps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never in logs.
        f.debug_struct("SignedDps")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl SignedDps {
    /// Whether the DPS policy may perform `operation`, decided as for a REST call.
    pub async fn may(&self, operation: Operation) -> Result<(), DpsError> {
        let token = sas::generate(
            self.dps.host_name(),
            &self.key,
            unix_now() + TOKEN_SECS,
            Some(&self.policy),
        )
        .map_err(|e| DpsError::Unauthorized(format!("Unauthorized: {e}.")))?;
        let request = format!("{operation:?} from the console");
        self.dps
            .authorize_operation(Some(&token), operation, &request)
            .await
    }

    /// [`SignedDps::may`] as a yes or no, to decide which controls a page shows.
    pub async fn can(&self, operation: Operation) -> bool {
        self.may(operation).await.is_ok()
    }

    /// The DPS policy's service connection string (it holds the key signed in with).
    pub fn connection_string(&self) -> String {
        format!(
            "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
            self.dps.host_name(),
            self.policy,
            self.key
        )
    }
}

impl FromRequestParts<DpsConsole> for SignedDps {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &DpsConsole) -> Result<Self, Response> {
        signed(&parts.headers, &state.dps).ok_or_else(|| Redirect::to(SIGN_IN).into_response())
    }
}

/// The DPS session a request's cookie holds, if it is valid now.
fn signed(headers: &HeaderMap, dps: &Dps) -> Option<SignedDps> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let value = session::named_from_header(cookies, DPS_COOKIE)?;
    let settings = dps.settings();
    let (policy, key, session) = session::open(value, &sealed_for(dps), unix_now(), |name| {
        settings.policy(name)
    })?;
    Some(SignedDps {
        dps: dps.clone(),
        policy: policy.key_name.clone(),
        key: key.to_owned(),
        session,
    })
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
    page(None)
}

fn page(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (crate::frame::head("Sign in to DPS")) }
            body {
                main {
                    h1 { "Sign in to the Device Provisioning Service" }
                    p { "Sign in with a shared access policy of the DPS instance (its service connection string, or its name and key). The DPS pages act with exactly that policy's rights; the hub's pages keep their own sign-in." }
                    @if let Some(e) = error { p.notice.error role="alert" { (e) } }
                    section {
                        form method="post" action=(SIGN_IN) autocomplete="off" {
                            label for="connection_string" { "DPS service connection string" }
                            input #connection_string type="password" name="connection_string"
                                placeholder="HostName=…;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=…";
                            p { "or" }
                            label for="policy" { "DPS policy name" }
                            input #policy type="text" name="policy";
                            label for="key" { "Key" }
                            input #key type="password" name="key";
                            p { button type="submit" { "Sign in" } }
                        }
                    }
                    p { a href="/console/signin" { "Sign in to the IoT hub instead" } }
                }
            }
        }
    }
}

/// `POST /console/dps/signin`: checks the DPS policy and key the way a DPS REST call's token
/// is checked, under the hub's limit on failed sign-ins per client address, then sets the DPS
/// session cookie.
pub async fn sign_in(State(state): State<DpsConsole>, request: Request) -> Response {
    let DpsConsole { hub, dps } = &state;
    let target = Target {
        service: "DPS instance",
        page,
        cookie: DPS_COOKIE,
        sealed_for: sealed_for(dps),
        landing: "/console/dps",
    };
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
    sign_in_to(hub, &state, request, target, check).await
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

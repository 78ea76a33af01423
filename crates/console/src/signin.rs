//! Sign-in, to the hub or to DPS, with a shared access policy or a bearer token, and
//! sign-out. The flow is written once for both services ([`sign_in_to`], given the
//! service's [`Service`] and its policy check); each service has its page's texts.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::access::AccessError;
use ironhub_auth::{ConnectionString, Rights, sas, unix_now};
use ironhub_hub::Hub;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::access::{NoFields, Posted, cross_site, read_form, same_origin};
use crate::principal::{Service, verify_bearer};
use crate::session::{self, Bearer, Session};

/// What a sign-in form posts: a connection string, or a policy name and key; or an access
/// token.
#[derive(Default, Deserialize)]
pub struct SignIn {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    connection_string: String,
    #[serde(default)]
    policy: String,
    #[serde(default)]
    key: String,
}

impl SignIn {
    /// The policy name and key the form gives, from its connection string or its two fields.
    pub(crate) fn policy_and_key(&self) -> Result<(String, String), String> {
        let (policy, key) = if self.connection_string.trim().is_empty() {
            (self.policy.trim().to_owned(), self.key.trim().to_owned())
        } else {
            let cs = ConnectionString::parse(&self.connection_string)
                .map_err(|e| format!("The connection string is not valid: {e}."))?;
            (
                cs.shared_access_key_name.unwrap_or_default(),
                cs.shared_access_key.unwrap_or_default(),
            )
        };
        if policy.is_empty() || key.is_empty() {
            return Err(
                "Give a connection string with SharedAccessKeyName and SharedAccessKey, or a policy name and key."
                    .into(),
            );
        }
        Ok((policy, key))
    }
}

/// What a sign-in page says: its title and heading, what it signs in with, the labels of its
/// policy fields, the audience its tokens are for, and the way to the other service's page.
#[derive(Debug)]
pub(crate) struct Texts {
    pub action: &'static str,
    pub title: &'static str,
    pub heading: &'static str,
    pub intro: &'static str,
    pub connection_string: &'static str,
    pub placeholder: &'static str,
    pub policy: &'static str,
    pub audience: &'static str,
    pub other: (&'static str, &'static str),
}

/// The hub's sign-in page.
const HUB: Texts = Texts {
    action: "/console/signin",
    title: "Sign in",
    heading: "Sign in to the ironhub console",
    intro: "Sign in with a shared access policy of the hub, or with an access token of the hub's identity provider. The console acts with exactly that policy's rights, or that token's roles.",
    connection_string: "Connection string",
    placeholder: "HostName=…;SharedAccessKeyName=…;SharedAccessKey=…",
    policy: "Policy name",
    audience: ironhub_auth::oidc::IOT_HUB_AUDIENCE,
    other: (
        "/console/dps/signin",
        "Sign in to the Device Provisioning Service instead",
    ),
};

/// Which of a sign-in page's two forms a refusal belongs beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// Above both forms (too many failures, no session made).
    Page,
    Policy,
    Token,
}

/// `GET /console/signin`.
pub async fn form() -> Markup {
    page(&HUB, None)
}

/// A sign-in page, with a refusal beside the form it concerns.
pub(crate) fn page(texts: &Texts, refusal: Option<(Field, &str)>) -> Markup {
    let error = |field: Field| refusal.filter(|(f, _)| *f == field).map(|(_, e)| e);
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (crate::frame::head(texts.title)) }
            body {
                main {
                    h1 { (texts.heading) }
                    p { (texts.intro) }
                    @if let Some(e) = error(Field::Page) { p.notice.error role="alert" { (e) } }
                    section {
                        h2 { "Shared access policy" }
                        @if let Some(e) = error(Field::Policy) { p.notice.error #policy-error role="alert" { (e) } }
                        form #policy-signin method="post" action=(texts.action) autocomplete="off" {
                            label for="connection_string" { (texts.connection_string) }
                            input #connection_string type="password" name="connection_string"
                                placeholder=(texts.placeholder);
                            p { "or" }
                            label for="policy" { (texts.policy) }
                            input #policy type="text" name="policy";
                            label for="key" { "Key" }
                            input #key type="password" name="key";
                            p { button type="submit" { "Sign in" } }
                        }
                    }
                    section {
                        h2 { "Access token" }
                        form #token-signin method="post" action=(texts.action) autocomplete="off" {
                            label for="access_token" { "Access token" }
                            input #access_token type="password" name="access_token" aria-describedby="access_token-error";
                            @if let Some(e) = error(Field::Token) {
                                span.field-error #access_token-error role="alert" { (e) }
                            }
                            p { "A bearer token of the configured OpenID Connect issuer for " code { (texts.audience) }
                                ", e.g. what " code { "az account get-access-token --resource " (texts.audience) } " prints as accessToken. The session ends when the token expires." }
                            p { button type="submit" { "Sign in with the token" } }
                        }
                    }
                    p { a href=(texts.other.0) { (texts.other.1) } }
                }
            }
        }
    }
}

/// `POST /console/signin`: checks the policy and key the way a REST call's token is checked
/// (a token signed with the key must be accepted), or the access token as a REST call's
/// bearer token, then sets the session cookie.
pub async fn sign_in(State(hub): State<Hub>, request: Request) -> Response {
    let check = |policy: &str, key: &str| {
        let any_right = [
            Rights::REGISTRY_READ,
            Rights::REGISTRY_WRITE,
            Rights::SERVICE_CONNECT,
            Rights::DEVICE_CONNECT,
        ];
        let token = sas::generate(hub.host_name(), key, unix_now() + 60, Some(policy)).ok()?;
        match hub.authorize_service_any(Some(&token), &any_right).ok()? {
            ironhub_hub::Principal::Policy { name, .. } => Some(name),
            _ => None,
        }
    };
    sign_in_to(&hub, &hub, &hub, request, &HUB, "/console", check).await
}

/// A sign-in form's post, to the hub or to DPS (`service`): a same-origin post, under the
/// hub's limit on failed sign-ins per client address. A policy name and key are checked by
/// `check`, the service's own check (it gives the policy's name as the service spells it),
/// and only while the service accepts policies; an access token by the service's bearer
/// validator ([`verify_bearer`]). A failure counts against the address. Sets the service's
/// session cookie (until the token's `exp` for a token) and goes to `landing`.
pub(crate) async fn sign_in_to<S: Service, St: Send + Sync>(
    hub: &Hub,
    service: &S,
    state: &St,
    request: Request,
    texts: &Texts,
    landing: &'static str,
    check: impl FnOnce(&str, &str) -> Option<String>,
) -> Response {
    if !same_origin(request.headers()) {
        return cross_site();
    }
    // The client's address, put there by the HTTPS listener (none for a request made in
    // process).
    let client = request
        .extensions()
        .get::<ironhub_hub::network::Peer>()
        .map(|peer| peer.ip);
    if let Err(e) = hub.admit_sign_in(client).await {
        tracing::info!(target: "ServiceOperations", service = S::NAME, client = ?client, "console sign-in refused: too many failures");
        let retry_after = e.retry_after().unwrap_or(60).to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after)],
            page(texts, Some((Field::Page, &e.to_string()))),
        )
            .into_response();
    }
    let form: SignIn = match read_form(request, state).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let refuse = |field: Field, message: &str| {
        (
            StatusCode::UNAUTHORIZED,
            page(texts, Some((field, message))),
        )
            .into_response()
    };
    let now = unix_now();
    if !form.access_token.trim().is_empty() {
        let token = form.access_token.trim();
        let identity = match verify_bearer(service, token).await {
            Ok(identity) => identity,
            Err(message) => {
                tracing::info!(target: "ServiceOperations", service = S::NAME, client = ?client, reason = %message, "console token sign-in refused");
                hub.sign_in_failed(client).await;
                return refuse(Field::Token, &message);
            }
        };
        // The session ends no later than the token.
        let exp = identity.expires.min(now + session::LIFETIME_SECS);
        if exp <= now {
            hub.sign_in_failed(client).await;
            return refuse(Field::Token, "Unauthorized: the access token has expired.");
        }
        let bearer = Bearer {
            token: token.to_owned(),
            name: identity.name,
            roles: identity.roles,
        };
        let cookie = service
            .owner()
            .zip(Session::until(exp))
            .and_then(|(owner, s)| session::seal_bearer(&bearer, owner, &service.sealed_for(), &s));
        let Some(cookie) = cookie else {
            return no_session(texts);
        };
        if cookie.len() > session::MAX_COOKIE {
            return refuse(
                Field::Token,
                "This access token is too large to keep in a session cookie.",
            );
        }
        tracing::info!(target: "ServiceOperations", service = S::NAME, principal = %bearer.name, "console sign-in with a bearer token");
        return signed_in(S::COOKIE, &cookie, exp - now, landing);
    }
    if !service.access().local_auth {
        return refuse(
            Field::Policy,
            &format!("Unauthorized: {}.", AccessError::LocalAuthDisabled),
        );
    }
    let (policy, key) = match form.policy_and_key() {
        Ok(pair) => pair,
        Err(message) => return refuse(Field::Policy, &message),
    };
    let Some(name) = check(&policy, &key) else {
        tracing::info!(target: "ServiceOperations", service = S::NAME, policy = %policy, client = ?client, "console sign-in refused");
        hub.sign_in_failed(client).await;
        return refuse(
            Field::Policy,
            &format!(
                "This policy name and key are not accepted by this {}.",
                S::NAME
            ),
        );
    };
    let cookie =
        Session::new(now).and_then(|s| session::seal(&name, &key, &service.sealed_for(), &s));
    let Some(cookie) = cookie else {
        return no_session(texts);
    };
    tracing::info!(target: "ServiceOperations", service = S::NAME, policy = %name, "console sign-in");
    signed_in(S::COOKIE, &cookie, session::LIFETIME_SECS, landing)
}

fn no_session(texts: &Texts) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        page(texts, Some((Field::Page, "No session could be made."))),
    )
        .into_response()
}

/// The answer to a sign-in: the session cookie for `max_age` seconds, and the way on.
fn signed_in(cookie: &str, value: &str, max_age: u64, landing: &'static str) -> Response {
    (
        [(
            header::SET_COOKIE,
            session::cookie_for(cookie, value, max_age),
        )],
        Redirect::to(landing),
    )
        .into_response()
}

/// `POST /console/signout`: removes the session cookie.
pub async fn sign_out(Posted(_, NoFields {}): Posted<NoFields>) -> Response {
    (
        [(header::SET_COOKIE, session::set_cookie(""))],
        Redirect::to(crate::access::SIGN_IN),
    )
        .into_response()
}

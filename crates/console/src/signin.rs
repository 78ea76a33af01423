//! Sign-in with a shared access policy, and sign-out.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::{ConnectionString, Rights, sas, unix_now};
use ironhub_hub::Hub;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::access::{NoFields, Posted, cross_site, read_form, same_origin};
use crate::session::{self, Session};

/// What the sign-in form posts: a connection string, or a policy name and key.
#[derive(Debug, Default, Deserialize)]
pub struct SignIn {
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

/// `GET /console/signin`.
pub async fn form() -> Markup {
    page(None)
}

fn page(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (crate::frame::head("Sign in")) }
            body {
                main {
                    h1 { "Sign in to the ironhub console" }
                    p { "Sign in with a shared access policy of the hub. The console acts with exactly that policy's rights." }
                    @if let Some(e) = error { p.notice.error role="alert" { (e) } }
                    section {
                        form method="post" action="/console/signin" autocomplete="off" {
                            label for="connection_string" { "Connection string" }
                            input #connection_string type="password" name="connection_string"
                                placeholder="HostName=…;SharedAccessKeyName=…;SharedAccessKey=…";
                            p { "or" }
                            label for="policy" { "Policy name" }
                            input #policy type="text" name="policy";
                            label for="key" { "Key" }
                            input #key type="password" name="key";
                            p { button type="submit" { "Sign in" } }
                        }
                    }
                    p { a href="/console/dps/signin" { "Sign in to the Device Provisioning Service instead" } }
                }
            }
        }
    }
}

/// `POST /console/signin`: checks the policy and key the way a REST call's token is checked
/// (a token signed with the key must be accepted), then sets the session cookie.
pub async fn sign_in(State(hub): State<Hub>, request: Request) -> Response {
    let target = Target {
        service: "hub",
        page,
        cookie: session::COOKIE,
        sealed_for: hub.host_name().to_owned(),
        landing: "/console",
    };
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
    sign_in_to(&hub, &hub, request, target, check).await
}

/// What a sign-in signs in to: the service (as refusals and logs name it), its sign-in page,
/// its session cookie, what that cookie is sealed for, and the page after.
pub(crate) struct Target {
    pub service: &'static str,
    pub page: fn(Option<&str>) -> Markup,
    pub cookie: &'static str,
    pub sealed_for: String,
    pub landing: &'static str,
}

/// A sign-in form's post, to the hub or to DPS: a same-origin post, under the hub's limit on
/// failed sign-ins per client address; `check` is the service's own check of the form's policy
/// name and key (the policy's name as the service spells it), and a failure counts against
/// the address. Sets the session cookie, sealed with the policy's key.
pub(crate) async fn sign_in_to<S: Send + Sync>(
    hub: &Hub,
    state: &S,
    request: Request,
    target: Target,
    check: impl FnOnce(&str, &str) -> Option<String>,
) -> Response {
    if !same_origin(request.headers()) {
        return cross_site();
    }
    let page = target.page;
    // The client's address, put there by the HTTPS listener (none for a request made in
    // process).
    let client = request
        .extensions()
        .get::<ironhub_hub::network::Peer>()
        .map(|peer| peer.ip);
    if let Err(e) = hub.admit_sign_in(client).await {
        tracing::info!(target: "ServiceOperations", service = target.service, client = ?client, "console sign-in refused: too many failures");
        let retry_after = e.retry_after().unwrap_or(60).to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after)],
            page(Some(&e.to_string())),
        )
            .into_response();
    }
    let form: SignIn = match read_form(request, state).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let refuse = |message: &str| (StatusCode::UNAUTHORIZED, page(Some(message))).into_response();
    let (policy, key) = match form.policy_and_key() {
        Ok(pair) => pair,
        Err(message) => return refuse(&message),
    };
    let Some(name) = check(&policy, &key) else {
        tracing::info!(target: "ServiceOperations", service = target.service, policy = %policy, client = ?client, "console sign-in refused");
        hub.sign_in_failed(client).await;
        return refuse(&format!(
            "This policy name and key are not accepted by this {}.",
            target.service
        ));
    };
    let cookie =
        Session::new(unix_now()).and_then(|s| session::seal(&name, &key, &target.sealed_for, &s));
    let Some(cookie) = cookie else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            page(Some("No session could be made.")),
        )
            .into_response();
    };
    tracing::info!(target: "ServiceOperations", service = target.service, policy = %name, "console sign-in");
    (
        [(
            header::SET_COOKIE,
            session::set_named_cookie(target.cookie, &cookie),
        )],
        Redirect::to(target.landing),
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

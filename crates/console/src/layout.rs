//! The page frame every console page shares, and the pieces pages reuse.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ironhub_hub::HubError;
use maud::{DOCTYPE, Markup, html};

use crate::access::Signed;
use crate::frame::head;
use crate::principal::Principal;

/// A page with the console's navigation, for a signed-in session.
pub fn page(signed: &Signed, title: &str, body: Markup) -> Markup {
    let who = signed.principal.who();
    let nav = Nav {
        brand: ("/console", signed.hub.host_name()),
        links: &[
            ("/console", "Overview"),
            ("/console/devices", "Devices"),
            ("/console/certificates", "Certificates"),
            ("/console/telemetry", "Telemetry"),
            ("/console/routes", "Routes"),
            ("/console/dps", "DPS"),
        ],
        sign_out: "/console/signout",
        csrf: &signed.session.csrf,
        who: &who,
    };
    framed(&nav, title, body)
}

/// A signed-in page's navigation: the brand link, the page links, and the sign-out form of
/// the session (with its CSRF token and the policy's name).
#[derive(Debug)]
pub struct Nav<'a> {
    pub brand: (&'a str, &'a str),
    pub links: &'a [(&'a str, &'a str)],
    pub sign_out: &'a str,
    pub csrf: &'a str,
    pub who: &'a str,
}

/// A page with `nav` above its title and body.
pub fn framed(nav: &Nav<'_>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body {
                header {
                    nav {
                        a.brand href=(nav.brand.0) { (nav.brand.1) }
                        @for (href, text) in nav.links { a href=(href) { (text) } }
                        form.inline method="post" action=(nav.sign_out) {
                            input type="hidden" name="csrf" value=(nav.csrf);
                            span.who { (nav.who) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.session.csrf); }
}

/// A notice above a page's content: an error (red) or a success.
pub fn notice(message: Option<&Notice>) -> Markup {
    html! {
        @if let Some(n) = message {
            p class=(if n.ok { "notice ok" } else { "notice error" }) role="status" { (n.text) }
        }
    }
}

/// A message a page shows after a form post.
#[derive(Debug, Clone)]
pub struct Notice {
    pub ok: bool,
    pub text: String,
}

impl Notice {
    pub fn ok(text: impl Into<String>) -> Notice {
        Notice {
            ok: true,
            text: text.into(),
        }
    }
    pub fn error(e: &HubError) -> Notice {
        Notice {
            ok: false,
            text: e.to_string(),
        }
    }
}

/// A page with the status of `e` (404 for a missing device, 401 for a refused right, …).
pub fn error_page(signed: &Signed, e: &HubError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        page(
            signed,
            "Not possible",
            html! { p.notice.error { (e.to_string()) } },
        ),
    )
        .into_response()
}

/// Who is signed in, as an overview shows it: the policy (`kind`, e.g. "shared access
/// policy") with its connection string (`label`), the key hidden unless `reveal` (the page
/// `here` shows it with `?reveal=key`); or the bearer token's principal and roles.
pub fn signed_in_as(
    principal: &Principal,
    host: &str,
    (kind, label): (&str, &str),
    here: &str,
    reveal: bool,
) -> Markup {
    let Principal::Policy { name, .. } = principal else {
        return html! { p #signed-in-as { "Signed in with an access token as " b { (principal.who()) } "." } };
    };
    html! {
        p #signed-in-as { "Signed in as the " (kind) " " b { (name) } "." }
        p {
            (label) ": "
            @if reveal {
                code.secret #connection-string { (principal.connection_string(host).unwrap_or_default()) }
                " " a href=(here) { "Hide" }
            } @else {
                code { "HostName=" (host) ";SharedAccessKeyName=" (name) ";SharedAccessKey=" }
                (secret("", false))
                " " a href={ (here) "?reveal=key" } { "Show" }
            }
        }
    }
}

/// `s` with its characters escaped for a URL path segment.
pub fn segment(s: &str) -> String {
    ironhub_auth::sas::url_encode(s)
}

/// A secret shown as dots unless `reveal`.
pub fn secret(value: &str, reveal: bool) -> Markup {
    html! {
        @if reveal { code.secret { (value) } } @else { code.masked { "••••••••••••" } }
    }
}

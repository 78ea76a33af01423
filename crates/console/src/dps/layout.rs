//! The frame of the DPS pages: their navigation (and the way back to the hub's pages), and
//! the page of a refusal.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ironhub_dps::DpsError;
use maud::{Markup, html};

use super::access::SignedDps;
use crate::layout::{Nav, Notice, framed};

/// A DPS page with the DPS navigation, for a signed-in DPS session.
pub fn page(signed: &SignedDps, title: &str, body: Markup) -> Markup {
    let brand = format!("DPS {}", signed.dps.id_scope());
    let who = signed.principal.who();
    let nav = Nav {
        brand: ("/console/dps", &brand),
        links: &[
            ("/console/dps", "Overview"),
            ("/console/dps/enrollments", "Enrollments"),
            ("/console/dps/groups", "Groups"),
            ("/console/dps/certificates", "Certificates"),
            ("/console", "IoT hub"),
        ],
        sign_out: "/console/dps/signout",
        csrf: &signed.session.csrf,
        who: &who,
    };
    framed(&nav, title, body)
}

/// The hidden CSRF field every DPS form carries.
pub fn csrf(signed: &SignedDps) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.session.csrf); }
}

/// The notice of a DPS refusal.
pub fn refused(e: &DpsError) -> Notice {
    Notice {
        ok: false,
        text: e.to_string(),
    }
}

/// The HTTP status of a DPS refusal.
pub fn status_of(e: &DpsError) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A page with the status of `e` (404 for a missing enrollment, 401 for a refused right, …).
pub fn error_page(signed: &SignedDps, e: &DpsError) -> Response {
    (
        status_of(e),
        page(
            signed,
            "Not possible",
            html! { p.notice.error { (e.to_string()) } },
        ),
    )
        .into_response()
}

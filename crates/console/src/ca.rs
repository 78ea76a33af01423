//! The hub's CA certificate, downloadable: what a device (or any client) needs to trust the
//! server's TLS certificate.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use crate::access::Signed;

/// The download's path.
pub const PATH: &str = "/console/ca.pem";

/// `GET /console/ca.pem`: the PEM as an attachment, or 404 when the server's certificate was
/// brought (its CA is not the server's to give).
pub async fn download(signed: Signed) -> Response {
    match signed.hub.server_ca() {
        Some(pem) => (
            [
                (header::CONTENT_TYPE, "application/x-pem-file"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"ironhub-ca.pem\"",
                ),
            ],
            pem.to_owned(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            crate::frame::bare(
                "No CA certificate",
                "This server's TLS certificate was brought with --tls-cert: clients trust the CA that issued it.",
            ),
        )
            .into_response(),
    }
}

/// The overview's paragraph about the CA.
pub fn section(signed: &Signed) -> Markup {
    html! {
        @if signed.hub.server_ca().is_some() {
            p {
                "Devices and clients trust the server through its CA certificate: "
                a #ca-download href=(PATH) download="ironhub-ca.pem" { "Download ca.pem" }
            }
        } @else {
            p { "The server's TLS certificate was brought with --tls-cert: clients trust the CA that issued it." }
        }
    }
}

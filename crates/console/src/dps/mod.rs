//! The Device Provisioning Service's pages, under `/console/dps`: its ID scope and
//! endpoints, individual enrollments and enrollment groups (list, create, edit, delete), their
//! registration records, device keys derived from a group key, linked hubs (linked, weighted
//! and unlinked), and the DPS's
//! CA certificates.
//!
//! DPS checks its own shared access policies (`provisioningserviceowner`, …), not the hub's,
//! so these pages have their own sign-in and session ([`access`]): a DPS policy's cookie sits
//! beside the hub's, and each page acts with exactly that DPS policy's rights, asked of
//! `Dps::authorize_operation` as the DPS REST API asks it.

pub mod access;
mod certificates;
mod enrollments;
mod form;
pub(crate) mod layout;
mod linked_hubs;
mod overview;
mod registrations;

use axum::Router;
use axum::routing::{get, post};
use ironhub_dps::Dps;
use ironhub_dps::model::{EnrollmentGroup, IndividualEnrollment};
use ironhub_hub::Hub;

/// What the DPS pages need: the DPS instance, and the hub (its sign-in limit).
#[derive(Debug, Clone)]
pub struct DpsConsole {
    pub hub: Hub,
    pub dps: Dps,
}

/// The DPS pages' routes.
pub fn routes(hub: Hub, dps: Dps) -> Router {
    use enrollments as e;
    Router::new()
        .route("/console/dps", get(overview::show))
        .route("/console/dps/linked-hubs", post(overview::link))
        .route(
            "/console/dps/linked-hubs/{name}",
            post(overview::set_weight),
        )
        .route(
            "/console/dps/linked-hubs/{name}/delete",
            get(linked_hubs::confirm).post(overview::unlink),
        )
        .route(access::SIGN_IN, get(access::form).post(access::sign_in))
        .route("/console/dps/signout", post(access::sign_out))
        .route(
            "/console/dps/enrollments",
            get(e::list::<IndividualEnrollment>).post(e::create::<IndividualEnrollment>),
        )
        .route(
            "/console/dps/enrollments/{id}",
            get(e::show::<IndividualEnrollment>).post(e::update::<IndividualEnrollment>),
        )
        .route(
            "/console/dps/enrollments/{id}/delete",
            post(e::delete::<IndividualEnrollment>),
        )
        .route(
            "/console/dps/groups",
            get(e::list::<EnrollmentGroup>).post(e::create::<EnrollmentGroup>),
        )
        .route(
            "/console/dps/groups/{id}",
            get(e::show::<EnrollmentGroup>).post(e::update::<EnrollmentGroup>),
        )
        .route(
            "/console/dps/groups/{id}/delete",
            post(e::delete::<EnrollmentGroup>),
        )
        .route(
            "/console/dps/groups/{id}/device-key",
            post(registrations::device_key),
        )
        .route(
            "/console/dps/registrations/{id}/delete",
            post(registrations::delete),
        )
        .route(
            crate::certificates::DPS_PATH,
            get(certificates::list).post(certificates::upload),
        )
        .route("/console/dps/certificates/{name}", get(certificates::show))
        .route(
            "/console/dps/certificates/{name}/code",
            post(certificates::generate_code),
        )
        .route(
            "/console/dps/certificates/{name}/verify",
            post(certificates::verify),
        )
        .route(
            "/console/dps/certificates/{name}/delete",
            post(certificates::delete),
        )
        .with_state(DpsConsole { hub, dps })
}

/// A server without DPS: its pages say so.
pub fn absent() -> Router {
    Router::new().route(
        "/console/dps",
        get(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                crate::frame::bare(
                    "No Device Provisioning Service",
                    "This server runs no DPS instance.",
                ),
            )
        }),
    )
}

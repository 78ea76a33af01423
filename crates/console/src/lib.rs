//! ironhub's web console: server-rendered HTML pages (maud) on the HTTPS port, under
//! `/console` (and `/`, which leads there), so no IoT Hub or DPS REST path is shadowed.
//!
//! A person signs in with a shared access policy (its connection string, or its name and a
//! key) or a bearer token of the configured identity provider, and the console then acts as
//! exactly that principal ([`principal`]): every page and form asks the hub's own authorization (`Hub::authorize_operation`, as the REST API does) before it reads or
//! writes, and calls the same `Hub` methods the REST handlers call. The session is a sealed
//! cookie ([`session`]), so any node of a cluster serves any request. Pages, styles and the
//! one small script are compiled into the binary; nothing is fetched from elsewhere.

pub mod access;
mod ca;
mod certificates;
mod device;
mod devices;
pub mod dps;
mod frame;
pub mod layout;
mod live;
mod modules;
mod overview;
pub mod principal;
mod routes;
mod routes_edit;
pub mod session;
mod signin;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ironhub_hub::Hub;

/// The console's routes, with the hub as their state (a server without DPS).
pub fn routes(hub: Hub) -> Router {
    routes_with_dps(hub, None)
}

/// The console's routes: the hub's pages, and the DPS pages of `dps` (`/console/dps/…`).
pub fn routes_with_dps(hub: Hub, dps: Option<ironhub_dps::Dps>) -> Router {
    let dps_pages = match dps {
        Some(dps) => dps::routes(hub.clone(), dps),
        None => dps::absent(),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(overview::show))
        .route("/console/", get(overview::show))
        .route(ca::PATH, get(ca::download))
        .route(
            certificates::PATH,
            get(certificates::list).post(certificates::upload),
        )
        .route("/console/certificates/{name}", get(certificates::show))
        .route(
            "/console/certificates/{name}/code",
            post(certificates::generate_code),
        )
        .route(
            "/console/certificates/{name}/verify",
            post(certificates::verify),
        )
        .route(
            "/console/certificates/{name}/delete",
            post(certificates::delete),
        )
        .route("/console/telemetry", get(live::hub_page))
        .route("/console/telemetry/events", get(live::hub_events))
        .route(routes::PATH, get(routes::show))
        .route("/console/routes/test", post(routes::test))
        .route("/console/routes/route", post(routes_edit::save_route))
        .route(
            "/console/routes/route/delete",
            post(routes_edit::delete_route),
        )
        .route("/console/routes/endpoint", post(routes_edit::save_endpoint))
        .route(
            "/console/routes/endpoint/delete",
            post(routes_edit::delete_endpoint),
        )
        .route("/console/routes/fallback", post(routes_edit::save_fallback))
        .route(
            "/console/routes/enrichment",
            post(routes_edit::save_enrichment),
        )
        .route(
            "/console/routes/enrichment/delete",
            post(routes_edit::delete_enrichment),
        )
        .route("/console/signin", get(signin::form).post(signin::sign_in))
        .route("/console/signout", post(signin::sign_out))
        .route("/console/devices", get(devices::list).post(devices::create))
        .route("/console/devices/{id}", get(device::show))
        .route("/console/devices/{id}/status", post(device::set_status))
        .route("/console/devices/{id}/delete", post(device::delete))
        .route("/console/devices/{id}/twin", post(device::update_twin))
        .route("/console/devices/{id}/c2d", post(device::send_c2d))
        .route("/console/devices/{id}/method", post(device::invoke_method))
        .route("/console/devices/{id}/events", get(live::device_events))
        .route("/console/devices/{id}/modules", post(modules::create))
        .route("/console/devices/{id}/modules/{mid}", get(modules::show))
        .route(
            "/console/devices/{id}/modules/{mid}/twin",
            post(modules::update_twin),
        )
        .route(
            "/console/devices/{id}/modules/{mid}/delete",
            post(modules::delete),
        )
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .with_state(hub)
        .merge(dps_pages)
        .layer(middleware::map_response(protect))
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../assets/console.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The headers every console answer carries: no framing by other sites (clickjacking), no
/// script, style or form target but this server's, no MIME sniffing, and pages not cached.
async fn protect(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

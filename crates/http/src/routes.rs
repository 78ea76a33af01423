//! The routes of the HTTPS port composed in one place: each route file contributes its own
//! routes, and this puts them together under one state per service, with the fallbacks, the
//! `api-version` check and the DPS path normalization every request goes through.

use axum::Router;
use axum::extract::Request;
use axum::http::Uri;
use axum::middleware;
use axum::routing::get;
use ironhub_dps::Dps;
use ironhub_hub::Hub;
use tower::ServiceExt as _;

use crate::error::ApiError;
use crate::{
    api_version, body, c2d_api, certificates_api, configurations_api, digital_twin_api, dps_api,
    dps_device_api, events_api, file_upload_api, hub_api, import_export_api, jobs_api, modules_api,
    network_api, query_api, routing_api, websocket,
};

/// The whole HTTPS API: the hub's, and the DPS instance's when there is one.
pub fn router(hub: Hub, dps: Option<Dps>) -> Router {
    router_with_amqp(hub, dps, None)
}

/// [`router`] with AMQP over WebSocket on `/$iothub/websocket` and `/$servicebus/websocket`.
pub fn router_with_amqp(
    hub: Hub,
    dps: Option<Dps>,
    amqp: Option<ironhub_amqp::AmqpContext>,
) -> Router {
    let websocket = Router::new()
        .route(websocket::PATH, get(websocket::upgrade))
        .route(&format!("{}/", websocket::PATH), get(websocket::upgrade))
        .route(websocket::SERVICEBUS_PATH, get(websocket::upgrade))
        .route(
            &format!("{}/", websocket::SERVICEBUS_PATH),
            get(websocket::upgrade),
        )
        .with_state(websocket::Services {
            hub: hub.clone(),
            dps: dps.clone(),
            amqp,
        });
    let hub_routes = Router::new()
        .merge(hub_api::routes())
        .merge(modules_api::routes())
        .merge(configurations_api::routes())
        .merge(jobs_api::routes())
        .merge(import_export_api::routes())
        .merge(c2d_api::routes())
        .merge(digital_twin_api::routes())
        .merge(file_upload_api::routes())
        .merge(events_api::routes())
        .merge(query_api::routes())
        .merge(routing_api::routes())
        .merge(network_api::routes())
        .merge(certificates_api::routes::<Hub>());
    let health = crate::health_api::routes(hub.clone());
    // The web console (`/` and `/console/…`), behind the same network rules.
    // The console also reads the client's address (failed sign-ins are limited per address).
    let console = ironhub_console::routes_with_dps(hub.clone(), dps.clone())
        .layer(middleware::from_fn_with_state(
            hub.clone(),
            network_api::check,
        ))
        .layer(middleware::map_request(network_api::with_peer));
    let network_check = middleware::from_fn_with_state(hub.clone(), network_api::check);
    let network_hub = hub.clone();
    let mut app = hub_routes.with_state(hub).merge(websocket);
    if let Some(dps) = dps {
        app = app.merge(
            Router::new()
                .merge(dps_api::routes())
                .merge(certificates_api::routes::<Dps>())
                .merge(dps_device_api::routes())
                .merge(network_api::dps_routes(network_hub))
                .with_state(dps),
        );
    }
    let app = app
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .fallback(|uri: Uri| async move {
            ApiError::not_found(&format!("The resource '{}'", uri.path()))
        })
        .layer(middleware::from_fn(api_version::check_api_version))
        .layer(network_check)
        .layer(middleware::from_fn(body::linger));
    // The path is normalized before it is routed. The health routes take no `api-version`.
    health
        .merge(console)
        .fallback_service(app.map_request(normalize_path))
}

/// The hub's API alone (a server without DPS, and tests).
pub fn hub_router(hub: Hub) -> Router {
    router(hub, None)
}

/// DPS matches its path segments case-insensitively and ignores a trailing slash (Node
/// sends `/enrollmentgroups/{id}/attestationmechanism` and `/enrollments/`,
/// `docs/protocol/dps-service.md`, "Paths and headers"):
/// the fixed segments of DPS paths are rewritten to the case the routes use. Ids keep their
/// case, and the hub's paths are left alone.
fn normalize_path(mut request: Request) -> Request {
    let uri = request.uri();
    let path = uri.path();
    let mut segments: Vec<&str> = path.split('/').skip(1).collect();
    let canonical = |s: &str, names: &[&'static str]| -> Option<&'static str> {
        names.iter().copied().find(|n| n.eq_ignore_ascii_case(s))
    };
    let first = segments.first().copied().unwrap_or_default();
    let dps_service = canonical(
        first,
        &["enrollments", "enrollmentGroups", "registrations", "dps"],
    );
    let dps_device = segments
        .get(1)
        .and_then(|s| canonical(s, &["registrations"]))
        .filter(|_| dps_service.is_none() && segments.len() >= 3);
    if dps_service.is_none() && dps_device.is_none() {
        return request;
    }
    if segments.len() > 1 && segments.last().is_some_and(|s| s.is_empty()) {
        segments.pop();
    }
    let mut out: Vec<String> = segments.iter().map(|s| (*s).to_owned()).collect();
    if let Some(first) = dps_service {
        out[0] = first.to_owned();
        if first == "dps" {
            if let Some(s) = out.get_mut(1)
                && let Some(c) = canonical(s, &["certificates", "linkedHubs"])
            {
                *s = c.to_owned();
            }
            if let Some(s) = out.get_mut(3)
                && let Some(c) = canonical(
                    s,
                    &["generateVerificationCode", "verify", "verifyCertificate"],
                )
            {
                *s = c.to_owned();
            }
        } else if let Some(s) = out.get_mut(2)
            && let Some(c) = canonical(s, &["attestationmechanism", "query"])
        {
            *s = c.to_owned();
        } else if out.len() == 2
            && let Some(c) = canonical(&out[1], &["query"])
        {
            out[1] = c.to_owned();
        }
    } else {
        out[1] = "registrations".to_owned();
        if let Some(s) = out.get_mut(3)
            && let Some(c) = canonical(s, &["register", "operations"])
        {
            *s = c.to_owned();
        }
    }
    let mut rewritten = format!("/{}", out.join("/"));
    if let Some(q) = uri.query() {
        rewritten.push('?');
        rewritten.push_str(q);
    }
    if let Ok(new) = rewritten.parse::<Uri>() {
        *request.uri_mut() = new;
    }
    request
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn normalized(path: &str) -> String {
        let request = Request::builder()
            .uri(path)
            .body(Body::empty())
            .unwrap_or_default();
        normalize_path(request).uri().to_string()
    }

    #[test]
    fn dps_paths_ignore_case_and_trailing_slashes_and_keep_ids() {
        assert_eq!(
            normalized("/enrollmentgroups/My-Group/AttestationMechanism?api-version=2021-10-01"),
            "/enrollmentGroups/My-Group/attestationmechanism?api-version=2021-10-01"
        );
        assert_eq!(normalized("/enrollments/"), "/enrollments");
        assert_eq!(normalized("/Enrollments/Query"), "/enrollments/query");
        assert_eq!(
            normalized("/REGISTRATIONS/G1/query"),
            "/registrations/G1/query"
        );
        assert_eq!(
            normalized("/0ne000ABCD/Registrations/Reg-1/Register?api-version=2019-03-31"),
            "/0ne000ABCD/registrations/Reg-1/register?api-version=2019-03-31"
        );
        assert_eq!(
            normalized("/0ne000ABCD/registrations/r/operations/4.a.b"),
            "/0ne000ABCD/registrations/r/operations/4.a.b"
        );
        assert_eq!(
            normalized("/DPS/LinkedHubs/hub.example"),
            "/dps/linkedHubs/hub.example"
        );
        // The hub's paths are not touched.
        assert_eq!(normalized("/devices/"), "/devices/");
        assert_eq!(normalized("/Devices/Dev1"), "/Devices/Dev1");
        assert_eq!(normalized("/twins/d/methods"), "/twins/d/methods");
    }
}

//! The HTTPS adapter: a TLS listener that serves HTTP/1.1 (with upgrades, for MQTT over
//! WebSocket) and the Azure-compatible REST routers of the hub and of the Device Provisioning
//! Service. Handlers are thin: they parse the wire, call the domain, and render its answer
//! with Azure's status codes and error bodies.
//!
//! One host and port serve both services, as `docs/protocol/endpoints.md` lays out: the hub's
//! paths
//! (`/devices/…`, `/twins/…`), the DPS service API (`/enrollments…`, `/enrollmentGroups…`,
//! `/registrations/{id}…`), the DPS device API (`/{idScope}/registrations/{id}/…`) and MQTT
//! over WebSocket (`/$iothub/websocket`, hub and DPS alike) do not collide.

mod c2d_api;
mod certificates_api;
mod digital_twin_api;
mod dps_api;
mod dps_device_api;
mod error;
mod events_api;
mod extract;
mod file_upload_api;
mod hub_api;
mod listener;
mod paging;
mod query_api;
mod websocket;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::Uri;
use axum::middleware;
use axum::routing::get;
use ironhub_dps::Dps;
use ironhub_hub::Hub;
use tower::ServiceExt as _;

pub use dps_api::DpsApiError;
pub use error::ApiError;
pub use listener::{ConnectionInfo, serve_tls};

/// Largest request body accepted, in bytes (a bulk request of 100 devices fits easily).
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// The whole HTTPS API: the hub's, and the DPS instance's when there is one.
pub fn router(hub: Hub, dps: Option<Dps>) -> Router {
    let websocket = Router::new()
        .route(websocket::PATH, get(websocket::upgrade))
        .with_state(websocket::Services {
            hub: hub.clone(),
            dps: dps.clone(),
        });
    let mut app = hub_api::routes().with_state(hub).merge(websocket);
    if let Some(dps) = dps {
        app = app.merge(
            dps_api::routes()
                .merge(dps_device_api::routes())
                .with_state(dps),
        );
    }
    let app = app
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .fallback(|uri: Uri| async move {
            ApiError::not_found(&format!("The resource '{}'", uri.path()))
        })
        .layer(middleware::from_fn(hub_api::check_api_version));
    // The path is normalized before it is routed.
    Router::new().fallback_service(app.map_request(normalize_path))
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

/// A request body that could not be read within its limit.
#[derive(Debug)]
pub(crate) struct BodyTooLarge(usize);

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "The request body could not be read, or is larger than {} bytes.",
            self.0
        )
    }
}

/// The request body, at most [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(body: Body) -> Result<Bytes, BodyTooLarge> {
    read_body_within(body, MAX_BODY_BYTES).await
}

/// The request body, at most `limit` bytes.
pub(crate) async fn read_body_within(body: Body, limit: usize) -> Result<Bytes, BodyTooLarge> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| BodyTooLarge(limit))
}

#[cfg(test)]
mod tests {
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

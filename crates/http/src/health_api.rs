//! `/health/live` and `/health/ready` for load balancers and orchestrators: no
//! authentication, no `api-version`. Liveness answers 200 while the process serves; readiness
//! answers 200 when the store and the event log answer (`Hub::readiness`) and 503 with what
//! failed otherwise, and from the moment a drain begins. Served on the HTTPS port and, when
//! configured, on a plain-HTTP port of its own ([`serve_health`]).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use ironhub_hub::Hub;
use ironhub_hub::health::PROBE_TIMEOUT;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt as _;

/// The liveness path.
pub const LIVE_PATH: &str = "/health/live";
/// The readiness path.
pub const READY_PATH: &str = "/health/ready";

/// The two health routes.
pub(crate) fn routes(hub: Hub) -> Router {
    Router::new()
        .route(LIVE_PATH, get(live))
        .route(READY_PATH, get(ready))
        .with_state(hub)
}

async fn live() -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "live"})),
    )
        .into_response()
}

async fn ready(State(hub): State<Hub>) -> Response {
    let readiness = hub.readiness(PROBE_TIMEOUT).await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Never cached: a load balancer must see a drain at once.
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(readiness),
    )
        .into_response()
}

/// Serves the health routes over plain HTTP on `listener` until `shutdown` (anything else is
/// 404), each connection in a task of its own.
pub async fn serve_health(listener: TcpListener, hub: Hub, shutdown: watch::Receiver<bool>) {
    serve_plain(listener, routes(hub), shutdown).await;
}

/// Serves `app` over plain HTTP on `listener` until `shutdown` (anything else is 404), each
/// connection in a task of its own.
pub(crate) async fn serve_plain(
    listener: TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = app.fallback(|| async { StatusCode::NOT_FOUND });
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "plain HTTP listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                app.clone().oneshot(request)
            });
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service);
            let _ = connection.await;
        });
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
}

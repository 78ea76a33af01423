//! `GET /metrics`: this node's metrics in Prometheus's text format (OpenMetrics 1.0), on a
//! plain-HTTP address of its own (`--metrics-listen`), never on the HTTPS port. The gauges the
//! store holds (connected and total devices, consumer group lag) are read at each scrape.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ironhub_hub::Hub;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The metrics path.
pub const METRICS_PATH: &str = "/metrics";

/// OpenMetrics' content type, which Prometheus asks for and parses.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn scrape(State(hub): State<Hub>) -> Response {
    if let Err(e) = hub.refresh_metrics().await {
        // The counters still answer; the store's gauges keep their last values.
        tracing::warn!(error = %e, "metrics: could not read the store's figures");
    }
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        ironhub_observe::metrics().encode(),
    )
        .into_response()
}

/// Serves `/metrics` over plain HTTP on `listener` until `shutdown` (anything else is 404).
pub async fn serve_metrics(listener: TcpListener, hub: Hub, shutdown: watch::Receiver<bool>) {
    let app = Router::new()
        .route(METRICS_PATH, get(scrape))
        .with_state(hub);
    crate::health_api::serve_plain(listener, app, shutdown).await;
}

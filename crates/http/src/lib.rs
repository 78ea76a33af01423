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
//!
//! Layout: `routes` composes the routes of the route files (`*_api.rs`, `websocket`); those
//! share the extractors of `auth` (credentials), `extract` (path ids, query strings) and `body`
//! (the one body reader), the answers of `respond` and the error shapes of `error` and
//! `service`, and import nothing from each other.

mod api_version;
mod auth;
mod body;
mod c2d_api;
mod certificates_api;
mod configurations_api;
mod digital_twin_api;
mod dps_api;
mod dps_device_api;
mod edge_auth;
mod error;
mod events_api;
mod extract;
mod file_upload_api;
mod health_api;
mod hub_api;
mod import_export_api;
mod jobs_api;
mod listener;
mod method_caller;
mod metrics_api;
mod modules_api;
mod network_api;
mod paging;
mod query_api;
mod respond;
mod routes;
mod routing_api;
mod service;
mod websocket;

pub use body::MAX_BODY_BYTES;
pub use error::{ApiError, DpsApiError};
pub use health_api::{LIVE_PATH, READY_PATH, serve_health};
pub use listener::{ConnectionInfo, ReadTimeouts, serve_tls};
pub use metrics_api::{METRICS_PATH, serve_metrics};
pub use routes::{hub_router, router, router_with_amqp};

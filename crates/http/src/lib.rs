//! The HTTPS adapter: a TLS listener that serves HTTP/1.1 (with upgrades, for MQTT over
//! WebSocket later) and the Azure-compatible REST routers. Handlers are thin: they parse the
//! wire, call the domain, and render its answer with Azure's status codes and error bodies.

mod c2d_api;
mod certificates_api;
mod error;
mod events_api;
mod extract;
mod hub_api;
mod listener;
mod websocket;

pub use error::ApiError;
pub use hub_api::router as hub_router;
pub use listener::{ConnectionInfo, serve_tls};

/// Largest request body accepted, in bytes (a bulk request of 100 devices fits easily).
pub const MAX_BODY_BYTES: usize = 512 * 1024;

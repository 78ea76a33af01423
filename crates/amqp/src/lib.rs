//! IoT Hub's AMQP 1.0 endpoint over any byte stream (TLS on 5671): SASL, claims-based
//! security (`$cbs`), the service side of cloud-to-device messaging (send and feedback) and
//! file upload notifications, the Event Hubs-compatible built-in endpoint (`$management` and
//! the partition receivers) that Event Hubs clients read telemetry from, and devices' and
//! modules' own links (telemetry, cloud-to-device, twin, methods) as the device SDKs' AMQP
//! transports use them, and DPS's device registration API as the provisioning SDKs' AMQP
//! transports use it.
//!
//! A thin adapter on fe2o3-amqp's listener side: it parses addresses, filters and request
//! messages, calls [`Hub`], and renders the answer as IoT Hub and Event Hubs do. Who may do
//! what is the domain's decision ([`Hub::authorize_service_token`], [`Hub::grant_covers`]).

mod address;
mod c2d;
mod claims;
mod connection;
mod context;
mod device;
mod device_links;
mod device_messages;
mod errors;
mod eventhub;
mod frame_check;
mod links;
mod message;
mod padding;
mod provisioning;
mod registration_login;
mod replay;
mod requests;
mod sasl;
mod sasl_tpm;
mod service_bound;
#[cfg(test)]
mod testing;

use std::net::SocketAddr;

pub use context::AmqpContext;
#[cfg(doc)]
use ironhub_hub::Hub;
use tokio::io::{AsyncRead, AsyncWrite};

/// Serves one AMQP connection until the peer closes it or it fails. `certificates` is the
/// TLS client certificate chain (DER, leaf first; empty when none was sent): X.509 devices
/// authenticate with it.
pub async fn serve<Io>(stream: Io, peer: SocketAddr, certificates: Vec<Vec<u8>>, ctx: AmqpContext)
where
    Io: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    connection::serve(stream, peer, certificates, ctx).await;
}

//! What the transport knows about a connection, and the limits every MQTT session shares.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ironhub_dps::Dps;
use ironhub_hub::Hub;
use ironhub_hub::network::Peer;

/// IoT Hub's largest keep-alive; the server waits 1.5 times the keep-alive.
const MAX_KEEP_ALIVE_SECS: u64 = 1177;

/// What the transport knows about a connection.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    pub hub: Hub,
    /// The Device Provisioning Service on the same endpoint, if the server has one (shared:
    /// every connection's future holds its context, so a pointer rather than the service's
    /// dozen fields).
    pub dps: Option<Arc<Dps>>,
    pub peer: SocketAddr,
    /// The TLS client certificate chain (DER, leaf first); empty when none was sent.
    pub client_certificates: Arc<Vec<Vec<u8>>>,
    /// Whether it came through a listener named a private endpoint.
    pub private_endpoint: bool,
}

impl ConnectionContext {
    /// The peer as the network rules see it.
    pub(crate) fn network_peer(&self) -> Peer {
        Peer {
            ip: self.peer.ip(),
            private_endpoint: self.private_endpoint,
        }
    }
}

/// How long a session waits for a packet: 1.5 times the CONNECT's keep-alive, which is capped
/// at IoT Hub's largest (and taken as that largest when 0).
pub(crate) fn idle_timeout(keep_alive: u16) -> Duration {
    let secs = match u64::from(keep_alive) {
        0 => MAX_KEEP_ALIVE_SECS,
        k => k.min(MAX_KEEP_ALIVE_SECS),
    };
    Duration::from_millis(secs * 1500)
}

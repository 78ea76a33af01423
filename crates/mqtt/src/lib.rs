//! IoT Hub's and DPS's device endpoints over MQTT 3.1.1, over any byte stream (TLS on 8883, or
//! a WebSocket on 443): CONNECT with IoT Hub's username, SAS and X.509 rules; IoT Hub's topic
//! set for telemetry, twins and methods; persistent sessions; Will messages; and DPS's
//! registration topics. Every decision is the domains'; this crate speaks the wire.
//!
//! Read top to bottom: `framing` (packets on a byte stream) → `connection` (CONNECT, then
//! DPS or IoT Hub by the username) → `dps_session`, or `hub_connection` (admission and the
//! I/O loop) driving `hub_session` (the IoT Hub session without a socket: inputs in, packets
//! out). `topics` and `username` are the grammar; `credentials` the certificate topics.
//!
//! The packet codec is `rumqttc`'s `mqttbytes` (MQTT 3.1.1).

mod connection;
mod context;
mod credentials;
mod dps_session;
mod framing;
mod hub_connection;
mod hub_session;
pub mod topics;
pub mod username;

pub use connection::serve;
pub use context::ConnectionContext;
pub use framing::{ConnError, read_packet, read_packet_up_to};

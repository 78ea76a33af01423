//! IoT Hub's and DPS's device endpoints over MQTT 3.1.1, over any byte stream (TLS on 8883, or
//! a WebSocket on 443): CONNECT with IoT Hub's username, SAS and X.509 rules; IoT Hub's topic
//! set for telemetry, twins and methods; persistent sessions; Will messages; and DPS's
//! registration topics (`provisioning`). Every decision is the domains'; this crate speaks
//! the wire.
//!
//! The packet codec is `rumqttc`'s `mqttbytes` (MQTT 3.1.1).

mod credentials;
mod provisioning;
mod session;
pub mod topics;
pub mod username;

pub use session::{ConnectionContext, serve};

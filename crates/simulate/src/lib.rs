//! The fleet simulator behind `ironhub simulate`: N devices over MQTT (pre-created in the
//! registry, provisioned through DPS with an enrollment group's key, or plain MQTT clients of
//! any broker) that connect at a given rate, send telemetry at a given rate, size and QoS,
//! update reported properties, complete cloud-to-device messages and answer direct methods,
//! for a duration or a number of messages. It measures connects and messages per second, the
//! latency from a publish to its PUBACK and to the moment the hub's event stream delivers it
//! (HDR histograms), and counts errors by kind.
//!
//! - `net`: connections from many source addresses, TLS, MQTT packets;
//! - `device`: one device's session; `provision`: DPS over MQTT;
//! - `config`: what a run is asked; `run`: a run from start to report; `phase`: connect timing;
//! - `events`: the event-stream reader; `stats` and `progress`: what is counted and shown.

pub mod config;
pub mod device;
pub mod events;
pub mod net;
pub mod phase;
pub mod progress;
pub mod provision;
pub mod run;
pub mod stats;

pub use config::{Config, Fleet, MQTT_PORT};
pub use net::{Dialer, parse_sources, tls_config};
pub use progress::Progress;
pub use provision::Dps;
pub use run::{prepare_devices, run};
pub use stats::{Report, Stats};

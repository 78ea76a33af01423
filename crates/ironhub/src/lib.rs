//! The `ironhub` binary's library: configuration, server wiring, the data-directory identity
//! and the az-style CLI. `main.rs` only dispatches; tests start servers through [`serve::start`].

mod amqp_listener;
mod amqp_plain;
pub mod cli;
mod cluster;
pub mod config;
pub mod data_lock;
pub mod endpoint_pumps;
mod file_upload;
mod frame_limits;
pub mod hub_move;
pub mod hub_move_runtime;
pub mod hub_move_tally;
pub mod identity;
mod issuer;
mod linked_hubs;
mod monitoring;
mod mqtt_listener;
mod nats;
pub mod netpolicy;
pub mod serve;
pub mod service_auth;
mod throttling;

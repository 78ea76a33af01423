//! The az-style CLI. It talks to a hub only through the Azure-compatible REST API, so it works
//! against a real Azure IoT Hub too.

pub mod c2d;
mod certificate;
mod consumer_group;
mod device;
pub mod hub;
mod login;
mod monitor;
mod output;
mod sas;
mod twin;

//! The az-style CLI. It talks to a hub only through the Azure-compatible REST API, so it works
//! against a real Azure IoT Hub too.

pub mod c2d;
mod device;
pub mod hub;
mod login;
mod output;
mod sas;
mod twin;

//! The az-style CLI. It talks to a hub (and a DPS instance) only through the Azure-compatible
//! REST API, so it works against a real Azure IoT Hub (and DPS) too.

pub mod c2d;
mod certificate;
mod consumer_group;
mod device;
mod digital_twin;
pub mod dps;
mod enrollment;
pub mod hub;
mod linked_hub;
mod login;
mod monitor;
mod output;
mod parentage;
mod query;
mod renew_key;
mod sas;
mod twin;
mod upload_file;

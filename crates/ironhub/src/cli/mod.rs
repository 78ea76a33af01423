//! The az-style CLI. It talks to a hub only through the Azure-compatible REST API, so it works
//! against a real Azure IoT Hub too.

pub mod hub;

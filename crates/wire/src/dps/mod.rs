//! The DPS JSON shapes: the service API as the service SDKs send and parse it
//! (`azure-iot-deviceprovisioning`, npm `azure-iot-provisioning-service`; api-version
//! 2021-10-01), and the device registration API's request and answers.
//!
//! Unknown fields are ignored and absent optional fields are left out of what is written, so a
//! client can send back what it read (the Node SDK's enrollment samples update the object the
//! service returned; see `docs/protocol/dps-json.md`).

mod attestation;
mod custom_allocation;
mod enrollment;
mod linked_hub;
mod operations;
mod registration;

pub use attestation::*;
pub use custom_allocation::*;
pub use enrollment::*;
pub use linked_hub::*;
pub use operations::*;
pub use registration::*;

pub use crate::time;

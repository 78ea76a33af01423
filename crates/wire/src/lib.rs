//! The JSON shapes of Azure IoT Hub and the Device Provisioning Service, typed once and shared
//! by everything that speaks them: the server's HTTP adapter and domains, `ironhub-client`,
//! the CLI, and the DPS→hub registry seam.
//!
//! - [`hub`]: the IoT Hub service REST API (devices, twins, bulk registry operations,
//!   cloud-to-device purge and feedback, direct methods, statistics).
//! - [`dps`]: the DPS service API (enrollments, groups, registration states, linked hubs,
//!   bulk operations) and the DPS device API (register request, operation status).
//! - [`certificate`]: CA certificates, in the shape both services use.
//! - [`error`]: the error bodies both services answer with.
//! - [`network`]: IP filter rules and public network access, as ARM writes them.
//!
//! Where a field is passed through untouched (twin property documents, initial twins, custom
//! allocation payloads, method payloads) its type is a `serde_json` map or value and its
//! documentation says so: nothing in this crate interprets it.
//!
//! The crate holds shapes only (serde derives, defaults, renames); the rules about them
//! live in the domains (`ironhub-hub`, `ironhub-dps`).

pub mod certificate;
pub mod dps;
pub mod error;
pub mod hub;
pub mod network;
pub mod time;

/// A JSON object passed through untouched.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// A `serialize_with` for a field the server has always written with the keys of its objects
/// in order (it went through a `serde_json::Value`, whose maps are sorted), while the same
/// type elsewhere is written in field order: keeps both outputs as they were.
pub(crate) fn keys_in_order<T: serde::Serialize, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::Serialize as _;
    serde_json::to_value(value)
        .map_err(serde::ser::Error::custom)?
        .serialize(serializer)
}

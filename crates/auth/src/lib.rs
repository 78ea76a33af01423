//! Authentication primitives shared by IoT Hub and DPS: SAS tokens, shared access policies,
//! key generation and derivation, connection strings, X.509 thumbprints and CA chains, bearer
//! tokens from an OpenID Connect issuer, and the data-plane roles and operations they are
//! checked against.
//!
//! Everything here is pure (no I/O: an issuer's keys come through [`oidc::KeySource`]); the hub and DPS domains decide which keys apply.

pub mod access;
pub mod b64;
mod clock;
pub mod connstr;
pub mod credentials;
pub mod keys;
pub mod oidc;
pub mod policy;
pub mod roles;
pub mod sas;
pub mod storage;
pub mod x509;

pub use clock::unix_now;
pub use connstr::{ConnectionString, ConnectionStringError};
pub use credentials::Credentials;
pub use keys::{
    KeyError, ThumbprintError, derive_device_key, generate_key, normalize_thumbprint, random_bytes,
    random_uuid, thumbprints, uuid_text, validate_key,
};
pub use policy::{Rights, SharedAccessPolicy, default_hub_policies};
pub use sas::{
    MAX_TOKEN_LIFETIME, SasError, SasToken, resource_covers, resource_covers_ignoring_case,
    resource_is, resource_is_ignoring_case, time_left,
};
pub use x509::{CertificateError, CertificateInfo};

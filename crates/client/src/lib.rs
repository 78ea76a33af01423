//! A small async HTTPS client for the Azure IoT Hub registry REST API and the Device
//! Provisioning Service's service API ([`DpsClient`]).
//!
//! It speaks to any hub the way the Azure service SDKs do: `https://{HostName}`, every request
//! signed with a shared access signature made from a service connection string, and
//! `?api-version=2021-04-12` on every path (`2021-10-01` for DPS). The same client reaches an
//! ironhub server or a real Azure IoT Hub; the CLI, the DPS (for remote linked hubs) and tests
//! use it. Requests and answers are the typed shapes of `ironhub-wire`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ironhub_client::ClientError> {
//! use ironhub_auth::ConnectionString;
//! let cs = ConnectionString::parse(
//!     "HostName=myhub.example;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0",
//! ).map_err(|e| ironhub_client::ClientError::ConnectionString(e.to_string()))?;
//! let hub = ironhub_client::HubClient::new(cs, &[])?;
//! let device = hub.get_device("d1").await?;
//! println!("{}", device.etag);
//! # Ok(()) }
//! ```

mod blob;
mod digital_twin;
mod document;
mod dps;
mod error;
mod file_upload;
mod hub;
mod lines;
mod network;
mod query;
mod routing;
mod tls;
mod web;

pub use digital_twin::Command;
pub use dps::{DPS_API_VERSION, DpsClient, EnrollmentKind};
pub use error::{ClientError, parse_service_error};
pub use file_upload::LockedFileNotification;
pub use hub::{
    API_VERSION, C2dMessage, Certificates, FeedbackBatch, HubClient, NO_BODY, RawResponse,
    TOKEN_VALIDITY_SECS, consumer_group_path, device_path, encode_property_name, host_without_port,
    twin_path,
};
pub(crate) use hub::{REQUEST_TIMEOUT, header_value, quote_etag};
pub use lines::LineStream;
pub use web::{StorageResponse, WebClient};

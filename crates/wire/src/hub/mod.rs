//! The IoT Hub service REST API's JSON (api-version 2021-04-12), as the service SDKs
//! (`azure-iot-hub`, npm `azure-iothub`) and the Azure CLI send and parse it.

mod bulk;
mod configuration;
mod credentials;
mod device;
mod endpoint_health;
mod events;
mod file_upload;
mod import_export;
mod jobs;
mod keys;
mod messaging;
mod module;
mod routing;
mod statistics;
mod twin;

pub use bulk::{BulkError, BulkResult, ExportImportDevice};
pub use configuration::{Configuration, ConfigurationContent, ConfigurationMetrics};
pub use credentials::{
    CredentialErrorBody, CredentialErrorInfo, IssueCertificateAccepted, IssueCertificateRequest,
    IssuedCertificate,
};
pub use device::{
    AuthType, Authentication, AuthenticationSpec, Capabilities, CapabilitiesSpec, ConnectionState,
    Device, DeviceSpec, DeviceStatus, SymmetricKey, SymmetricKeySpec, Thumbprint, ThumbprintSpec,
};
pub use endpoint_health::{EndpointHealth, EndpointHealthList, EndpointHealthStatus, arm_time};
pub use events::{ConsumerGroupName, ConsumerGroupView, EventsProperties, PartitionView};
pub use file_upload::{FileNotification, FileUploadCompletion, FileUploadInfo, FileUploadRequest};
pub use import_export::{ImportError, ImportExportJob, ImportTwinProperties};
pub use jobs::{
    DeviceJob, DeviceJobError, DeviceJobOutcome, DeviceJobStatistics, JobRequest, JobResponse,
};
pub use keys::{
    RegenerateError, RegenerateRequest, RegenerateResult, RegenerateTarget, RotatedKeys,
};
pub use messaging::{FeedbackRecord, FeedbackStatus, MethodRequest, MethodResult, PurgeResult};
pub use module::{Module, ModuleSpec};
pub use routing::{
    BUILT_IN_ENDPOINT, CompilationError, Endpoints, Enrichment, ErrorPosition, ErrorRange,
    FALLBACK_ROUTE, MatchedRoute, Route, RoutingConfig, RoutingSource, StreamEndpoint,
    TestAllRoutesInput, TestAllRoutesResult, TestMessage, TestOutcome, TestRouteDetails,
    TestRouteInput, TestRouteResult,
};
pub use statistics::{RegistryStatistics, ServiceStatistics};
pub use twin::{Twin, TwinPatch, TwinPatchProperties, TwinProperties};

/// The body of `POST /devices/query` (`{"query": "SELECT …"}`): the same shape as DPS's
/// query requests.
pub use crate::dps::QuerySpecification;

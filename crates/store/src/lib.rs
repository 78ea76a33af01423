//! The ports that carry all shared state (see `DESIGN.md`): the records and one async trait
//! per concern — registry, modules, module input queues, twins, MQTT sessions, cloud-to-device queues, certificates, DPS
//! records, the routing document, the configurations, the scheduled jobs, exclusive readers' claims ([`Store`] bundles them), the event log and its named
//! streams, the device bus and the clock — with the
//! cloud-to-device transition rules every engine applies ([`c2d_rules`]). Engines live in
//! their own crates (`ironhub-embedded`: SQLite and in-process); the `testkit` feature holds
//! the conformance suite each of them must pass.
//!
//! Writes are compare-and-swap on the record's etag, so that several server nodes can share
//! one store without a lock held across requests.

pub mod bus;
mod c2d;
pub mod c2d_rules;
mod certificates;
mod clock;
mod configurations;
mod dps;
mod dps_records;
mod error;
pub mod eventlog;
mod file_notifications;
mod jobs;
mod module_inputs;
mod modules;
mod moving;
mod network;
mod rates;
mod reader_claims;
mod records;
mod registry;
mod routing;
mod sessions;
pub mod streams;
mod timed;
// A test suite: its cases assert with `unwrap`, as tests do.
#[cfg(feature = "testkit")]
#[allow(clippy::unwrap_used)]
pub mod testkit;
mod twins;

pub use bus::{
    Attachment, BusError, BusMessage, DeviceBus, InputMessage, LOCAL_NODE, MethodCall,
    MethodResponse, PendingCalls,
};
pub use c2d::C2dStore;
pub use certificates::CertificateStore;
pub use clock::{Clock, ManualClock, SystemClock};
pub use configurations::{ConfigurationRecord, ConfigurationStore, ConfigurationWrite};
pub use dps::DpsStore;
pub use dps_records::*;
pub use error::{Result, StoreError, failure_message};
pub use eventlog::{Event, EventLog, NewEvent, PartitionBounds, Retention, StartPosition};
pub use file_notifications::{
    FileNotification, FileNotificationRules, FileNotificationStore, LockedFileNotification,
};
pub use jobs::{JobDeviceRecord, JobRecord, JobStore};
pub use module_inputs::{ModuleInputStore, QueuedInput};
pub use modules::{ModuleStore, ModuleTwin};
pub use moving::{MoveStore, QueuedDoc, ServiceQueue};
pub use network::{NetworkRulesRecord, NetworkRulesStore, NetworkScope};
pub use rates::{RateWindows, WindowCount};
pub use reader_claims::{ClaimOutcome, ReaderClaim, ReaderClaimStore};
pub use records::*;
pub use registry::RegistryStore;
pub use routing::{EndpointHealth, EndpointHealthStatus, RoutingRecord, RoutingStore};
pub use sessions::SessionStore;
pub use streams::EventStreams;
pub use timed::{CallObserver, TimedStore};
pub use twins::{
    AggregateOp, DeviceField, DeviceTwin, ScanCondition, ScanOp, TwinAggregate, TwinField,
    TwinGroup, TwinScan, TwinStore, TwinTop,
};

/// The ports' traits, to call their methods on a concrete engine (`use ironhub_store::prelude::*`).
pub mod prelude {
    pub use crate::{
        C2dStore as _, CertificateStore as _, ConfigurationStore as _, DeviceBus as _,
        DpsStore as _, EventLog as _, FileNotificationStore as _, JobStore as _,
        ModuleInputStore as _, ModuleStore as _, MoveStore as _, NetworkRulesStore as _,
        RateWindows as _, ReaderClaimStore as _, RegistryStore as _, RoutingStore as _,
        SessionStore as _, TwinStore as _,
    };
}

/// Every durable port of a hub and DPS instance together, for code that needs several (an
/// engine implements each port; this is implemented for it). Every acknowledged write
/// survives a crash.
pub trait Store:
    RegistryStore
    + ModuleStore
    + ModuleInputStore
    + TwinStore
    + SessionStore
    + MoveStore
    + C2dStore
    + CertificateStore
    + DpsStore
    + FileNotificationStore
    + RoutingStore
    + NetworkRulesStore
    + ConfigurationStore
    + JobStore
    + ReaderClaimStore
    + std::fmt::Debug
    + 'static
{
}

impl<T> Store for T where
    T: RegistryStore
        + ModuleStore
        + ModuleInputStore
        + TwinStore
        + SessionStore
        + MoveStore
        + C2dStore
        + CertificateStore
        + DpsStore
        + FileNotificationStore
        + RoutingStore
        + NetworkRulesStore
        + ConfigurationStore
        + JobStore
        + ReaderClaimStore
        + std::fmt::Debug
        + 'static
{
}

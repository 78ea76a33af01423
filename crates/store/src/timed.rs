//! A store that times its calls: every port's call is passed to the store it wraps and its
//! duration, with the port's name (`registry`, `twins`, `c2d`, …), handed to an observer (the
//! server's store latency histogram). Any engine can be wrapped; the rules stay the engine's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::bus::InputMessage;
use crate::c2d::C2dStore;
use crate::certificates::CertificateStore;
use crate::configurations::{ConfigurationRecord, ConfigurationStore, ConfigurationWrite};
use crate::dps::DpsStore;
use crate::dps_records::{
    DpsBatchResult, DpsCollection, DpsRecord, DpsSettings, DpsWrite, JointResult, RegistrationBegun,
};
use crate::error::Result;
use crate::file_notifications::{
    FileNotification, FileNotificationRules, FileNotificationStore, LockedFileNotification,
};
use crate::module_inputs::{ModuleInputStore, QueuedInput};
use crate::modules::{ModuleStore, ModuleTwin};
use crate::moving::{MoveStore, QueuedDoc, ServiceQueue};
use crate::network::{NetworkRulesRecord, NetworkRulesStore, NetworkScope};
use crate::records::{
    BatchResult, C2dMessage, C2dRefusal, C2dRules, C2dSettle, CertificateRecord, CertificateScope,
    DeviceCounts, DeviceRecord, DeviceWrite, Endpoint, FeedbackBatch, HubSettings, ModuleRecord,
    ModuleWrite, RuntimeUpdate, TwinRecord, WriteConflict,
};
use crate::registry::RegistryStore;
use crate::routing::{EndpointHealth, RoutingRecord, RoutingStore};
use crate::sessions::SessionStore;
use crate::twins::{DeviceTwin, TwinAggregate, TwinGroup, TwinScan, TwinStore, TwinTop};

/// What [`TimedStore`] tells about each call: the port and how long the call took.
pub type CallObserver = fn(&'static str, Duration);

/// A store (every port `S` implements) that reports how long each call to `S` took.
#[derive(Debug)]
pub struct TimedStore<S: ?Sized> {
    inner: Arc<S>,
    observer: CallObserver,
}

impl<S: ?Sized> TimedStore<S> {
    /// Wraps `inner`, telling `observer` about every call.
    pub fn new(inner: Arc<S>, observer: CallObserver) -> Self {
        TimedStore { inner, observer }
    }
}

/// Calls the wrapped store's method and reports its duration under `$port`.
macro_rules! timed {
    ($self:ident, $port:literal, $method:ident ( $($arg:expr),* )) => {{
        let started = Instant::now();
        let result = $self.inner.$method($($arg),*).await;
        ($self.observer)($port, started.elapsed());
        result
    }};
}

#[async_trait]
impl<S: RegistryStore + ?Sized> RegistryStore for TimedStore<S> {
    async fn hub_settings_or_init(&self, init: HubSettings) -> Result<HubSettings> {
        timed!(self, "registry", hub_settings_or_init(init))
    }
    async fn hub_settings(&self) -> Result<Option<HubSettings>> {
        timed!(self, "registry", hub_settings())
    }
    async fn set_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        timed!(self, "registry", set_endpoint(endpoint))
    }
    async fn endpoint(&self) -> Result<Option<Endpoint>> {
        timed!(self, "registry", endpoint())
    }
    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>> {
        timed!(self, "registry", get_device(id))
    }
    async fn list_devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<DeviceRecord>> {
        timed!(self, "registry", list_devices(after, limit))
    }
    async fn device_counts(&self) -> Result<DeviceCounts> {
        timed!(self, "registry", device_counts())
    }
    async fn update_device_runtime(&self, id: &str, update: RuntimeUpdate) -> Result<bool> {
        timed!(self, "registry", update_device_runtime(id, update))
    }
    async fn disconnect_node(&self, node: &str) -> Result<u64> {
        timed!(self, "registry", disconnect_node(node))
    }
    async fn node_heartbeat(&self, node: &str, until: DateTime<Utc>) -> Result<()> {
        timed!(self, "registry", node_heartbeat(node, until))
    }
    async fn expired_nodes(&self, now: DateTime<Utc>) -> Result<Vec<String>> {
        timed!(self, "registry", expired_nodes(now))
    }
    async fn forget_node(&self, node: &str) -> Result<()> {
        timed!(self, "registry", forget_node(node))
    }
    async fn write_devices(&self, writes: Vec<DeviceWrite>) -> Result<BatchResult> {
        timed!(self, "registry", write_devices(writes))
    }
}

#[async_trait]
impl<S: ModuleInputStore + ?Sized> ModuleInputStore for TimedStore<S> {
    async fn input_enqueue(
        &self,
        device_id: &str,
        module_id: &str,
        message: &InputMessage,
        expiry_time: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        timed!(
            self,
            "module_inputs",
            input_enqueue(device_id, module_id, message, expiry_time)
        )
    }
    async fn input_pending(
        &self,
        device_id: &str,
        module_id: &str,
        after: u64,
        max: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<QueuedInput>> {
        timed!(
            self,
            "module_inputs",
            input_pending(device_id, module_id, after, max, now)
        )
    }
    async fn input_remove(
        &self,
        device_id: &str,
        module_id: &str,
        sequence_number: u64,
    ) -> Result<bool> {
        timed!(
            self,
            "module_inputs",
            input_remove(device_id, module_id, sequence_number)
        )
    }
    async fn input_expire(&self, now: DateTime<Utc>) -> Result<u64> {
        timed!(self, "module_inputs", input_expire(now))
    }
}

#[async_trait]
impl<S: ModuleStore + ?Sized> ModuleStore for TimedStore<S> {
    async fn get_module(&self, device_id: &str, module_id: &str) -> Result<Option<ModuleRecord>> {
        timed!(self, "modules", get_module(device_id, module_id))
    }
    async fn list_modules(&self, device_id: &str) -> Result<Vec<ModuleRecord>> {
        timed!(self, "modules", list_modules(device_id))
    }
    async fn write_module(
        &self,
        write: ModuleWrite,
    ) -> Result<std::result::Result<Option<ModuleRecord>, WriteConflict>> {
        timed!(self, "modules", write_module(write))
    }
    async fn update_module_runtime(
        &self,
        device_id: &str,
        module_id: &str,
        update: RuntimeUpdate,
    ) -> Result<bool> {
        timed!(
            self,
            "modules",
            update_module_runtime(device_id, module_id, update)
        )
    }
    async fn get_module_twin(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> Result<Option<TwinRecord>> {
        timed!(self, "modules", get_module_twin(device_id, module_id))
    }
    async fn put_module_twin(
        &self,
        module_id: &str,
        twin: TwinRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<TwinRecord, WriteConflict>> {
        timed!(self, "modules", put_module_twin(module_id, twin, if_match))
    }
    async fn scan_module_twins(
        &self,
        after: Option<(&str, Option<&str>)>,
        limit: usize,
    ) -> Result<Option<Vec<ModuleTwin>>> {
        timed!(self, "modules", scan_module_twins(after, limit))
    }
}

#[async_trait]
impl<S: TwinStore + ?Sized> TwinStore for TimedStore<S> {
    async fn get_twin(&self, device_id: &str) -> Result<Option<TwinRecord>> {
        timed!(self, "twins", get_twin(device_id))
    }
    async fn put_twin(
        &self,
        twin: TwinRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<TwinRecord, WriteConflict>> {
        timed!(self, "twins", put_twin(twin, if_match))
    }
    async fn scan_twins(&self, scan: &TwinScan) -> Result<Vec<DeviceTwin>> {
        timed!(self, "twins", scan_twins(scan))
    }
    async fn aggregate_twins(&self, request: &TwinAggregate) -> Result<Option<Vec<TwinGroup>>> {
        timed!(self, "twins", aggregate_twins(request))
    }
    async fn top_twins(&self, request: &TwinTop) -> Result<Option<Vec<DeviceTwin>>> {
        timed!(self, "twins", top_twins(request))
    }
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for TimedStore<S> {
    async fn mqtt_session(&self, client_id: &str) -> Result<Option<Vec<String>>> {
        timed!(self, "sessions", mqtt_session(client_id))
    }
    async fn set_mqtt_session(
        &self,
        client_id: &str,
        subscriptions: Option<Vec<String>>,
    ) -> Result<()> {
        timed!(self, "sessions", set_mqtt_session(client_id, subscriptions))
    }
}

#[async_trait]
impl<S: MoveStore + ?Sized> MoveStore for TimedStore<S> {
    async fn mqtt_sessions_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<String>)>> {
        timed!(self, "moving", mqtt_sessions_page(after, limit))
    }
    async fn queue_page(
        &self,
        queue: ServiceQueue,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<QueuedDoc>> {
        timed!(self, "moving", queue_page(queue, after, limit))
    }
    async fn queue_import(&self, queue: ServiceQueue, records: Vec<QueuedDoc>) -> Result<()> {
        timed!(self, "moving", queue_import(queue, records))
    }
}

#[async_trait]
impl<S: C2dStore + ?Sized> C2dStore for TimedStore<S> {
    async fn c2d_enqueue(
        &self,
        message: C2dMessage,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<C2dMessage, C2dRefusal>> {
        timed!(self, "c2d", c2d_enqueue(message, rules, now))
    }
    async fn c2d_queue(&self, device_id: &str) -> Result<Vec<C2dMessage>> {
        timed!(self, "c2d", c2d_queue(device_id))
    }
    async fn c2d_import(
        &self,
        message: C2dMessage,
    ) -> Result<std::result::Result<C2dMessage, C2dRefusal>> {
        timed!(self, "c2d", c2d_import(message))
    }
    async fn c2d_lock_next(
        &self,
        device_id: &str,
        node: &str,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<Option<C2dMessage>> {
        timed!(self, "c2d", c2d_lock_next(device_id, node, rules, now))
    }
    async fn c2d_settle(
        &self,
        device_id: &str,
        lock_token: &str,
        settle: C2dSettle,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<Option<C2dMessage>> {
        timed!(
            self,
            "c2d",
            c2d_settle(device_id, lock_token, settle, rules, now)
        )
    }
    async fn c2d_purge(&self, device_id: &str, rules: C2dRules, now: DateTime<Utc>) -> Result<u64> {
        timed!(self, "c2d", c2d_purge(device_id, rules, now))
    }
    async fn c2d_expire(&self, rules: C2dRules, now: DateTime<Utc>) -> Result<u64> {
        timed!(self, "c2d", c2d_expire(rules, now))
    }
    async fn c2d_release_locks(&self, node: &str) -> Result<u64> {
        timed!(self, "c2d", c2d_release_locks(node))
    }
    async fn feedback_lock(
        &self,
        rules: C2dRules,
        now: DateTime<Utc>,
    ) -> Result<Option<FeedbackBatch>> {
        timed!(self, "c2d", feedback_lock(rules, now))
    }
    async fn feedback_settle(&self, lock_token: &str, complete: bool) -> Result<bool> {
        timed!(self, "c2d", feedback_settle(lock_token, complete))
    }
}

#[async_trait]
impl<S: CertificateStore + ?Sized> CertificateStore for TimedStore<S> {
    async fn get_certificate(
        &self,
        scope: CertificateScope,
        name: &str,
    ) -> Result<Option<CertificateRecord>> {
        timed!(self, "certificates", get_certificate(scope, name))
    }
    async fn list_certificates(&self, scope: CertificateScope) -> Result<Vec<CertificateRecord>> {
        timed!(self, "certificates", list_certificates(scope))
    }
    async fn put_certificate(
        &self,
        scope: CertificateScope,
        record: CertificateRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<CertificateRecord, WriteConflict>> {
        timed!(
            self,
            "certificates",
            put_certificate(scope, record, if_match)
        )
    }
    async fn delete_certificate(
        &self,
        scope: CertificateScope,
        name: &str,
        if_match: Option<String>,
    ) -> Result<std::result::Result<(), WriteConflict>> {
        timed!(
            self,
            "certificates",
            delete_certificate(scope, name, if_match)
        )
    }
}

#[async_trait]
impl<S: DpsStore + ?Sized> DpsStore for TimedStore<S> {
    async fn dps_settings_or_init(&self, init: DpsSettings) -> Result<DpsSettings> {
        timed!(self, "dps", dps_settings_or_init(init))
    }
    async fn dps_settings(&self) -> Result<Option<DpsSettings>> {
        timed!(self, "dps", dps_settings())
    }
    async fn dps_get(&self, collection: DpsCollection, id: &str) -> Result<Option<DpsRecord>> {
        timed!(self, "dps", dps_get(collection, id))
    }
    async fn dps_list(
        &self,
        collection: DpsCollection,
        after: Option<&str>,
        limit: usize,
        group: Option<&str>,
    ) -> Result<Vec<DpsRecord>> {
        timed!(self, "dps", dps_list(collection, after, limit, group))
    }
    async fn dps_count(&self, collection: DpsCollection, group: Option<&str>) -> Result<u64> {
        timed!(self, "dps", dps_count(collection, group))
    }
    async fn dps_write(
        &self,
        collection: DpsCollection,
        writes: Vec<DpsWrite>,
    ) -> Result<DpsBatchResult> {
        timed!(self, "dps", dps_write(collection, writes))
    }
    async fn dps_write_with_device(
        &self,
        device: DeviceWrite,
        collection: DpsCollection,
        write: DpsWrite,
    ) -> Result<JointResult> {
        timed!(
            self,
            "dps",
            dps_write_with_device(device, collection, write)
        )
    }
    async fn dps_begin_registration(
        &self,
        operation: DpsRecord,
        claim: DpsRecord,
    ) -> Result<RegistrationBegun> {
        timed!(self, "dps", dps_begin_registration(operation, claim))
    }
}

#[async_trait]
impl<S: FileNotificationStore + ?Sized> FileNotificationStore for TimedStore<S> {
    async fn file_notification_enqueue(
        &self,
        notification: FileNotification,
        expiry: DateTime<Utc>,
    ) -> Result<()> {
        timed!(
            self,
            "file_notifications",
            file_notification_enqueue(notification, expiry)
        )
    }
    async fn file_notification_lock(
        &self,
        rules: FileNotificationRules,
        now: DateTime<Utc>,
    ) -> Result<Option<LockedFileNotification>> {
        timed!(
            self,
            "file_notifications",
            file_notification_lock(rules, now)
        )
    }
    async fn file_notification_settle(
        &self,
        lock_token: &str,
        complete: bool,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        timed!(
            self,
            "file_notifications",
            file_notification_settle(lock_token, complete, now)
        )
    }
}

#[async_trait]
impl<S: RoutingStore + ?Sized> RoutingStore for TimedStore<S> {
    async fn routing(&self) -> Result<Option<RoutingRecord>> {
        timed!(self, "routing", routing())
    }
    async fn put_routing(
        &self,
        doc: serde_json::Value,
        if_match: Option<String>,
    ) -> Result<std::result::Result<RoutingRecord, WriteConflict>> {
        timed!(self, "routing", put_routing(doc, if_match))
    }
    async fn lease_endpoint(
        &self,
        endpoint: &str,
        node: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        timed!(self, "routing", lease_endpoint(endpoint, node, now, until))
    }
    async fn release_endpoint(&self, endpoint: &str, node: &str) -> Result<()> {
        timed!(self, "routing", release_endpoint(endpoint, node))
    }
    async fn put_endpoint_health(&self, health: EndpointHealth) -> Result<()> {
        timed!(self, "routing", put_endpoint_health(health))
    }
    async fn endpoint_health(&self) -> Result<Vec<EndpointHealth>> {
        timed!(self, "routing", endpoint_health())
    }
}

#[async_trait]
impl<S: NetworkRulesStore + ?Sized> NetworkRulesStore for TimedStore<S> {
    async fn network_rules(&self, scope: NetworkScope) -> Result<Option<NetworkRulesRecord>> {
        timed!(self, "network", network_rules(scope))
    }
    async fn put_network_rules(
        &self,
        scope: NetworkScope,
        doc: serde_json::Value,
        if_match: Option<String>,
    ) -> Result<std::result::Result<NetworkRulesRecord, WriteConflict>> {
        timed!(self, "network", put_network_rules(scope, doc, if_match))
    }
}

#[async_trait]
impl<S: ConfigurationStore + ?Sized> ConfigurationStore for TimedStore<S> {
    async fn get_configuration(&self, id: &str) -> Result<Option<ConfigurationRecord>> {
        timed!(self, "configurations", get_configuration(id))
    }
    async fn list_configurations(&self) -> Result<Vec<ConfigurationRecord>> {
        timed!(self, "configurations", list_configurations())
    }
    async fn write_configuration(
        &self,
        write: ConfigurationWrite,
    ) -> Result<std::result::Result<Option<ConfigurationRecord>, WriteConflict>> {
        timed!(self, "configurations", write_configuration(write))
    }
}

#[async_trait]
impl<S: crate::jobs::JobStore + ?Sized> crate::jobs::JobStore for TimedStore<S> {
    async fn get_job(&self, job_id: &str) -> Result<Option<crate::jobs::JobRecord>> {
        timed!(self, "jobs", get_job(job_id))
    }
    async fn list_jobs(&self) -> Result<Vec<crate::jobs::JobRecord>> {
        timed!(self, "jobs", list_jobs())
    }
    async fn write_job(
        &self,
        job_id: &str,
        doc: serde_json::Value,
        if_match: Option<&str>,
    ) -> Result<std::result::Result<crate::jobs::JobRecord, WriteConflict>> {
        timed!(self, "jobs", write_job(job_id, doc, if_match))
    }
    async fn claim_job_device(&self, record: crate::jobs::JobDeviceRecord) -> Result<bool> {
        timed!(self, "jobs", claim_job_device(record))
    }
    async fn put_job_device(&self, record: crate::jobs::JobDeviceRecord) -> Result<()> {
        timed!(self, "jobs", put_job_device(record))
    }
    async fn replace_job_device(
        &self,
        record: crate::jobs::JobDeviceRecord,
        expected: &serde_json::Value,
    ) -> Result<bool> {
        timed!(self, "jobs", replace_job_device(record, expected))
    }
    async fn list_job_devices(
        &self,
        job_id: Option<&str>,
    ) -> Result<Vec<crate::jobs::JobDeviceRecord>> {
        timed!(self, "jobs", list_job_devices(job_id))
    }
}

#[async_trait]
impl<S: crate::reader_claims::ReaderClaimStore + ?Sized> crate::reader_claims::ReaderClaimStore
    for TimedStore<S>
{
    async fn claim_reader(
        &self,
        claim: crate::reader_claims::ReaderClaim,
        now: DateTime<Utc>,
    ) -> Result<crate::reader_claims::ClaimOutcome> {
        timed!(self, "reader_claims", claim_reader(claim, now))
    }
    async fn renew_reader(&self, key: &str, holder: &str, until: DateTime<Utc>) -> Result<bool> {
        timed!(self, "reader_claims", renew_reader(key, holder, until))
    }
    async fn release_reader(&self, key: &str, holder: &str) -> Result<()> {
        timed!(self, "reader_claims", release_reader(key, holder))
    }
    async fn reader_claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::reader_claims::ReaderClaim>> {
        timed!(self, "reader_claims", reader_claim(key, now))
    }
}

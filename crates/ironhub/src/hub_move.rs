//! Moving a hub (`ironhub migrate --from DATA_DIR --to postgres://… --nats nats://…`): copies
//! everything one hub keeps from one engine into another, through the store ports only, so it
//! holds for any pair of engines. The target must be empty ([`ensure_empty`]); the copy
//! ([`copy`]) writes each kind in id order, then counts it in the target ([`Tally`]).
//!
//! What changes on the way: every etag (engines assign them), the sequence numbers of
//! telemetry and of cloud-to-device messages (the target numbers them), and the consumer
//! groups' checkpoints (not copied: they name the old numbers). Connection state starts
//! disconnected, and a cloud-to-device message locked by a connection of the stopped server
//! is visible again, its delivery counted; so is feedback or a file upload notification a
//! service had received without completing. Persistent MQTT sessions, the feedback and file
//! upload notifications waiting for services and DPS registration operations move too. Not
//! copied: endpoint leases and health (runtime state each node rebuilds).
//!
//! A run that failed midway can be resumed (`--resume`, [`Mode::Resume`]): every kind is
//! copied again, skipping what the target already holds: records with a key (devices,
//! modules, configurations, jobs, certificates, DPS records) are looked up by it, and the
//! ordered ones without (queued messages per device, feedback, file upload notifications,
//! each partition of telemetry and of every event stream) resume after as many as the target
//! holds, since they are copied in order and the source, its server stopped, cannot change.

use std::sync::Arc;

use anyhow::Context as _;
use ironhub_store::{
    CertificateScope, DeviceWrite, DpsCollection, DpsWrite, EventLog, EventStreams, ModuleWrite,
    NetworkScope, ServiceQueue, Store, TwinScan, WriteConflict,
};

pub use crate::hub_move_tally::Tally;

/// How many records one read or batch write carries.
const PAGE: usize = 500;

/// An engine's event log and its named event streams.
#[derive(Debug, Clone)]
pub struct Logs {
    pub events: Arc<dyn EventLog>,
    pub streams: Arc<dyn EventStreams>,
}

/// Whether the target must be empty, or may hold what an earlier run of the same move wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Into an empty target ([`ensure_empty`]): every write is a create.
    Fresh,
    /// Into a target a failed run left behind: what is there already is skipped (and counted
    /// as written).
    Resume,
}

impl Mode {
    /// Whether a create refused because the key is taken is what an earlier run wrote.
    fn tolerates(self, conflict: &WriteConflict) -> bool {
        self == Mode::Resume && matches!(conflict, WriteConflict::AlreadyExists)
    }
}

/// Fails, naming what it found, unless the target holds no hub: no hub or DPS settings, no
/// device, enrollment, certificate, configuration or routing document, and (with `logs`) no
/// event ever appended and no event stream.
pub async fn ensure_empty(target: &dyn Store, logs: Option<&Logs>) -> anyhow::Result<()> {
    let mut found = Vec::new();
    if target.hub_settings().await?.is_some() {
        found.push("a hub's settings (a server ran on it)".to_owned());
    }
    if target.dps_settings().await?.is_some() {
        found.push("DPS settings".to_owned());
    }
    let devices = target.device_counts().await?.total;
    if devices > 0 {
        found.push(format!("{devices} device(s)"));
    }
    for collection in [DpsCollection::Enrollments, DpsCollection::EnrollmentGroups] {
        let n = target.dps_count(collection, None).await?;
        if n > 0 {
            found.push(format!("{n} DPS {collection:?}"));
        }
    }
    for scope in [CertificateScope::Hub, CertificateScope::Dps] {
        if !target.list_certificates(scope).await?.is_empty() {
            found.push(format!("{scope:?} certificates"));
        }
    }
    if !target.list_configurations().await?.is_empty() {
        found.push("configurations".to_owned());
    }
    if target.routing().await?.is_some() {
        found.push("a routing document".to_owned());
    }
    if let Some(logs) = logs {
        for p in 0..logs.events.partition_count() {
            if logs.events.bounds(p).await?.next > 0 {
                found.push(format!("telemetry in partition {p}"));
                break;
            }
        }
        let streams = logs.streams.list_streams().await?;
        if !streams.is_empty() {
            found.push(format!("event stream(s) {}", streams.join(", ")));
        }
    }
    anyhow::ensure!(
        found.is_empty(),
        "the target is not empty: it holds {}. A move copies into an empty database and NATS \
         only (so that a second run cannot duplicate anything): give a new database (and a new \
         NATS server or JetStream domain), or drop and recreate them; --resume completes a move \
         that failed midway",
        found.join(", ")
    );
    Ok(())
}

/// Fails unless `target` is empty or holds the hub of `source` (the same shared access
/// policies and DPS settings): a resumed run may complete only its own move.
pub async fn ensure_same_hub(source: &dyn Store, target: &dyn Store) -> anyhow::Result<()> {
    if let (Some(from), Some(to)) = (source.hub_settings().await?, target.hub_settings().await?) {
        anyhow::ensure!(
            from.policies == to.policies,
            "the target holds another hub (its access policies differ): --resume completes \
             a move of the same hub only"
        );
    }
    if let (Some(from), Some(to)) = (source.dps_settings().await?, target.dps_settings().await?) {
        anyhow::ensure!(
            from == to,
            "the target holds another DPS instance: --resume completes a move of the same hub only"
        );
    }
    Ok(())
}

/// Copies the hub in `source` into `target` (empty, or left by a failed run of the same move
/// with [`Mode::Resume`]), kind by kind, and counts each kind in the target. The event logs
/// are copied when `target_logs` is given. Returns every kind's tally, in the order copied;
/// fails at the first error (what was written stays, for a resumed run to complete).
pub async fn copy(
    source: &dyn Store,
    source_logs: &Logs,
    target: &dyn Store,
    target_logs: Option<&Logs>,
    mode: Mode,
) -> anyhow::Result<Vec<Tally>> {
    let mut tallies = vec![identity(source, target).await?];
    tallies.extend(devices_and_twins(source, target, mode).await?);
    tallies.extend(modules(source, target, mode).await?);
    tallies.push(configurations(source, target, mode).await?);
    tallies.extend(jobs(source, target, mode).await?);
    tallies.push(certificates(source, target, mode).await?);
    for collection in [
        DpsCollection::Enrollments,
        DpsCollection::EnrollmentGroups,
        DpsCollection::Registrations,
        DpsCollection::LinkedHubs,
        DpsCollection::Operations,
    ] {
        tallies.push(dps(source, target, collection, mode).await?);
    }
    tallies.push(documents(source, target).await?);
    tallies.push(c2d(source, target).await?);
    tallies.push(crate::hub_move_runtime::sessions(source, target).await?);
    for queue in [ServiceQueue::Feedback, ServiceQueue::FileNotifications] {
        tallies.push(crate::hub_move_runtime::queue(source, target, queue).await?);
    }
    if let Some(target_logs) = target_logs {
        tallies.extend(logs(source_logs, target_logs).await?);
    }
    Ok(tallies)
}

/// The hub's and the DPS instance's settings (policies and keys, the ID scope) and the
/// endpoint the hub was last reached at.
async fn identity(source: &dyn Store, target: &dyn Store) -> anyhow::Result<Tally> {
    let mut t = Tally::new("hub identity (settings, DPS settings, endpoint)");
    if let Some(settings) = source.hub_settings().await? {
        t.read += 1;
        target.hub_settings_or_init(settings).await?;
        t.written += 1;
    }
    if let Some(settings) = source.dps_settings().await? {
        t.read += 1;
        target.dps_settings_or_init(settings).await?;
        t.written += 1;
    }
    if let Some(endpoint) = source.endpoint().await? {
        t.read += 1;
        target.set_endpoint(&endpoint).await?;
        t.written += 1;
    }
    t.counted = u64::from(target.hub_settings().await?.is_some())
        + u64::from(target.dps_settings().await?.is_some())
        + u64::from(target.endpoint().await?.is_some());
    Ok(t)
}

/// Every device of a store with its twin, a page at a time in id order.
struct DevicePages<'a> {
    store: &'a dyn Store,
    after: Option<String>,
    done: bool,
}

impl<'a> DevicePages<'a> {
    fn new(store: &'a dyn Store) -> Self {
        DevicePages {
            store,
            after: None,
            done: false,
        }
    }

    /// The next page, `None` after the last.
    async fn next(&mut self) -> anyhow::Result<Option<Vec<ironhub_store::DeviceTwin>>> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .scan_twins(&TwinScan {
                after: self.after.clone(),
                limit: PAGE,
                conditions: Vec::new(),
            })
            .await?;
        self.done = page.len() < PAGE;
        self.after = page.last().map(|(d, _)| d.device_id.clone());
        Ok(if page.is_empty() { None } else { Some(page) })
    }
}

/// Devices (keys, thumbprints, status, capabilities, scopes, generation ids) and their twins
/// (tags, properties, versions, metadata).
async fn devices_and_twins(
    source: &dyn Store,
    target: &dyn Store,
    mode: Mode,
) -> anyhow::Result<[Tally; 2]> {
    let mut devices = Tally::new("devices");
    let mut twins = Tally::new("device twins");
    let mut pages = DevicePages::new(source);
    while let Some(page) = pages.next().await? {
        devices.read += page.len() as u64;
        let mut there = std::collections::HashSet::new();
        if mode == Mode::Resume {
            for (d, _) in &page {
                if target.get_device(&d.device_id).await?.is_some() {
                    there.insert(d.device_id.clone());
                }
            }
            devices.written += there.len() as u64;
        }
        let fresh: Vec<_> = page
            .iter()
            .filter(|(d, _)| !there.contains(&d.device_id))
            .collect();
        let writes = fresh
            .iter()
            .map(|(d, _)| {
                let mut d = d.clone();
                d.connection_state = ironhub_store::ConnectionState::Disconnected;
                d.connection_node = None;
                DeviceWrite::Create(d)
            })
            .collect();
        match target.write_devices(writes).await? {
            Ok(done) => devices.written += done.len() as u64,
            Err(conflicts) => anyhow::bail!(
                "cannot create devices: {}",
                refusals(&conflicts, |i| fresh
                    .get(i)
                    .map(|(d, _)| d.device_id.as_str()))
            ),
        }
        for (device, twin) in page {
            let Some(twin) = twin else { continue };
            twins.read += 1;
            target.put_twin(twin, None).await?.map_err(|c| {
                anyhow::anyhow!("cannot write the twin of {}: {c:?}", device.device_id)
            })?;
            twins.written += 1;
        }
    }
    devices.counted = target.device_counts().await?.total;
    let mut pages = DevicePages::new(target);
    while let Some(page) = pages.next().await? {
        twins.counted += page.iter().filter(|(_, t)| t.is_some()).count() as u64;
    }
    Ok([devices, twins])
}

/// A batch's refusals, each with the id of the record refused.
fn refusals<'a>(
    conflicts: &[(usize, WriteConflict)],
    id: impl Fn(usize) -> Option<&'a str>,
) -> String {
    conflicts
        .iter()
        .map(|(i, c)| format!("{} ({c:?})", id(*i).unwrap_or("?")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every device id of `store`, in order.
async fn device_ids(store: &dyn Store) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut pages = DevicePages::new(store);
    while let Some(page) = pages.next().await? {
        ids.extend(page.into_iter().map(|(d, _)| d.device_id));
    }
    Ok(ids)
}

/// Module identities and their twins.
async fn modules(source: &dyn Store, target: &dyn Store, mode: Mode) -> anyhow::Result<[Tally; 2]> {
    let mut modules = Tally::new("modules");
    let mut twins = Tally::new("module twins");
    let ids = device_ids(source).await?;
    for device in &ids {
        for mut module in source.list_modules(device).await? {
            modules.read += 1;
            let twin = source.get_module_twin(device, &module.module_id).await?;
            module.connection_state = ironhub_store::ConnectionState::Disconnected;
            module.connection_node = None;
            let module_id = module.module_id.clone();
            if let Err(c) = target.write_module(ModuleWrite::Create(module)).await?
                && !mode.tolerates(&c)
            {
                anyhow::bail!("cannot create module {device}/{module_id}: {c:?}");
            }
            modules.written += 1;
            if let Some(twin) = twin {
                twins.read += 1;
                target
                    .put_module_twin(&module_id, twin, None)
                    .await?
                    .map_err(|c| {
                        anyhow::anyhow!("cannot write the twin of {device}/{module_id}: {c:?}")
                    })?;
                twins.written += 1;
            }
        }
    }
    for device in device_ids(target).await? {
        for module in target.list_modules(&device).await? {
            modules.counted += 1;
            if target
                .get_module_twin(&device, &module.module_id)
                .await?
                .is_some()
            {
                twins.counted += 1;
            }
        }
    }
    Ok([modules, twins])
}

/// Automatic device and IoT Edge configurations.
async fn configurations(
    source: &dyn Store,
    target: &dyn Store,
    mode: Mode,
) -> anyhow::Result<Tally> {
    let mut t = Tally::new("configurations");
    for record in source.list_configurations().await? {
        t.read += 1;
        let id = record.id.clone();
        if let Err(c) = target
            .write_configuration(ironhub_store::ConfigurationWrite::Create {
                id: record.id,
                doc: record.doc,
            })
            .await?
            && !mode.tolerates(&c)
        {
            anyhow::bail!("cannot create configuration {id}: {c:?}");
        }
        t.written += 1;
    }
    t.counted = target.list_configurations().await?.len() as u64;
    Ok(t)
}

/// Scheduled jobs and their results per device.
async fn jobs(source: &dyn Store, target: &dyn Store, mode: Mode) -> anyhow::Result<[Tally; 2]> {
    let mut jobs = Tally::new("jobs");
    let mut results = Tally::new("job results per device");
    for job in source.list_jobs().await? {
        jobs.read += 1;
        if let Err(c) = target.write_job(&job.job_id, job.doc, None).await?
            && !mode.tolerates(&c)
        {
            anyhow::bail!("cannot create job {}: {c:?}", job.job_id);
        }
        jobs.written += 1;
    }
    for record in source.list_job_devices(None).await? {
        results.read += 1;
        target.put_job_device(record).await?;
        results.written += 1;
    }
    jobs.counted = target.list_jobs().await?.len() as u64;
    results.counted = target.list_job_devices(None).await?.len() as u64;
    Ok([jobs, results])
}

/// The hub's and the DPS instance's CA certificates, verified or not.
async fn certificates(source: &dyn Store, target: &dyn Store, mode: Mode) -> anyhow::Result<Tally> {
    let mut t = Tally::new("CA certificates (hub and DPS)");
    for scope in [CertificateScope::Hub, CertificateScope::Dps] {
        for record in source.list_certificates(scope).await? {
            t.read += 1;
            let name = record.name.clone();
            if let Err(c) = target.put_certificate(scope, record, None).await?
                && !mode.tolerates(&c)
            {
                anyhow::bail!("cannot create certificate {name}: {c:?}");
            }
            t.written += 1;
        }
        t.counted += target.list_certificates(scope).await?.len() as u64;
    }
    Ok(t)
}

/// One DPS collection, a page at a time, each page all or nothing.
async fn dps(
    source: &dyn Store,
    target: &dyn Store,
    collection: DpsCollection,
    mode: Mode,
) -> anyhow::Result<Tally> {
    let mut t = Tally::new(match collection {
        DpsCollection::Enrollments => "DPS individual enrollments",
        DpsCollection::EnrollmentGroups => "DPS enrollment groups",
        DpsCollection::Registrations => "DPS registrations",
        DpsCollection::LinkedHubs => "DPS linked hubs",
        DpsCollection::Operations => "DPS operations",
    });
    let mut after: Option<String> = None;
    loop {
        let page = source
            .dps_list(collection, after.as_deref(), PAGE, None)
            .await?;
        let full = page.len() == PAGE;
        after = page.last().map(|r| r.id.clone());
        t.read += page.len() as u64;
        let mut fresh = Vec::with_capacity(page.len());
        for record in page {
            if mode == Mode::Resume && target.dps_get(collection, &record.id).await?.is_some() {
                t.written += 1;
            } else {
                fresh.push(record);
            }
        }
        let ids: Vec<String> = fresh.iter().map(|r| r.id.clone()).collect();
        let writes: Vec<_> = fresh.into_iter().map(DpsWrite::Create).collect();
        // A resumed run may find the whole page copied already.
        if !writes.is_empty() {
            match target.dps_write(collection, writes).await? {
                Ok(done) => t.written += done.len() as u64,
                Err(conflicts) => anyhow::bail!(
                    "cannot create {}: {}",
                    t.kind,
                    refusals(&conflicts, |i| ids.get(i).map(String::as_str))
                ),
            }
        }
        if !full {
            break;
        }
    }
    t.counted = target.dps_count(collection, None).await?;
    Ok(t)
}

/// The routing document and the network rules of the hub and of DPS.
async fn documents(source: &dyn Store, target: &dyn Store) -> anyhow::Result<Tally> {
    let mut t = Tally::new("routing and network rules documents");
    if let Some(routing) = source.routing().await? {
        t.read += 1;
        target
            .put_routing(routing.doc, None)
            .await?
            .map_err(|c| anyhow::anyhow!("cannot write the routing document: {c:?}"))?;
        t.written += 1;
    }
    t.counted += u64::from(target.routing().await?.is_some());
    for scope in [NetworkScope::Hub, NetworkScope::Dps] {
        if let Some(rules) = source.network_rules(scope).await? {
            t.read += 1;
            target
                .put_network_rules(scope, rules.doc, None)
                .await?
                .map_err(|c| anyhow::anyhow!("cannot write the network rules: {c:?}"))?;
            t.written += 1;
        }
        t.counted += u64::from(target.network_rules(scope).await?.is_some());
    }
    Ok(t)
}

/// Every device's cloud-to-device queue, in order, as it was (see [`ironhub_store::C2dStore::c2d_import`]);
/// a queue resumes after the messages the target holds.
async fn c2d(source: &dyn Store, target: &dyn Store) -> anyhow::Result<Tally> {
    let mut t = Tally::new("queued cloud-to-device messages");
    let ids = device_ids(source).await?;
    for device in &ids {
        let copied = target.c2d_queue(device).await?.len();
        for (i, message) in source.c2d_queue(device).await?.into_iter().enumerate() {
            t.read += 1;
            if i < copied {
                t.written += 1;
                continue;
            }
            let id = message.message_id.clone();
            target
                .c2d_import(message)
                .await?
                .map_err(|r| anyhow::anyhow!("cannot queue message {id} for {device}: {r:?}"))?;
            t.written += 1;
        }
    }
    for device in device_ids(target).await? {
        t.counted += target.c2d_queue(&device).await?.len() as u64;
    }
    Ok(t)
}

/// The telemetry kept in every partition, in order with its enqueued times and properties,
/// the consumer groups (without checkpoints), and each named event stream alike.
async fn logs(source: &Logs, target: &Logs) -> anyhow::Result<Vec<Tally>> {
    let mut tallies = vec![copy_log(&*source.events, &*target.events, "telemetry events").await?];
    let mut groups = Tally::new("consumer groups");
    for group in source.events.consumer_groups().await? {
        groups.read += 1;
        target.events.create_consumer_group(&group).await?;
        groups.written += 1;
    }
    groups.counted = target.events.consumer_groups().await?.len() as u64;
    tallies.push(groups);
    let mut streams = Tally::new("event streams");
    let mut stream_events = Tally::new("event stream events");
    for name in source.streams.list_streams().await? {
        let Some(from) = source.streams.stream(&name).await? else {
            continue;
        };
        streams.read += 1;
        let to = target
            .streams
            .open_stream(&name, from.partition_count())
            .await?;
        streams.written += 1;
        let t = copy_log(&*from, &*to, "event stream events").await?;
        stream_events.read += t.read;
        stream_events.written += t.written;
        stream_events.counted += t.counted;
    }
    streams.counted = target.streams.list_streams().await?.len() as u64;
    tallies.push(streams);
    tallies.push(stream_events);
    Ok(tallies)
}

/// Copies one log's retained events, partition by partition in order, each after the events
/// the target's partition holds already; counts the target's.
async fn copy_log(
    source: &dyn EventLog,
    target: &dyn EventLog,
    kind: &'static str,
) -> anyhow::Result<Tally> {
    let mut t = Tally::new(kind);
    for p in 0..source.partition_count() {
        let bounds = source.bounds(p).await?;
        let there = target.bounds(p).await?;
        let copied = (there.next - there.first).min(bounds.next - bounds.first);
        t.read += copied;
        t.written += copied;
        let mut next = bounds.first + copied;
        while next < bounds.next {
            let events = source.read(p, next, PAGE).await?;
            let Some(last) = events.last() else { break };
            next = last.sequence_number + 1;
            for event in events {
                t.read += 1;
                target
                    .import(event)
                    .await
                    .with_context(|| format!("cannot copy an event of partition {p}"))?;
                t.written += 1;
            }
        }
    }
    for p in 0..target.partition_count() {
        let bounds = target.bounds(p).await?;
        t.counted += bounds.next - bounds.first;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteEventStreams, SqliteStore};
    use ironhub_hub::c2d::OutgoingMessage;
    use ironhub_hub::model::DeviceSpec;
    use ironhub_hub::{Backends, Hub};
    use ironhub_store::NewEvent;
    use ironhub_store::prelude::*;

    use super::*;

    fn open(dir: &std::path::Path) -> (Arc<SqliteStore>, Logs) {
        let store = Arc::new(SqliteStore::open(dir).unwrap());
        let logs = Logs {
            events: Arc::new(SqliteEventLog::open(dir, 4).unwrap()),
            streams: Arc::new(SqliteEventStreams::open(&dir.join("streams")).unwrap()),
        };
        (store, logs)
    }

    /// A hub on `store` and `logs` (its settings and keys made at start).
    async fn serve(store: &Arc<SqliteStore>, logs: &Logs, host: &str) -> Hub {
        Hub::open(
            Backends {
                store: store.clone(),
                events: logs.events.clone(),
                bus: Arc::new(LocalBus::new()),
            },
            vec![host.into()],
        )
        .await
        .unwrap()
    }

    fn event(device: &str, body: &str) -> NewEvent {
        NewEvent {
            device_id: device.into(),
            module_id: None,
            system_properties: [("message-id".to_owned(), body.to_owned())].into(),
            application_properties: [("k".to_owned(), Some("v".to_owned()))].into(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn a_hub_moves_with_every_count_agreeing_and_once_only() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (source, source_logs) = open(a.path());
        let hub = serve(&source, &source_logs, "myhub.example").await;
        for id in ["d1", "d2"] {
            hub.put_device(id, &DeviceSpec::default(), None)
                .await
                .unwrap();
        }
        let queued = hub
            .send_c2d(
                "d1",
                OutgoingMessage {
                    body: b"queued".to_vec(),
                    properties: vec![("p".into(), "1".into())],
                    ..OutgoingMessage::default()
                },
            )
            .await
            .unwrap();
        let sent = [
            source_logs.events.append(event("d1", "one")).await.unwrap(),
            source_logs.events.append(event("d2", "two")).await.unwrap(),
        ];

        let (target, target_logs) = open(b.path());
        ensure_empty(&*target, Some(&target_logs)).await.unwrap();
        let tallies = copy(
            &*source,
            &source_logs,
            &*target,
            Some(&target_logs),
            Mode::Fresh,
        )
        .await
        .unwrap();
        assert!(tallies.iter().all(Tally::agrees), "{tallies:?}");
        let counted = |kind: &str| tallies.iter().find(|t| t.kind == kind).unwrap().counted;
        assert_eq!(counted("devices"), 2);
        assert_eq!(counted("queued cloud-to-device messages"), 1);
        assert_eq!(counted("telemetry events"), 2);

        let (before, after) = (
            source.get_device("d1").await.unwrap().unwrap(),
            target.get_device("d1").await.unwrap().unwrap(),
        );
        assert_eq!(after.authentication, before.authentication, "the keys move");
        assert_eq!(after.generation_id, before.generation_id);
        assert_eq!(
            target.hub_settings().await.unwrap().unwrap().policies,
            source.hub_settings().await.unwrap().unwrap().policies
        );
        let moved = target.c2d_queue("d1").await.unwrap();
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].message_id, queued.message_id);
        assert_eq!(moved[0].properties, queued.properties);
        assert_eq!(moved[0].enqueued_time, queued.enqueued_time);
        for event in sent {
            let read = target_logs
                .events
                .read(event.partition, 0, 10)
                .await
                .unwrap();
            let copied = read.iter().find(|e| e.event == event.event).unwrap();
            assert_eq!(copied.enqueued_time, event.enqueued_time);
        }

        let again = ensure_empty(&*target, Some(&target_logs))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            again.contains("not empty") && again.contains("2 device(s)"),
            "{again}"
        );
    }

    #[tokio::test]
    async fn runtime_queues_and_sessions_move_and_a_failed_run_resumes_without_duplicates() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (source, source_logs) = open(a.path());
        let hub = serve(&source, &source_logs, "myhub.example").await;
        for id in ["d1", "d2", "d3"] {
            hub.put_device(id, &DeviceSpec::default(), None)
                .await
                .unwrap();
        }
        source
            .set_mqtt_session("d1", Some(vec!["devices/d1/messages/devicebound/#".into()]))
            .await
            .unwrap();
        let now = chrono::Utc::now();
        let feedback = ironhub_store::QueuedDoc {
            position: 0,
            enqueued: now,
            expiry: now + chrono::TimeDelta::hours(1),
            delivery_count: 1,
            doc: serde_json::json!({"originalMessageId": "m1", "deviceId": "d1"}),
        };
        source
            .queue_import(ServiceQueue::Feedback, vec![feedback.clone(), feedback])
            .await
            .unwrap();
        source
            .file_notification_enqueue(
                ironhub_store::FileNotification {
                    device_id: "d2".into(),
                    blob_uri: "https://blob.example/c/d2/f.txt".into(),
                    blob_name: "d2/f.txt".into(),
                    last_updated_time: None,
                    blob_size_in_bytes: Some(3),
                    enqueued_time_utc: now,
                },
                now + chrono::TimeDelta::hours(1),
            )
            .await
            .unwrap();
        let mut partition = 0;
        for body in ["one", "two", "three"] {
            partition = source_logs
                .events
                .append(event("d1", body))
                .await
                .unwrap()
                .partition;
        }

        // A run that stopped after the devices, one telemetry event and one feedback record.
        let (target, target_logs) = open(b.path());
        identity(&*source, &*target).await.unwrap();
        devices_and_twins(&*source, &*target, Mode::Fresh)
            .await
            .unwrap();
        let first = source_logs.events.read(partition, 0, 1).await.unwrap();
        target_logs.events.import(first[0].clone()).await.unwrap();
        let one = source
            .queue_page(ServiceQueue::Feedback, None, 1)
            .await
            .unwrap();
        target
            .queue_import(ServiceQueue::Feedback, one)
            .await
            .unwrap();
        assert!(ensure_empty(&*target, Some(&target_logs)).await.is_err());
        ensure_same_hub(&*source, &*target).await.unwrap();

        let tallies = copy(
            &*source,
            &source_logs,
            &*target,
            Some(&target_logs),
            Mode::Resume,
        )
        .await
        .unwrap();
        assert!(tallies.iter().all(Tally::agrees), "{tallies:?}");
        let counted = |kind: &str| tallies.iter().find(|t| t.kind == kind).unwrap().counted;
        assert_eq!(counted("devices"), 3);
        assert_eq!(counted("persistent MQTT sessions"), 1);
        assert_eq!(counted("cloud-to-device feedback waiting for services"), 2);
        assert_eq!(counted("file upload notifications"), 1);
        assert_eq!(counted("telemetry events"), 3, "nothing duplicated");
        assert_eq!(
            target.mqtt_session("d1").await.unwrap().unwrap(),
            vec!["devices/d1/messages/devicebound/#".to_owned()]
        );

        // Another hub's target is refused.
        let c = tempfile::tempdir().unwrap();
        let (other, other_logs) = open(c.path());
        serve(&other, &other_logs, "other.example").await;
        let refused = ensure_same_hub(&*source, &*other).await.unwrap_err();
        assert!(refused.to_string().contains("another hub"), "{refused}");
    }
}

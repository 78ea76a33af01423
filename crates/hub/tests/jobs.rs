//! Scheduled jobs through the domain API on a real (temporary) store: the runner's passes
//! (called directly, the clock moved by hand), the devices a job selects, its statistics,
//! start time, cancel, maximum execution time, two nodes sharing one job, a node dying
//! while it runs a job (its device handed over once its heartbeat runs out or it restarts),
//! and refusals.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::model::{DeviceSpec, JobRequest, MethodRequest};
use ironhub_hub::{Backends, Hub, HubError, NODE_LEASE, Recovered};
use ironhub_store::{
    Attachment, BusMessage, Clock as _, EventLog, ManualClock, MethodResponse, Store,
};
use serde_json::json;

/// How long any step may take before the test fails.
const BOUND: Duration = Duration::from_secs(10);

/// A hub reading `clock`, with devices d0..d{n-1}, tagged `group` `a` (even) or `b` (odd).
async fn hub_with(n: usize, clock: Arc<ManualClock>) -> (Hub, tempfile::TempDir) {
    let (hub, dir) = common::temp_hub().await;
    let hub = hub.with_clock(clock);
    for i in 0..n {
        let id = format!("d{i}");
        hub.put_device(&id, &DeviceSpec::default(), None)
            .await
            .unwrap();
        let group = if i % 2 == 0 { "a" } else { "b" };
        hub.update_twin(&id, &json!({"tags": {"group": group}}), Some("*"), false)
            .await
            .unwrap();
    }
    (hub, dir)
}

fn twin_job(condition: &str, start: Option<String>) -> JobRequest {
    JobRequest {
        job_type: Some("scheduleUpdateTwin".into()),
        update_twin: Some(json!({"etag": "*", "properties": {"desired": {"fw": "2"}}})),
        query_condition: Some(condition.into()),
        start_time: start,
        max_execution_time_in_seconds: Some(600),
        ..JobRequest::default()
    }
}

async fn desired_version(hub: &Hub, id: &str) -> u64 {
    let twin = hub.get_twin(id).await.unwrap();
    let twin = serde_json::to_value(twin).unwrap();
    twin["properties"]["desired"]["$version"].as_u64().unwrap()
}

#[tokio::test]
async fn a_twin_job_updates_the_selected_devices_once() {
    let clock = Arc::new(ManualClock::default());
    let (hub, _dir) = hub_with(4, clock).await;
    let created = hub
        .create_job("j1", &twin_job("tags.group = 'a'", None))
        .await
        .unwrap();
    assert_eq!(created.status, "queued");
    hub.run_due_jobs().await.unwrap();
    let job = hub.get_job("j1").await.unwrap();
    assert_eq!(job.status, "completed");
    let stats = job.device_job_statistics.unwrap();
    assert_eq!((stats.device_count, stats.succeeded_count), (2, 2));
    for id in ["d0", "d2"] {
        let twin = serde_json::to_value(hub.get_twin(id).await.unwrap()).unwrap();
        assert_eq!(twin["properties"]["desired"]["fw"], "2", "{id}");
    }
    let untouched = serde_json::to_value(hub.get_twin("d1").await.unwrap()).unwrap();
    assert!(untouched["properties"]["desired"].get("fw").is_none());
    let before = desired_version(&hub, "d0").await;
    // Another pass finds the job over and runs nothing again.
    hub.run_due_jobs().await.unwrap();
    assert_eq!(desired_version(&hub, "d0").await, before);
    let records = hub.job_devices("j1").await.unwrap();
    let ids: Vec<_> = records.iter().map(|r| r.device_id.as_str()).collect();
    assert_eq!(ids, ["d0", "d2"]);
    assert!(records.iter().all(|r| r.status == "completed"));
}

#[tokio::test]
async fn two_nodes_run_each_device_of_a_job_once() {
    let clock = Arc::new(ManualClock::default());
    let (a, _dir) = hub_with(6, clock.clone()).await;
    // A second node on the same store.
    let b = Hub::open(
        Backends {
            store: a.store().clone(),
            events: a.events().clone(),
            bus: a.bus().clone(),
        },
        vec!["myhub.example".into()],
    )
    .await
    .unwrap()
    .with_clock(clock);
    a.create_job("shared", &twin_job("tags.group = 'b'", None))
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(a.run_due_jobs(), b.run_due_jobs());
    ra.unwrap();
    rb.unwrap();
    let job = b.get_job("shared").await.unwrap();
    assert_eq!(job.status, "completed");
    assert_eq!(job.device_job_statistics.unwrap().succeeded_count, 3);
    for id in ["d1", "d3", "d5"] {
        // Tags set once (version 1), the job's patch once (version 2).
        assert_eq!(desired_version(&a, id).await, 2, "{id}");
    }
}

#[tokio::test]
async fn a_job_waits_for_its_start_time_and_a_cancel_stops_it() {
    let clock = Arc::new(ManualClock::default());
    let (hub, _dir) = hub_with(2, clock.clone()).await;
    let later = ironhub_hub::model::azure_time(Some(clock.now() + TimeDelta::minutes(10)));
    let created = hub
        .create_job("later", &twin_job("tags.group = 'a'", Some(later.clone())))
        .await
        .unwrap();
    assert_eq!(created.status, "scheduled");
    hub.create_job("cancelled", &twin_job("tags.group = 'a'", Some(later)))
        .await
        .unwrap();
    hub.run_due_jobs().await.unwrap();
    assert_eq!(hub.get_job("later").await.unwrap().status, "scheduled");
    assert_eq!(
        hub.cancel_job("cancelled").await.unwrap().status,
        "cancelled"
    );
    clock.advance(TimeDelta::minutes(11));
    hub.run_due_jobs().await.unwrap();
    assert_eq!(hub.get_job("later").await.unwrap().status, "completed");
    let cancelled = hub.get_job("cancelled").await.unwrap();
    assert_eq!(cancelled.status, "cancelled");
    assert_eq!(cancelled.device_job_statistics.unwrap().device_count, 0);
    // Cancelling a job that is over changes nothing.
    assert_eq!(hub.cancel_job("later").await.unwrap().status, "completed");
}

#[tokio::test]
async fn a_job_out_of_time_fails_without_running() {
    let clock = Arc::new(ManualClock::default());
    let (hub, _dir) = hub_with(2, clock.clone()).await;
    let mut request = twin_job("tags.group = 'a'", None);
    request.max_execution_time_in_seconds = Some(30);
    hub.create_job("short", &request).await.unwrap();
    clock.advance(TimeDelta::minutes(1));
    hub.run_due_jobs().await.unwrap();
    let job = hub.get_job("short").await.unwrap();
    assert_eq!(job.status, "failed");
    assert!(
        job.failure_reason
            .unwrap()
            .contains("maxExecutionTimeInSeconds")
    );
    assert_eq!(job.device_job_statistics.unwrap().device_count, 0);
}

#[tokio::test]
async fn a_method_job_on_an_offline_device_records_the_failure() {
    let clock = Arc::new(ManualClock::default());
    let (hub, _dir) = hub_with(1, clock).await;
    let request = JobRequest {
        job_type: Some("scheduleDeviceMethod".into()),
        cloud_to_device_method: Some(MethodRequest {
            method_name: Some("reboot".into()),
            payload: json!({"delay": 1}),
            response_timeout_in_seconds: Some(5),
            connect_timeout_in_seconds: Some(0),
        }),
        query_condition: Some("deviceId = 'd0'".into()),
        ..JobRequest::default()
    };
    hub.create_job("m", &request).await.unwrap();
    hub.run_due_jobs().await.unwrap();
    let job = hub.get_job("m").await.unwrap();
    assert_eq!(job.status, "completed");
    assert_eq!(job.device_job_statistics.unwrap().failed_count, 1);
    let record = &hub.job_devices("m").await.unwrap()[0];
    assert_eq!(record.status, "failed");
    assert_eq!(record.error.as_ref().unwrap().code, "DeviceNotOnline");
}

#[tokio::test]
async fn refused_requests_store_nothing() {
    let clock = Arc::new(ManualClock::default());
    let (hub, _dir) = hub_with(1, clock).await;
    let mut cases = Vec::new();
    let mut r = twin_job("tags.group = = 'a'", None);
    cases.push(("bad-query", r.clone()));
    r = twin_job("tags.group = 'a'", None);
    r.job_type = Some("scheduleNothing".into());
    cases.push(("bad-type", r.clone()));
    r = twin_job("tags.group = 'a'", None);
    r.update_twin = Some(json!({"properties": {"reported": {"x": 1}}}));
    cases.push(("reported", r.clone()));
    r = twin_job("tags.group = 'a'", None);
    r.update_twin = Some(json!({"etag": "AAAA", "tags": {"x": 1}}));
    cases.push(("etag", r.clone()));
    r = twin_job("tags.group = 'a'", None);
    r.start_time = Some("yesterday".into());
    cases.push(("time", r.clone()));
    r = twin_job("", None);
    cases.push(("no-query", r.clone()));
    r = twin_job("tags.group = 'a'", None);
    r.job_id = Some("another".into());
    cases.push(("mismatch", r));
    for (id, request) in cases {
        let err = hub.create_job(id, &request).await.unwrap_err();
        assert_eq!(err.status(), 400, "{id}: {err}");
        assert!(hub.store().get_job(id).await.unwrap().is_none(), "{id}");
    }
    hub.create_job("dup", &twin_job("tags.group = 'a'", None))
        .await
        .unwrap();
    let err = hub
        .create_job("dup", &twin_job("tags.group = 'b'", None))
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::JobAlreadyExists(_)));
    assert_eq!(err.status(), 409);
    let err = hub.get_job("nope").await.unwrap_err();
    assert_eq!((err.status(), err.name()), (404, "JobNotFound"));
}

/// What the nodes of one deployment share: the store, the event log, the bus fabric and the
/// clock (so that a test can let a heartbeat run out).
struct Deployment {
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    events: Arc<dyn EventLog>,
    fabric: LocalBus,
    _dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Deployment {
            clock: Arc::new(ManualClock::default()),
            store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
            events: Arc::new(SqliteEventLog::open(dir.path(), 2).unwrap()),
            fabric: LocalBus::with_node("fabric"),
            _dir: dir,
        }
    }

    /// Starts node `node` (again), releasing what an earlier run of it held.
    async fn node(&self, node: &str) -> (Hub, Recovered) {
        let hub = Hub::open(
            Backends {
                store: self.store.clone(),
                events: self.events.clone(),
                bus: Arc::new(self.fabric.join(node)),
            },
            vec!["myhub.example".into()],
        )
        .await
        .unwrap()
        .with_clock(self.clock.clone());
        let recovered = hub.recover_node().await.unwrap();
        (hub, recovered)
    }
}

/// A job calling `reboot` on the devices `condition` selects, waiting up to a minute for each.
fn reboot_job(condition: &str) -> JobRequest {
    JobRequest {
        job_type: Some("scheduleDeviceMethod".into()),
        cloud_to_device_method: Some(MethodRequest {
            method_name: Some("reboot".into()),
            payload: json!({}),
            response_timeout_in_seconds: Some(60),
            connect_timeout_in_seconds: Some(0),
        }),
        query_condition: Some(condition.into()),
        max_execution_time_in_seconds: Some(3600),
        ..JobRequest::default()
    }
}

/// A pass of `hub`'s job runner in a task of its own (aborted: the node dies).
fn spawn_pass(hub: &Hub) -> tokio::task::JoinHandle<Result<(), HubError>> {
    let hub = hub.clone();
    tokio::spawn(async move { hub.run_due_jobs().await })
}

/// A device connected through `hub`'s node, as an adapter connects one.
async fn connect(hub: &Hub, device: &str) -> Attachment {
    let attachment = hub.bus().attach(device).await;
    hub.set_connected(device, true).await.unwrap();
    attachment
}

/// Waits for the method call the job makes on a device; returns its call id.
async fn method_call(device: &mut Attachment) -> u64 {
    match tokio::time::timeout(BOUND, device.messages.recv()).await {
        Ok(Some(BusMessage::Method(call))) => call.call_id,
        other => panic!("no method call: {other:?}"),
    }
}

fn answer(hub: &Hub, call_id: u64) {
    hub.bus().complete_method(
        call_id,
        Ok(MethodResponse {
            status: 200,
            payload: br#"{"ok":true}"#.to_vec(),
        }),
    );
}

#[tokio::test]
async fn a_dead_nodes_job_device_is_run_by_another_once_and_a_finished_one_never_again() {
    let deployment = Deployment::new();
    let (a, _) = deployment.node("node-a").await;
    let (b, _) = deployment.node("node-b").await;
    for id in ["m0", "m1"] {
        a.put_device(id, &DeviceSpec::default(), None)
            .await
            .unwrap();
        a.update_twin(id, &json!({"tags": {"group": "m"}}), Some("*"), false)
            .await
            .unwrap();
    }
    let mut m0 = connect(&a, "m0").await;
    let mut m1 = connect(&a, "m1").await;
    a.create_job("reboot", &reboot_job("tags.group = 'm'"))
        .await
        .unwrap();

    // Node A runs the job: m0 answers, then node A dies while it waits on m1.
    let pass = spawn_pass(&a);
    let call = method_call(&mut m0).await;
    answer(&a, call);
    method_call(&mut m1).await;
    pass.abort();
    assert!(pass.await.unwrap_err().is_cancelled());
    let status = |records: Vec<ironhub_hub::model::DeviceJob>| -> Vec<String> {
        records.into_iter().map(|r| r.status).collect()
    };
    assert_eq!(
        status(b.job_devices("reboot").await.unwrap()),
        ["completed", "running"]
    );
    // m1 reconnects through node B. While node A's heartbeat holds, its claim stands.
    drop(m1);
    let mut m1 = connect(&b, "m1").await;
    b.run_due_jobs().await.unwrap();
    assert!(
        m1.messages.try_recv().is_err(),
        "run while node A's claim holds"
    );
    assert_eq!(b.get_job("reboot").await.unwrap().status, "running");

    // Node A's heartbeat runs out: node B puts m1 back to `pending`, once, and runs it.
    deployment
        .clock
        .advance(TimeDelta::from_std(NODE_LEASE).unwrap() + TimeDelta::seconds(1));
    assert_eq!(b.keep_node_alive().await.unwrap().released_job_devices, 1);
    assert_eq!(b.keep_node_alive().await.unwrap().released_job_devices, 0);
    let records = b.job_devices("reboot").await.unwrap();
    assert_eq!(status(records.clone()), ["completed", "pending"]);
    assert!(records[1].start_time_utc.is_none());
    let pass = spawn_pass(&b);
    let call = method_call(&mut m1).await;
    answer(&b, call);
    pass.await.unwrap().unwrap();
    let job = b.get_job("reboot").await.unwrap();
    assert_eq!(job.status, "completed");
    assert_eq!(job.device_job_statistics.unwrap().succeeded_count, 2);
    let records = b.job_devices("reboot").await.unwrap();
    assert_eq!(status(records.clone()), ["completed", "completed"]);
    assert_eq!(
        records[1]
            .outcome
            .as_ref()
            .unwrap()
            .device_method_response
            .as_ref()
            .unwrap()
            .status,
        200
    );
    // m0, finished before node A died, was called once.
    assert!(m0.messages.try_recv().is_err(), "m0 called again");
    // What is served is IoT Hub's record: the node that ran it stays inside.
    let served = serde_json::to_value(&records[1]).unwrap();
    assert!(served.get("ironhubNode").is_none(), "{served}");
}

#[tokio::test]
async fn a_node_restarted_under_its_id_releases_the_job_devices_it_was_on() {
    let deployment = Deployment::new();
    let (a, _) = deployment.node("node-a").await;
    a.put_device("m0", &DeviceSpec::default(), None)
        .await
        .unwrap();
    let mut m0 = connect(&a, "m0").await;
    a.create_job("restart", &reboot_job("deviceId = 'm0'"))
        .await
        .unwrap();
    let pass = spawn_pass(&a);
    method_call(&mut m0).await;
    pass.abort();
    assert!(pass.await.unwrap_err().is_cancelled());
    drop((a, m0));
    // Node A starts again at once, long before its heartbeat would run out.
    let (a, recovered) = deployment.node("node-a").await;
    assert_eq!(recovered.released_job_devices, 1);
    let mut m0 = connect(&a, "m0").await;
    let pass = spawn_pass(&a);
    let call = method_call(&mut m0).await;
    answer(&a, call);
    pass.await.unwrap().unwrap();
    assert_eq!(a.get_job("restart").await.unwrap().status, "completed");
}

//! Scheduled jobs through the domain API on a real (temporary) store: the runner's passes
//! (called directly, the clock moved by hand), the devices a job selects, its statistics,
//! start time, cancel, maximum execution time, two nodes sharing one job, and refusals.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use chrono::TimeDelta;
use ironhub_hub::model::{DeviceSpec, JobRequest, MethodRequest};
use ironhub_hub::{Backends, Hub, HubError};
use ironhub_store::{Clock as _, ManualClock};
use serde_json::json;

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

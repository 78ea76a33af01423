//! Import and export jobs through the domain API on a real (temporary) store, with `file:///`
//! containers: a round trip between two hubs, a cancel before the run, jobs whose node died
//! (an export run again, an import ended `failed`: never left `running`), an import row with
//! NUL refused whole, and the scheduled jobs' API not seeing them.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use chrono::TimeDelta;
use ironhub_hub::jobs::import_export::LEASE;
use ironhub_hub::model::{DeviceSpec, ImportExportJob};
use ironhub_store::ManualClock;
use serde_json::json;

fn export_to(dir: &std::path::Path) -> ImportExportJob {
    ImportExportJob {
        job_type: "export".into(),
        output_blob_container_uri: Some(format!("file://{}", dir.display())),
        ..ImportExportJob::default()
    }
}

#[tokio::test]
async fn an_export_imports_into_another_hub() {
    let (a, _da) = common::temp_hub().await;
    let (b, _db) = common::temp_hub().await;
    let blobs = tempfile::tempdir().unwrap();
    for id in ["d1", "d2"] {
        a.put_device(id, &DeviceSpec::default(), None)
            .await
            .unwrap();
    }
    a.update_twin("d1", &json!({"tags": {"t": 1}}), Some("*"), false)
        .await
        .unwrap();
    let job = a
        .create_import_export_job(&export_to(blobs.path()))
        .await
        .unwrap();
    assert_eq!(job.status, "enqueued");
    a.run_due_jobs().await.unwrap();
    let done = a.get_import_export_job(&job.job_id).await.unwrap();
    assert_eq!((done.status.as_str(), done.progress), ("completed", 100));

    let import = import_from(blobs.path());
    let job = b.create_import_export_job(&import).await.unwrap();
    b.run_due_jobs().await.unwrap();
    assert_eq!(
        b.get_import_export_job(&job.job_id).await.unwrap().status,
        "completed"
    );
    let (da, db) = (
        a.get_device("d1").await.unwrap(),
        b.get_device("d1").await.unwrap(),
    );
    assert_eq!(da.authentication, db.authentication);
    let twin = serde_json::to_value(b.get_twin("d1").await.unwrap()).unwrap();
    assert_eq!(twin["tags"], json!({"t": 1}));
    assert!(!blobs.path().join("importErrors.log").exists());
    // Not a scheduled job.
    let page = b.query_jobs(None, None, None, None).await.unwrap();
    assert!(page.jobs.is_empty());
}

#[tokio::test]
async fn a_job_cancelled_before_it_runs_writes_nothing() {
    let (hub, _d) = common::temp_hub().await;
    let blobs = tempfile::tempdir().unwrap();
    let job = hub
        .create_import_export_job(&export_to(blobs.path()))
        .await
        .unwrap();
    let cancelled = hub.cancel_import_export_job(&job.job_id).await.unwrap();
    assert_eq!(cancelled.status, "cancelled");
    hub.run_due_jobs().await.unwrap();
    assert_eq!(
        hub.get_import_export_job(&job.job_id).await.unwrap().status,
        "cancelled"
    );
    assert!(std::fs::read_dir(blobs.path()).unwrap().next().is_none());
}

/// Marks the job `running` under `node` until `lease_until`, as a node that took it would.
async fn mark_running(
    hub: &ironhub_hub::Hub,
    job_id: &str,
    node: &str,
    until: chrono::DateTime<chrono::Utc>,
) {
    let key = format!("$importExport/{job_id}");
    let record = hub.store().get_job(&key).await.unwrap().unwrap();
    let mut doc = record.doc.clone();
    doc["job"]["status"] = json!("running");
    doc["node"] = json!(node);
    doc["leaseUntil"] = json!(until);
    hub.store()
        .write_job(&key, doc, Some(&record.etag))
        .await
        .unwrap()
        .unwrap();
}

fn import_from(dir: &std::path::Path) -> ImportExportJob {
    let uri = format!("file://{}", dir.display());
    ImportExportJob {
        job_type: "import".into(),
        input_blob_container_uri: Some(uri.clone()),
        output_blob_container_uri: Some(uri),
        ..ImportExportJob::default()
    }
}

#[tokio::test]
async fn a_job_whose_node_died_is_never_left_running() {
    let clock = Arc::new(ManualClock::default());
    let (hub, _d) = common::temp_hub().await;
    let hub = hub.with_clock(clock.clone());
    hub.put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    let blobs = tempfile::tempdir().unwrap();
    std::fs::write(blobs.path().join("devices.txt"), "{\"id\": \"n1\"}\n").unwrap();
    let lease = TimeDelta::from_std(LEASE).unwrap();
    let now = ironhub_store::Clock::now(clock.as_ref());

    // This node's own runs, found at a pass: the process that ran them is gone. The export
    // runs again; the import (its rows may not apply twice) ends failed.
    let export = hub
        .create_import_export_job(&export_to(blobs.path()))
        .await
        .unwrap();
    mark_running(&hub, &export.job_id, hub.node_id(), now + lease).await;
    let import = hub
        .create_import_export_job(&import_from(blobs.path()))
        .await
        .unwrap();
    mark_running(&hub, &import.job_id, hub.node_id(), now + lease).await;
    // Another node's import, while its lease holds, then after.
    let theirs = hub
        .create_import_export_job(&import_from(blobs.path()))
        .await
        .unwrap();
    mark_running(&hub, &theirs.job_id, "other-node", now + lease).await;

    hub.run_due_jobs().await.unwrap();
    assert_eq!(
        hub.get_import_export_job(&export.job_id)
            .await
            .unwrap()
            .status,
        "completed"
    );
    let job = hub.get_import_export_job(&import.job_id).await.unwrap();
    assert_eq!(job.status, "failed");
    assert!(job.failure_reason.unwrap().contains("interrupted"));
    assert!(
        hub.get_device("n1").await.is_err(),
        "the interrupted import is not run again"
    );
    assert_eq!(
        hub.get_import_export_job(&theirs.job_id)
            .await
            .unwrap()
            .status,
        "running"
    );

    clock.advance(lease + TimeDelta::seconds(1));
    hub.run_due_jobs().await.unwrap();
    let job = hub.get_import_export_job(&theirs.job_id).await.unwrap();
    assert_eq!(job.status, "failed");
    assert!(job.end_time_utc.is_some());
}

#[tokio::test]
async fn an_import_row_with_nul_changes_nothing_and_is_reported() {
    let (hub, _d) = common::temp_hub().await;
    let blobs = tempfile::tempdir().unwrap();
    let rows = [
        json!({"id": "nul-dev", "importMode": "create", "tags": {"site": "a\u{0}b"}}),
        json!({"id": "ok-dev", "importMode": "create", "tags": {"site": "lab"}}),
    ];
    let lines: Vec<String> = rows.iter().map(ToString::to_string).collect();
    std::fs::write(blobs.path().join("devices.txt"), lines.join("\n")).unwrap();
    let import = import_from(blobs.path());
    hub.create_import_export_job(&import).await.unwrap();
    hub.run_due_jobs().await.unwrap();
    // The row is refused whole: no device without its tags is left behind.
    assert!(hub.get_device("nul-dev").await.is_err());
    let twin = serde_json::to_value(hub.get_twin("ok-dev").await.unwrap()).unwrap();
    assert_eq!(twin["tags"], json!({"site": "lab"}));
    let errors = std::fs::read_to_string(blobs.path().join("importErrors.log")).unwrap();
    assert!(
        errors.contains("nul-dev") && errors.contains("ArgumentInvalid"),
        "{errors}"
    );
}

//! Cases of the jobs port.

use std::sync::Arc;

use serde_json::json;

use crate::{JobDeviceRecord, Store, WriteConflict};

/// Jobs are created once and replaced compare-and-swap, listed in id order; an etag is never
/// reused.
pub async fn jobs_are_written_compare_and_swap(
    store: Arc<dyn Store>,
    _clock: Arc<crate::ManualClock>,
) {
    assert!(store.get_job("j2").await.unwrap().is_none());
    let j2 = store
        .write_job("j2", json!({"jobId": "j2", "status": "queued"}), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .write_job("j2", json!({"jobId": "j2"}), None)
            .await
            .unwrap(),
        Err(WriteConflict::AlreadyExists)
    );
    store
        .write_job("j1", json!({"jobId": "j1"}), None)
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<_> = store
        .list_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.job_id)
        .collect();
    assert_eq!(ids, ["j1", "j2"]);
    let running = json!({"jobId": "j2", "status": "running"});
    assert_eq!(
        store
            .write_job("j2", running.clone(), Some("stale"))
            .await
            .unwrap(),
        Err(WriteConflict::EtagMismatch)
    );
    assert_eq!(
        store
            .write_job("nope", running.clone(), Some("*"))
            .await
            .unwrap(),
        Err(WriteConflict::NotFound)
    );
    let j2b = store
        .write_job("j2", running.clone(), Some(&j2.etag))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(j2b.etag, j2.etag);
    assert_eq!(store.get_job("j2").await.unwrap(), Some(j2b.clone()));
    // The etag read before is stale now: a second node's write on it loses.
    assert_eq!(
        store
            .write_job(
                "j2",
                json!({"jobId": "j2", "status": "cancelled"}),
                Some(&j2.etag)
            )
            .await
            .unwrap(),
        Err(WriteConflict::EtagMismatch)
    );
    assert_eq!(store.get_job("j2").await.unwrap().unwrap().doc, running);
}

/// A device is claimed for a job once, whoever asks; results list in device then job order.
pub async fn a_job_claims_each_device_once(store: Arc<dyn Store>, _clock: Arc<crate::ManualClock>) {
    let record = |job: &str, device: &str, status: &str| JobDeviceRecord {
        job_id: job.into(),
        device_id: device.into(),
        doc: json!({"jobId": job, "deviceId": device, "status": status}),
    };
    assert!(
        store
            .claim_job_device(record("j1", "d2", "running"))
            .await
            .unwrap()
    );
    // A second node asking for the same device of the same job gets nothing to do.
    assert!(
        !store
            .claim_job_device(record("j1", "d2", "running"))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_job_device(record("j1", "d1", "running"))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_job_device(record("j0", "d2", "running"))
            .await
            .unwrap()
    );
    store
        .put_job_device(record("j1", "d2", "completed"))
        .await
        .unwrap();
    let of_j1 = store.list_job_devices(Some("j1")).await.unwrap();
    assert_eq!(
        of_j1,
        vec![
            record("j1", "d1", "running"),
            record("j1", "d2", "completed")
        ]
    );
    let all: Vec<_> = store
        .list_job_devices(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.device_id, r.job_id))
        .collect();
    assert_eq!(
        all,
        [
            ("d1".to_owned(), "j1".to_owned()),
            ("d2".to_owned(), "j0".to_owned()),
            ("d2".to_owned(), "j1".to_owned()),
        ]
    );
    // The claim still holds after the result is replaced.
    assert!(
        !store
            .claim_job_device(record("j1", "d2", "running"))
            .await
            .unwrap()
    );
    assert!(store.list_job_devices(Some("j9")).await.unwrap().is_empty());
}

/// A device's result is handed over compare-and-swap on its whole document: only while it is
/// still what the caller read, so of two nodes taking one claim over only one wins.
pub async fn a_job_device_is_replaced_compare_and_swap(
    store: Arc<dyn Store>,
    _clock: Arc<crate::ManualClock>,
) {
    let record = |status: &str, node: &str| JobDeviceRecord {
        job_id: "j1".into(),
        device_id: "d1".into(),
        doc: json!({"jobId": "j1", "deviceId": "d1", "status": status, "node": node, "n": 1}),
    };
    // Nothing to replace yet.
    let running = record("running", "a");
    assert!(
        !store
            .replace_job_device(record("pending", ""), &running.doc)
            .await
            .unwrap()
    );
    assert!(store.list_job_devices(Some("j1")).await.unwrap().is_empty());
    assert!(store.claim_job_device(running.clone()).await.unwrap());
    assert!(
        store
            .replace_job_device(record("pending", ""), &running.doc)
            .await
            .unwrap()
    );
    // The claim read before is stale now: a second replacement on it loses.
    assert!(
        !store
            .replace_job_device(record("pending", "late"), &running.doc)
            .await
            .unwrap()
    );
    let pending = record("pending", "");
    assert!(
        store
            .replace_job_device(record("running", "b"), &pending.doc)
            .await
            .unwrap()
    );
    assert_eq!(
        store.list_job_devices(None).await.unwrap(),
        vec![record("running", "b")]
    );
}

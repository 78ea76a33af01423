//! Devices' runtime updates committed in groups: many at once, each caller told whether its
//! device exists, and each update read back once its call returned.

use std::sync::Arc;

use chrono::Utc;
use ironhub_embedded::SqliteStore;
use ironhub_store::prelude::*;
use ironhub_store::testkit::device;
use ironhub_store::{ConnectionState, DeviceWrite, RuntimeUpdate};

fn connected() -> RuntimeUpdate {
    RuntimeUpdate {
        connection_state: Some(ConnectionState::Connected),
        node: Some("n1".into()),
        at: Some(Utc::now()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_are_each_applied_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let writes = (0..200)
        .map(|i| DeviceWrite::Create(device(&format!("d{i}"))))
        .collect();
    store.write_devices(writes).await.unwrap().unwrap();
    // d0 to d199 exist; the last 100 updates name devices that do not (d401, d403, ...).
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let store = store.clone();
            let id = if i < 200 {
                format!("d{i}")
            } else {
                format!("d{}", 2 * i + 1)
            };
            tokio::spawn(async move {
                let found = store.update_device_runtime(&id, connected()).await.unwrap();
                // Read back at once: the update is committed when the call returns.
                let state = store
                    .get_device(&id)
                    .await
                    .unwrap()
                    .map(|d| d.connection_state);
                (i, found, state)
            })
        })
        .collect();
    for task in tasks {
        let (i, found, state) = task.await.unwrap();
        if i < 200 {
            assert!(found, "device {i} exists");
            assert_eq!(state, Some(ConnectionState::Connected), "device {i}");
        } else {
            assert!(!found, "update {i} names no device");
            assert_eq!(state, None);
        }
    }
    assert_eq!(store.device_counts().await.unwrap().connected, 200);
}

#[tokio::test]
async fn a_disconnection_from_another_node_leaves_the_device_connected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    store
        .write_devices(vec![DeviceWrite::Create(device("d"))])
        .await
        .unwrap()
        .unwrap();
    assert!(store.update_device_runtime("d", connected()).await.unwrap());
    let elsewhere = RuntimeUpdate {
        connection_state: Some(ConnectionState::Disconnected),
        node: Some("n2".into()),
        at: Some(Utc::now()),
    };
    assert!(store.update_device_runtime("d", elsewhere).await.unwrap());
    let d = store.get_device("d").await.unwrap().unwrap();
    assert_eq!(d.connection_state, ConnectionState::Connected);
}

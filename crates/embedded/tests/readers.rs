//! The embedded store's read-only connections: a read sees every write that returned before
//! it (on the durable writer and on the runtime one), and a read does not wait for a writer.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ironhub_embedded::SqliteStore;
use ironhub_store::prelude::*;
use ironhub_store::testkit::create_device;
use ironhub_store::{ConnectionState, DeviceStatus, DeviceWrite, RuntimeUpdate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_sees_the_write_that_returned_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    create_device(&store, "d").await;
    for round in 0..40 {
        // The durable writer: a new etag and status, read back at once.
        let mut record = store.get_device("d").await.unwrap().unwrap();
        record.status = if round % 2 == 0 {
            DeviceStatus::Disabled
        } else {
            DeviceStatus::Enabled
        };
        let written = store
            .write_devices(vec![DeviceWrite::Replace {
                record,
                if_match: None,
            }])
            .await
            .unwrap()
            .unwrap()[0]
            .clone()
            .unwrap();
        let read = store.get_device("d").await.unwrap().unwrap();
        assert_eq!((read.etag, read.status), (written.etag, written.status));

        // The runtime writer: a connection state, read back at once.
        let state = if round % 2 == 0 {
            ConnectionState::Connected
        } else {
            ConnectionState::Disconnected
        };
        let update = RuntimeUpdate {
            connection_state: Some(state),
            node: Some("n1".into()),
            at: Some(Utc::now()),
        };
        assert!(store.update_device_runtime("d", update).await.unwrap());
        let read = store.get_device("d").await.unwrap().unwrap();
        assert_eq!(read.connection_state, state, "round {round}");

        // A session kept, then forgotten.
        let names = vec![format!("feature-{round}")];
        store
            .set_mqtt_session("d", Some(names.clone()))
            .await
            .unwrap();
        assert_eq!(store.mqtt_session("d").await.unwrap(), Some(names));
        store.set_mqtt_session("d", None).await.unwrap();
        assert_eq!(store.mqtt_session("d").await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_does_not_wait_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    create_device(&store, "d").await;
    // Another connection holds the database's write lock, with a write not yet committed.
    let other = rusqlite::Connection::open(store.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    other
        .execute("UPDATE devices SET enabled = 0 WHERE device_id = 'd'", [])
        .unwrap();
    // The store's durable writer waits for that lock (holding its connection meanwhile) ...
    let writing = tokio::spawn({
        let store = store.clone();
        async move { create_device(&store, "e").await }
    });
    // ... and reads, which once queued behind it for the whole wait, go on meanwhile, and
    // see the last commit.
    for _ in 0..20 {
        let read = tokio::time::timeout(Duration::from_secs(5), store.get_device("d"))
            .await
            .expect("the read does not wait for the writer")
            .unwrap()
            .unwrap();
        assert_eq!(read.status, DeviceStatus::Enabled);
    }
    assert!(!writing.is_finished(), "the write waits for the lock");
    other.execute_batch("ROLLBACK").unwrap();
    tokio::time::timeout(Duration::from_secs(10), writing)
        .await
        .expect("the write goes through once the lock is free")
        .unwrap();
    assert!(store.get_device("e").await.unwrap().is_some());
}

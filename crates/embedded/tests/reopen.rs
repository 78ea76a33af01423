//! What the embedded engine keeps across a restart (the ports' testkit checks the rules; this
//! checks the files).

use chrono::{TimeDelta, Utc};
use ironhub_embedded::{SqliteEventLog, SqliteStore};
use ironhub_store::prelude::*;
use ironhub_store::testkit::file_notifications::notification;
use ironhub_store::testkit::{create_device, device};
use ironhub_store::{
    CertificateRecord, CertificateScope, DeviceWrite, DpsSettings, NewEvent, PartitionBounds,
    Retention, Store,
};
use std::path::Path;
use std::sync::Arc;

#[tokio::test]
async fn the_store_survives_reopen_and_is_only_opened_where_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let settings = DpsSettings {
        id_scope: "0ne0000ABCD".into(),
        policies: vec![],
        created_time: Utc::now(),
    };
    let certificate = {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let writes = ["c", "a"]
            .map(|id| DeviceWrite::Create(device(id)))
            .to_vec();
        store.write_devices(writes).await.unwrap().unwrap();
        create_device(&store, "b").await;
        store.dps_settings_or_init(settings.clone()).await.unwrap();
        let record = CertificateRecord {
            is_verified: true,
            ..ironhub_store::testkit::certificates::record("root")
        };
        store
            .put_certificate(CertificateScope::Hub, record, None)
            .await
            .unwrap()
            .unwrap()
    };
    let store = SqliteStore::open_existing(dir.path()).unwrap();
    let ids: Vec<_> = store
        .list_devices(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(store.dps_settings().await.unwrap(), Some(settings));
    assert_eq!(
        store
            .get_certificate(CertificateScope::Hub, "root")
            .await
            .unwrap(),
        Some(certificate)
    );
    assert!(SqliteStore::open_existing(&dir.path().join("nothing")).is_err());
}

fn ev(body: &str) -> NewEvent {
    NewEvent {
        device_id: "dev1".into(),
        module_id: None,
        system_properties: Default::default(),
        application_properties: Default::default(),
        body: body.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn the_event_log_survives_reopen_with_its_partitions_and_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let p = {
        let log = SqliteEventLog::open(dir.path(), 4).unwrap();
        let mut p = 0;
        for i in 0..3 {
            p = log.append(ev(&format!("m{i}"))).await.unwrap().partition;
        }
        log.create_consumer_group("cg").await.unwrap();
        log.set_checkpoint("cg", p, 2).await.unwrap();
        p
    };
    let log = SqliteEventLog::open(dir.path(), 8).unwrap();
    assert_eq!(
        log.partition_count(),
        4,
        "the partition count is fixed at creation"
    );
    assert_eq!(log.read(p, 1, 1).await.unwrap()[0].event.body, b"m1");
    assert_eq!(log.checkpoint("cg", p).await.unwrap(), Some(2));
    log.enforce_retention(Retention {
        max_age: chrono::Duration::zero() - chrono::Duration::seconds(1),
        max_bytes_per_partition: 1 << 30,
    })
    .await
    .unwrap();
    drop(log);
    let log = SqliteEventLog::open(dir.path(), 4).unwrap();
    assert_eq!(
        log.bounds(p).await.unwrap(),
        PartitionBounds { first: 3, next: 3 }
    );
    assert_eq!(
        log.append(ev("x")).await.unwrap().sequence_number,
        3,
        "numbering continues after retention empties a partition"
    );
}

#[tokio::test]
async fn a_store_from_before_node_ids_is_migrated_and_its_locks_belong_to_any_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rules = ironhub_store::testkit::rules();
    let now = Utc::now();
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        create_device(&store, "d").await;
        let message = ironhub_store::testkit::c2d::message(
            "d",
            "m1",
            ironhub_store::AckMode::None,
            now + TimeDelta::seconds(3600),
        );
        store
            .c2d_enqueue(message, rules, now)
            .await
            .unwrap()
            .unwrap();
        store
            .c2d_lock_next("d", "old", rules, now)
            .await
            .unwrap()
            .unwrap();
    }
    // Back to the schema of a server before node ids: no heartbeats, no lock_node column (and
    // no file upload notifications, no modules, no jobs, no module input queues, no reader
    // claims and no device state indexes, which came later: every migration after 7 must be
    // undone here, or reopening meets what it is about to create).
    let conn = rusqlite::Connection::open(dir.path().join("ironhub.db")).unwrap();
    conn.execute_batch(
        "DROP TABLE nodes;
         DROP TABLE file_notifications;
         DROP TABLE modules;
         DROP TABLE job_devices;
         DROP TABLE jobs;
         DROP TABLE module_inputs;
         DROP TABLE reader_claims;
         DROP INDEX devices_by_enabled;
         DROP INDEX devices_by_connected;
         ALTER TABLE c2d_messages DROP COLUMN lock_node;
         PRAGMA user_version = 7;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open_existing(dir.path()).unwrap();
    assert_eq!(
        store.c2d_lock_next("d", "new", rules, now).await.unwrap(),
        None
    );
    assert_eq!(
        store.c2d_release_locks("new").await.unwrap(),
        1,
        "a lock of no known node"
    );
    let again = store
        .c2d_lock_next("d", "new", rules, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.lock_node.as_deref(), Some("new"));
    // The later migrations ran too: the file upload notification queue works.
    let rules = ironhub_store::testkit::file_notifications::rules();
    store
        .file_notification_enqueue(notification("d/a", now), now + TimeDelta::hours(1))
        .await
        .unwrap();
    let locked = store.file_notification_lock(rules, now).await.unwrap();
    assert_eq!(locked.map(|l| l.notification.blob_name), Some("d/a".into()));
}

#[tokio::test]
async fn file_upload_notifications_survive_reopen_with_their_delivery_counts() {
    let dir = tempfile::tempdir().unwrap();
    let rules = ironhub_store::testkit::file_notifications::rules();
    let now = Utc::now();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        for blob in ["d1/a", "d1/b"] {
            store
                .file_notification_enqueue(notification(blob, now), now + TimeDelta::hours(1))
                .await
                .unwrap();
        }
        let a = store
            .file_notification_lock(rules, now)
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .file_notification_settle(&a.lock_token, false, now)
                .await
                .unwrap()
        );
    }
    let store = SqliteStore::open_existing(dir.path()).unwrap();
    let a = store
        .file_notification_lock(rules, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.notification.blob_name.as_str(), a.delivery_count),
        ("d1/a", 2)
    );
    let b = store
        .file_notification_lock(rules, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.notification, notification("d1/b", now));
    assert_eq!(b.delivery_count, 1);
}

// A batch torn by a crash: the embedded event log writes a batch as one SQLite transaction,
// appended to the write-ahead log and fsynced once. A crash while those frames are written
// leaves the WAL cut somewhere inside them, before or inside their commit frame; recovery
// must then drop the whole batch and keep what was committed before it.

/// A log's write-ahead log file.
fn wal(dir: &Path) -> std::path::PathBuf {
    dir.join("events.db-wal")
}

/// What a crash leaves when the WAL was written up to `len` bytes: the database file and the
/// WAL cut there, in a directory of its own.
#[allow(clippy::unwrap_used)]
fn crashed_copy(from: &Path, len: u64) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    std::fs::copy(from.join("events.db"), to.path().join("events.db")).unwrap();
    std::fs::copy(wal(from), wal(to.path())).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(wal(to.path()))
        .unwrap()
        .set_len(len)
        .unwrap();
    to
}

#[tokio::test]
async fn a_batch_cut_anywhere_by_a_crash_is_recovered_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteEventLog::open(dir.path(), 1).unwrap();
    log.append(ev("committed")).await.unwrap();
    let start = std::fs::metadata(wal(dir.path())).unwrap().len();
    let batch: Vec<NewEvent> = (0..20)
        .map(|i| ev(&format!("{i}:{}", "x".repeat(3000))))
        .collect();
    log.append_batch(batch.clone()).await.unwrap();
    let end = std::fs::metadata(wal(dir.path())).unwrap().len();
    assert!(end > start, "the batch is in the WAL");

    // Cut inside the batch's frames, down to the last byte of its commit frame.
    let step = ((end - start) / 16).max(1);
    let cuts = (start..end).step_by(step as usize).chain([end - 1]);
    for cut in cuts {
        let copy = crashed_copy(dir.path(), cut);
        let recovered = SqliteEventLog::open(copy.path(), 1).unwrap();
        let read = recovered.read(0, 0, 100).await.unwrap();
        let bodies: Vec<&[u8]> = read.iter().map(|e| e.event.body.as_slice()).collect();
        assert_eq!(
            bodies,
            [b"committed".as_slice()],
            "cut at {cut} of {start}..{end}"
        );
        // The numbering goes on after the last committed event.
        let next = recovered.append(ev("after")).await.unwrap();
        assert_eq!(next.sequence_number, 1);
    }

    // The whole WAL: the whole batch.
    let copy = crashed_copy(dir.path(), end);
    let recovered = SqliteEventLog::open(copy.path(), 1).unwrap();
    let read = recovered.read(0, 0, 100).await.unwrap();
    assert_eq!(read.len(), 21);
    assert_eq!(
        read[1..]
            .iter()
            .map(|e| e.event.clone())
            .collect::<Vec<_>>(),
        batch
    );
}

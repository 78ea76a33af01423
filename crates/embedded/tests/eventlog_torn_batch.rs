//! A batch torn by a crash: the embedded event log writes a batch as one SQLite transaction,
//! appended to the write-ahead log and fsynced once. A crash while those frames are written
//! leaves the WAL cut somewhere inside them, before or inside their commit frame; recovery
//! must then drop the whole batch and keep what was committed before it.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use ironhub_embedded::SqliteEventLog;
use ironhub_store::{EventLog, NewEvent};

fn ev(body: &str) -> NewEvent {
    NewEvent {
        device_id: "dev1".into(),
        module_id: None,
        system_properties: Default::default(),
        application_properties: Default::default(),
        body: body.as_bytes().to_vec(),
    }
}

fn wal(dir: &Path) -> std::path::PathBuf {
    dir.join("events.db-wal")
}

/// What a crash leaves when the WAL was written up to `len` bytes: the database file and the
/// WAL cut there, in a directory of its own.
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
        assert_eq!(bodies, [b"committed".as_slice()], "cut at {cut} of {start}..{end}");
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
        read[1..].iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        batch
    );
}

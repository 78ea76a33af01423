//! The embedded engine passes the ports' conformance suite.

use std::sync::Arc;

use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteEventStreams, SqliteStore};
use ironhub_store::ManualClock;

mod store {
    use super::*;

    ironhub_store::store_suite!(|clock: Arc<ManualClock>| {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap().with_clock(clock);
        (Arc::new(store), dir)
    });
}

mod event_log {
    use super::*;

    ironhub_store::event_log_suite!(
        |partitions: u32| {
            let dir = tempfile::tempdir().unwrap();
            let log = SqliteEventLog::open(dir.path(), partitions).unwrap();
            (Arc::new(log), dir)
        },
        fail_at: fail_at
    );

    /// Makes the log's insert of one event fail (a trigger in its file), or heals it.
    #[allow(clippy::unwrap_used)]
    fn fail_at(dir: &tempfile::TempDir, at: Option<(u32, u64)>) {
        let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        conn.execute_batch("DROP TRIGGER IF EXISTS fail_at")
            .unwrap();
        if let Some((partition, seq)) = at {
            conn.execute_batch(&format!(
                "CREATE TRIGGER fail_at BEFORE INSERT ON events
                 WHEN NEW.partition = {partition} AND NEW.seq = {seq}
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            ))
            .unwrap();
        }
    }
}

mod streams {
    use super::*;

    ironhub_store::event_streams_suite!(|| {
        let dir = tempfile::tempdir().unwrap();
        let streams = SqliteEventStreams::open(&dir.path().join("streams")).unwrap();
        (Arc::new(streams), dir)
    });
}

mod bus {
    use super::*;

    ironhub_store::bus_suite!(|| {
        let a = LocalBus::with_node("a");
        let b = a.join("b");
        (Arc::new(a), Arc::new(b))
    });
}

mod rate_windows {
    use super::*;

    ironhub_store::rate_windows_suite!(|| {
        let dir = tempfile::tempdir().unwrap();
        let a = SqliteStore::open(dir.path()).unwrap();
        let b = SqliteStore::open(dir.path()).unwrap();
        (Arc::new(a), Arc::new(b), dir)
    });
}

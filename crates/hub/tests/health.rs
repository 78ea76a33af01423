//! Readiness: ready over answering backends, not ready (naming the backend) when the event log
//! does not answer within the bound, and not ready once the drain began.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};
use ironhub_store::{Event, EventLog, NewEvent, PartitionBounds, Result, Retention, StartPosition};

/// An event log whose `bounds` never answers (a partitioned or stalled engine); the rest is
/// the embedded log's.
#[derive(Debug)]
struct Stalled(SqliteEventLog);

#[async_trait]
impl EventLog for Stalled {
    fn partition_count(&self) -> u32 {
        self.0.partition_count()
    }
    async fn append(&self, event: NewEvent) -> Result<Event> {
        self.0.append(event).await
    }
    async fn read(&self, partition: u32, from: u64, max: usize) -> Result<Vec<Event>> {
        self.0.read(partition, from, max).await
    }
    async fn bounds(&self, _partition: u32) -> Result<PartitionBounds> {
        std::future::pending().await
    }
    async fn resolve(&self, partition: u32, start: StartPosition) -> Result<u64> {
        self.0.resolve(partition, start).await
    }
    async fn wait_for(&self, partition: u32, sequence: u64, timeout: Duration) -> bool {
        self.0.wait_for(partition, sequence, timeout).await
    }
    async fn consumer_groups(&self) -> Result<Vec<String>> {
        self.0.consumer_groups().await
    }
    async fn create_consumer_group(&self, name: &str) -> Result<bool> {
        self.0.create_consumer_group(name).await
    }
    async fn delete_consumer_group(&self, name: &str) -> Result<bool> {
        self.0.delete_consumer_group(name).await
    }
    async fn checkpoint(&self, group: &str, partition: u32) -> Result<Option<u64>> {
        self.0.checkpoint(group, partition).await
    }
    async fn set_checkpoint(&self, group: &str, partition: u32, next: u64) -> Result<()> {
        self.0.set_checkpoint(group, partition, next).await
    }
    async fn enforce_retention(&self, retention: Retention) -> Result<u64> {
        self.0.enforce_retention(retention).await
    }
}

async fn hub_over(dir: &std::path::Path, stalled: bool) -> Hub {
    let log = SqliteEventLog::open(dir, 4).unwrap();
    let events: Arc<dyn EventLog> = if stalled {
        Arc::new(Stalled(log))
    } else {
        Arc::new(log)
    };
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir).unwrap()),
        events,
        bus: Arc::new(LocalBus::new()),
    };
    Hub::open(backends, vec!["myhub.example".into()])
        .await
        .unwrap()
}

#[tokio::test]
async fn readiness_names_what_does_not_answer_and_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_over(dir.path(), false).await;
    let ready = hub.readiness(Duration::from_secs(2)).await;
    assert!(ready.ready, "{ready:?}");
    assert!(ready.failed.is_empty());
    hub.drain().begin();
    let draining = hub.readiness(Duration::from_secs(2)).await;
    assert!(!draining.ready);
    assert_eq!(draining.failed, ["draining"]);

    let stalled_dir = tempfile::tempdir().unwrap();
    let stalled = hub_over(stalled_dir.path(), true).await;
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        stalled.readiness(Duration::from_millis(200)),
    )
    .await
    .expect("readiness answers within its bound");
    assert!(!answered.ready);
    assert_eq!(answered.failed, ["eventLog"]);
    assert_eq!(
        serde_json::to_value(&answered).unwrap(),
        serde_json::json!({"ready": false, "failed": ["eventLog"]})
    );
}

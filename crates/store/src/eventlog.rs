//! The event log: telemetry, partitioned by device, ordered per partition, durable before it
//! is acknowledged, read by consumer groups that keep checkpoints.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;

/// The consumer group every hub has.
pub const DEFAULT_CONSUMER_GROUP: &str = "$Default";

/// A message to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewEvent {
    pub device_id: String,
    pub module_id: Option<String>,
    /// IoT Hub's system properties (`message-id`, `iothub-connection-device-id`, …).
    pub system_properties: BTreeMap<String, String>,
    /// The sender's properties; `None` is a property sent without a value.
    pub application_properties: BTreeMap<String, Option<String>>,
    pub body: Vec<u8>,
}

/// A message in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub partition: u32,
    /// Position in the partition: 0, 1, 2, … with no gaps but those left by retention.
    pub sequence_number: u64,
    pub enqueued_time: DateTime<Utc>,
    #[serde(flatten)]
    pub event: NewEvent,
}

/// Where a reader starts in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest retained event.
    Earliest,
    /// Only events appended from now on.
    Latest,
    /// The event with this sequence number (or the first after it that is retained).
    Sequence(u64),
    /// The first event enqueued at or after this time.
    EnqueuedTime(DateTime<Utc>),
}

/// The retained range of a partition: sequence numbers `first..next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionBounds {
    pub first: u64,
    pub next: u64,
}

/// How long and how much the log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: chrono::Duration,
    /// Bytes of message bodies kept per partition.
    pub max_bytes_per_partition: u64,
}

impl Default for Retention {
    fn default() -> Self {
        // IoT Hub keeps a day by default; 256 MiB a partition bounds the disk.
        Retention {
            max_age: chrono::Duration::days(1),
            max_bytes_per_partition: 256 * 1024 * 1024,
        }
    }
}

/// The partition a device's events go to: stable across restarts and nodes.
pub fn partition_for(device_id: &str, partitions: u32) -> u32 {
    // FNV-1a: tiny, stable, and good enough to spread device ids.
    let hash = device_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    u32::try_from(hash % u64::from(partitions.max(1))).unwrap_or(0)
}

/// See the module documentation. Appends return only once the event is durable.
#[async_trait]
pub trait EventLog: Send + Sync + std::fmt::Debug + 'static {
    /// How many partitions the log has (fixed when it is created).
    fn partition_count(&self) -> u32;
    /// Appends an event to its device's partition; returns it as stored, once durable.
    async fn append(&self, event: NewEvent) -> Result<Event>;
    /// Appends a batch of events (each to its device's partition, after what it had) in the
    /// order given; returns them as stored, once all are durable, or the failure. MQTT's runs
    /// of buffered QoS 1 telemetry and AMQP/HTTPS batches come this way. An engine that can make a batch atomic
    /// (all its events durable together, or none) overrides this and [`Self::atomic_batches`];
    /// this default appends one event after the other and stops at the first failure, which
    /// it reports, leaving the events before it in the log.
    async fn append_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Event>> {
        let mut appended = Vec::with_capacity(events.len());
        for event in events {
            appended.push(self.append(event).await?);
        }
        Ok(appended)
    }
    /// Whether [`Self::append_batch`] is atomic (a failed batch leaves nothing in the log).
    fn atomic_batches(&self) -> bool {
        false
    }
    /// Appends an event read from another log (a hub moved by `ironhub migrate --from`) to
    /// its device's partition here, keeping its enqueued time and properties; its sequence
    /// number is this log's next. Import a partition's events in order. The default refuses:
    /// an engine that can keep the time overrides it.
    async fn import(&self, event: Event) -> Result<Event> {
        let _ = event;
        Err(crate::StoreError::Engine(
            "this event log cannot import events".into(),
        ))
    }
    /// Up to `max` events of a partition from sequence number `from` on.
    async fn read(&self, partition: u32, from: u64, max: usize) -> Result<Vec<Event>>;
    /// The retained range of a partition.
    async fn bounds(&self, partition: u32) -> Result<PartitionBounds>;
    /// The sequence number a reader starting at `start` reads first.
    async fn resolve(&self, partition: u32, start: StartPosition) -> Result<u64>;
    /// Waits until the partition has an event at or after `sequence`, or `timeout` passes.
    /// Returns whether there is one.
    async fn wait_for(&self, partition: u32, sequence: u64, timeout: std::time::Duration) -> bool;

    /// Consumer groups, `$Default` first.
    async fn consumer_groups(&self) -> Result<Vec<String>>;
    /// Creates a consumer group; false if it existed.
    async fn create_consumer_group(&self, name: &str) -> Result<bool>;
    /// Deletes a consumer group and its checkpoints; false if there was none.
    async fn delete_consumer_group(&self, name: &str) -> Result<bool>;
    /// The checkpoint of a group in a partition: the next sequence number to read.
    async fn checkpoint(&self, group: &str, partition: u32) -> Result<Option<u64>>;
    /// Stores a checkpoint.
    async fn set_checkpoint(&self, group: &str, partition: u32, next: u64) -> Result<()>;

    /// Drops what retention no longer keeps; returns how many events were dropped.
    async fn enforce_retention(&self, retention: Retention) -> Result<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_for("dev1", 4), partition_for("dev1", 4));
        let used: std::collections::HashSet<u32> = (0..64)
            .map(|i| partition_for(&format!("device-{i}"), 4))
            .collect();
        assert_eq!(used.len(), 4);
        assert_eq!(partition_for("x", 1), 0);
    }
}

//! Reading telemetry back, as an Event Hubs consumer would: consumer groups, positions
//! (start, end, a sequence number, an enqueued time, or the group's checkpoint), optional
//! partition and device filters, and checkpoints. Transport-free: an adapter renders events.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ironhub_store::eventlog::{DEFAULT_CONSUMER_GROUP, partition_for};
use ironhub_store::{Event, EventLog, StartPosition};
use tokio::time::Instant;

use crate::{Hub, HubError};
pub use ironhub_wire::hub::{ConsumerGroupView, PartitionView};

/// Most events read from one partition at a time.
const BATCH: usize = 100;

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The oldest retained event (`start`).
    Start,
    /// Only events enqueued from now on (`end`).
    End,
    /// The event with this sequence number, or the first retained after it (`seq:N`, or
    /// `offset:N`: offsets are sequence numbers here).
    Sequence(u64),
    /// The first event enqueued at or after this time (`time:2024-05-01T12:00:00Z`).
    Time(DateTime<Utc>),
    /// The consumer group's checkpoint in each partition; the oldest retained event in a
    /// partition without one (`checkpoint`).
    Checkpoint,
}

impl FromStr for ReadFrom {
    type Err = HubError;

    fn from_str(s: &str) -> Result<Self, HubError> {
        let bad = || {
            HubError::ArgumentInvalid(format!(
                "The position '{s}' is not valid: use start, end, checkpoint, seq:N, offset:N or time:RFC3339."
            ))
        };
        Ok(match s {
            "start" | "earliest" | "-1" => ReadFrom::Start,
            "end" | "latest" | "@latest" => ReadFrom::End,
            "checkpoint" => ReadFrom::Checkpoint,
            _ => {
                let (kind, value) = s.split_once(':').ok_or_else(bad)?;
                match kind {
                    "seq" | "offset" => ReadFrom::Sequence(value.parse().map_err(|_| bad())?),
                    "time" => ReadFrom::Time(
                        DateTime::parse_from_rfc3339(value)
                            .map_err(|_| bad())?
                            .with_timezone(&Utc),
                    ),
                    _ => return Err(bad()),
                }
            }
        })
    }
}

/// The name of the hub's Event Hubs-compatible entity (the `EntityPath` of its built-in
/// endpoint): the first label of the host name, as IoT Hub names the endpoint after the hub.
pub fn event_hub_name(host_name: &str) -> &str {
    if host_name.parse::<std::net::IpAddr>().is_ok() {
        return host_name;
    }
    host_name.split('.').next().unwrap_or(host_name)
}

/// Event Hubs' rule for consumer group names: 1–50 letters, digits, `.`, `-`, `_`, starting
/// and ending with a letter or digit.
fn validate_group_name(name: &str) -> Result<(), HubError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 50
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric);
    if ok {
        Ok(())
    } else {
        Err(HubError::ArgumentInvalid(format!(
            "The consumer group name '{name}' is not valid: use 1 to 50 letters, digits, '.', '-' or '_', starting and ending with a letter or digit."
        )))
    }
}

/// Reads a consumer group's events from its positions, partition by partition, in order
/// within each partition. Not a subscription: nothing is recorded unless a checkpoint is set.
#[derive(Debug)]
pub struct EventReader {
    log: Arc<dyn EventLog>,
    device: Option<String>,
    /// Per partition read: (partition, next sequence number).
    positions: Vec<(u32, u64)>,
}

impl EventReader {
    /// The partitions read, with the next sequence number of each.
    pub fn positions(&self) -> &[(u32, u64)] {
        &self.positions
    }

    /// The next events (of the device filter, if any), waiting up to `wait` for some to be
    /// enqueued; empty when none came in time.
    pub async fn next_batch(&mut self, wait: Duration) -> Result<Vec<Event>, HubError> {
        let deadline = Instant::now() + wait;
        loop {
            let mut out = Vec::new();
            let mut progressed = false;
            for (partition, next) in &mut self.positions {
                let events = self.log.read(*partition, *next, BATCH).await?;
                if let Some(last) = events.last() {
                    progressed = true;
                    *next = last.sequence_number + 1;
                }
                out.extend(events.into_iter().filter(|e| {
                    self.device
                        .as_deref()
                        .is_none_or(|d| e.event.device_id == d)
                }));
            }
            if !out.is_empty() {
                return Ok(out);
            }
            if progressed {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(out);
            }
            // Wait for whichever partition gets an event first.
            let mut waits = tokio::task::JoinSet::new();
            for &(partition, next) in &self.positions {
                let log = self.log.clone();
                waits.spawn(async move { log.wait_for(partition, next, left).await });
            }
            while let Some(arrived) = waits.join_next().await {
                if arrived.unwrap_or(false) {
                    break;
                }
            }
            waits.abort_all();
        }
    }
}

impl Hub {
    fn check_partition(&self, partition: u32) -> Result<(), HubError> {
        if partition < self.events.partition_count() {
            Ok(())
        } else {
            Err(HubError::PartitionNotFound(partition))
        }
    }

    async fn check_group(&self, group: &str) -> Result<(), HubError> {
        if self
            .events
            .consumer_groups()
            .await?
            .iter()
            .any(|g| g == group)
        {
            Ok(())
        } else {
            Err(HubError::ConsumerGroupNotFound(group.to_owned()))
        }
    }

    async fn partition_view(&self, partition: u32) -> Result<PartitionView, HubError> {
        let bounds = self.events.bounds(partition).await?;
        Ok(PartitionView {
            partition_id: partition.to_string(),
            beginning_sequence_number: bounds.first,
            last_enqueued_sequence_number: i64::try_from(bounds.next).unwrap_or(i64::MAX) - 1,
            is_empty: bounds.first == bounds.next,
            checkpoint_sequence_number: None,
        })
    }

    /// One partition's retained range.
    pub async fn partition(&self, partition: u32) -> Result<PartitionView, HubError> {
        self.check_partition(partition)?;
        self.partition_view(partition).await
    }

    /// Every partition's retained range.
    pub async fn partitions(&self) -> Result<Vec<PartitionView>, HubError> {
        let mut out = Vec::new();
        for p in 0..self.events.partition_count() {
            out.push(self.partition_view(p).await?);
        }
        Ok(out)
    }

    /// The last event a partition holds, if it holds any (Event Hubs reports its offset and
    /// enqueued time in the partition's properties).
    pub async fn last_event(&self, partition: u32) -> Result<Option<Event>, HubError> {
        self.check_partition(partition)?;
        let bounds = self.events.bounds(partition).await?;
        if bounds.next <= bounds.first {
            return Ok(None);
        }
        Ok(self
            .events
            .read(partition, bounds.next - 1, 1)
            .await?
            .into_iter()
            .next())
    }

    /// Consumer group names, `$Default` first.
    pub async fn consumer_groups(&self) -> Result<Vec<String>, HubError> {
        Ok(self.events.consumer_groups().await?)
    }

    /// A consumer group with its checkpoints and each partition's range.
    pub async fn consumer_group(&self, group: &str) -> Result<ConsumerGroupView, HubError> {
        self.check_group(group).await?;
        let mut partitions = Vec::new();
        for p in 0..self.events.partition_count() {
            let mut view = self.partition_view(p).await?;
            let next = self.events.checkpoint(group, p).await?;
            view.checkpoint_sequence_number = Some(next.and_then(|n| n.checked_sub(1)));
            partitions.push(view);
        }
        Ok(ConsumerGroupView {
            name: group.to_owned(),
            partitions,
        })
    }

    /// Creates a consumer group; false if it already existed.
    pub async fn create_consumer_group(&self, group: &str) -> Result<bool, HubError> {
        if group == DEFAULT_CONSUMER_GROUP {
            return Ok(false);
        }
        validate_group_name(group)?;
        Ok(self.events.create_consumer_group(group).await?)
    }

    /// Deletes a consumer group and its checkpoints (`$Default` cannot be deleted).
    pub async fn delete_consumer_group(&self, group: &str) -> Result<(), HubError> {
        if group == DEFAULT_CONSUMER_GROUP {
            return Err(HubError::ArgumentInvalid(
                "The $Default consumer group cannot be deleted.".into(),
            ));
        }
        if self.events.delete_consumer_group(group).await? {
            Ok(())
        } else {
            Err(HubError::ConsumerGroupNotFound(group.to_owned()))
        }
    }

    /// Records that `group` has processed a partition up to and including the event with
    /// `sequence_number` (Event Hubs' checkpoint): `from=checkpoint` resumes after it.
    pub async fn set_checkpoint(
        &self,
        group: &str,
        partition: u32,
        sequence_number: u64,
    ) -> Result<(), HubError> {
        self.check_partition(partition)?;
        self.check_group(group).await?;
        let bounds = self.events.bounds(partition).await?;
        if sequence_number >= bounds.next {
            return Err(HubError::ArgumentInvalid(format!(
                "Partition {partition} has no event {sequence_number} to checkpoint (its last sequence number is {}).",
                i128::from(bounds.next) - 1
            )));
        }
        Ok(self
            .events
            .set_checkpoint(group, partition, sequence_number + 1)
            .await?)
    }

    /// Opens a reader for `group` from `from`, over one partition or all (only the device's
    /// partition when a device filter is given).
    pub async fn open_reader(
        &self,
        group: &str,
        from: ReadFrom,
        partition: Option<u32>,
        device_id: Option<String>,
    ) -> Result<EventReader, HubError> {
        self.check_group(group).await?;
        let count = self.events.partition_count();
        let partitions: Vec<u32> = match (partition, &device_id) {
            (Some(p), _) => {
                self.check_partition(p)?;
                vec![p]
            }
            (None, Some(d)) => vec![partition_for(d, count)],
            (None, None) => (0..count).collect(),
        };
        let mut positions = Vec::with_capacity(partitions.len());
        for p in partitions {
            let start = match from {
                ReadFrom::Start => StartPosition::Earliest,
                ReadFrom::End => StartPosition::Latest,
                ReadFrom::Sequence(s) => StartPosition::Sequence(s),
                ReadFrom::Time(t) => StartPosition::EnqueuedTime(t),
                ReadFrom::Checkpoint => match self.events.checkpoint(group, p).await? {
                    Some(next) => StartPosition::Sequence(next),
                    None => StartPosition::Earliest,
                },
            };
            positions.push((p, self.events.resolve(p, start).await?));
        }
        Ok(EventReader {
            log: self.events.clone(),
            device: device_id,
            positions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse() {
        assert_eq!("start".parse::<ReadFrom>().unwrap(), ReadFrom::Start);
        assert_eq!("end".parse::<ReadFrom>().unwrap(), ReadFrom::End);
        assert_eq!(
            "seq:42".parse::<ReadFrom>().unwrap(),
            ReadFrom::Sequence(42)
        );
        assert_eq!(
            "offset:7".parse::<ReadFrom>().unwrap(),
            ReadFrom::Sequence(7)
        );
        assert_eq!(
            "checkpoint".parse::<ReadFrom>().unwrap(),
            ReadFrom::Checkpoint
        );
        let t = "time:2024-05-01T12:00:00+02:00"
            .parse::<ReadFrom>()
            .unwrap();
        assert_eq!(
            t,
            ReadFrom::Time("2024-05-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap())
        );
        for bad in ["", "seq:", "seq:-1", "time:yesterday", "middle", "seq:1:2"] {
            let e = bad.parse::<ReadFrom>().unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
    }

    #[test]
    fn event_hub_names() {
        assert_eq!(event_hub_name("myhub.azure-devices.net"), "myhub");
        assert_eq!(event_hub_name("localhost"), "localhost");
        assert_eq!(event_hub_name("127.0.0.2"), "127.0.0.2");
    }

    #[test]
    fn group_names() {
        for ok in ["a", "cg1", "my.group-1_x", &"a".repeat(50)] {
            validate_group_name(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "a b", "$x", &"a".repeat(51)] {
            assert!(validate_group_name(bad).is_err(), "{bad}");
        }
    }
}

//! ironhub's REST view of the telemetry it keeps (`/events`): partitions and consumer groups,
//! named as Event Hubs' partition and consumer group properties. IoT Hub itself offers this
//! over its Event Hubs-compatible endpoint (AMQP), not REST.

use serde::{Deserialize, Deserializer, Serialize};

/// A partition's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PartitionView {
    pub partition_id: String,
    /// The oldest retained sequence number.
    pub beginning_sequence_number: u64,
    /// The newest sequence number; -1 when nothing was ever enqueued.
    pub last_enqueued_sequence_number: i64,
    pub is_empty: bool,
    /// In a consumer group's view: the sequence number of the last event the group
    /// checkpointed in this partition (`null` when it has none); reading `from=checkpoint`
    /// resumes after it. Absent outside a consumer group's view.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub checkpoint_sequence_number: Option<Option<u64>>,
}

/// A field that is present reads as `Some`, even when it is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

/// A consumer group with its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupView {
    pub name: String,
    #[serde(default)]
    pub partitions: Vec<PartitionView>,
}

/// An entry of `GET /events/consumergroups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConsumerGroupName {
    pub name: String,
}

/// `GET /events`: the partitions and the consumer groups. Fields are declared in the order
/// of their JSON names, which is the order the server has always written them in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct EventsProperties {
    pub consumer_groups: Vec<String>,
    pub partition_count: usize,
    #[serde(serialize_with = "crate::keys_in_order")]
    pub partitions: Vec<PartitionView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_checkpoint_reads_back_as_absent_null_or_a_number() {
        let group: ConsumerGroupView = serde_json::from_value(json!({
            "name": "g",
            "partitions": [
                {"partitionId": "0", "beginningSequenceNumber": 0,
                 "lastEnqueuedSequenceNumber": -1, "isEmpty": true,
                 "checkpointSequenceNumber": null},
                {"partitionId": "1", "beginningSequenceNumber": 0,
                 "lastEnqueuedSequenceNumber": 4, "isEmpty": false,
                 "checkpointSequenceNumber": 3},
                {"partitionId": "2", "beginningSequenceNumber": 0,
                 "lastEnqueuedSequenceNumber": 4, "isEmpty": false}
            ]
        }))
        .unwrap();
        let checkpoints: Vec<_> = group
            .partitions
            .iter()
            .map(|p| p.checkpoint_sequence_number)
            .collect();
        assert_eq!(checkpoints, [Some(None), Some(Some(3)), None]);
        let back = serde_json::to_value(&group).unwrap();
        assert_eq!(
            back["partitions"][0]["checkpointSequenceNumber"],
            json!(null)
        );
        assert!(
            back["partitions"][2]
                .get("checkpointSequenceNumber")
                .is_none()
        );
    }

    #[test]
    fn the_events_properties_keep_their_byte_order() {
        // `GET /events` has always written its partitions with their keys in order; a
        // consumer group's view writes the same partitions in field order.
        let partition = PartitionView {
            partition_id: "0".into(),
            beginning_sequence_number: 0,
            last_enqueued_sequence_number: -1,
            is_empty: true,
            checkpoint_sequence_number: None,
        };
        let properties = EventsProperties {
            consumer_groups: vec!["$Default".into()],
            partition_count: 1,
            partitions: vec![partition.clone()],
        };
        assert_eq!(
            serde_json::to_string(&properties).unwrap(),
            r#"{"consumerGroups":["$Default"],"partitionCount":1,"partitions":[{"beginningSequenceNumber":0,"isEmpty":true,"lastEnqueuedSequenceNumber":-1,"partitionId":"0"}]}"#
        );
        assert!(
            serde_json::to_string(&partition)
                .unwrap()
                .starts_with(r#"{"partitionId":"0","beginningSequenceNumber":0"#)
        );
    }
}

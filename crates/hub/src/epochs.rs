//! Exclusive readers of a partition (Event Hubs' epoch receivers, the SDKs' `owner_level`):
//! on one consumer group and partition, a reader with an epoch disconnects the readers with a
//! lower or equal epoch and every reader without one; a reader with a lower epoch than the
//! holder's, and a reader without epoch while an epoch reader holds, is refused.
//!
//! Who holds a partition is kept on the device bus, so the rule holds across the nodes of a
//! hub: the holding epoch reader is attached as the bus connection of a name no device or
//! module can have (`$partition/{entity}/{group}/{partition}`, three slashes). A newcomer with
//! an epoch asks the holder, wherever it is, with a bus call (`$epoch`, its epoch as text): the
//! holder yields (200) when the newcomer's epoch is at least its own, else refuses (409 with
//! its epoch). The newcomer then attaches, which also disconnects a holder that did not answer.
//! Readers without epoch only watch the name's presence and leave when an epoch reader
//! attaches.
//!
//! Limit: two epoch readers arriving at the same time on a free partition both attach, and the
//! later attach wins whatever the epochs (the bus has no compare-and-swap on presence).

use std::sync::Arc;
use std::time::Duration;

use ironhub_store::{Attachment, BusError, BusMessage, DeviceBus, MethodCall, MethodResponse};

use crate::Hub;

/// The bus call an epoch newcomer asks the holder with.
const EPOCH_CALL: &str = "$epoch";
/// How long a newcomer waits for the holder's answer before it takes the partition anyway.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reader without epoch waits for an epoch reader in one go (it then looks again).
const WATCH: Duration = Duration::from_secs(3600);

/// Why a reader was refused or disconnected (Event Hubs' `ReceiverDisconnected`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReaderDisconnected(pub String);

/// A reader's place on a partition: held until dropped; [`PartitionHold::lost`] says when
/// another reader took it.
#[derive(Debug)]
pub struct PartitionHold {
    bus: Arc<dyn DeviceBus>,
    key: String,
    group: String,
    partition: u32,
    /// The reader's epoch and its bus connection; `None` for a reader without epoch.
    epoch: Option<(i64, Attachment)>,
}

/// The bus name of a partition's exclusive reader. Event hub and consumer group names are
/// case-insensitive.
fn bus_name(entity: &str, group: &str, partition: u32) -> String {
    format!(
        "$partition/{}/{}/{partition}",
        entity.to_lowercase(),
        group.to_lowercase()
    )
}

impl Hub {
    /// Places a reader of `partition` of consumer group `group` of event hub `entity`, with
    /// `epoch` or none (see the module documentation).
    pub async fn hold_partition(
        &self,
        entity: &str,
        group: &str,
        partition: u32,
        epoch: Option<i64>,
    ) -> Result<PartitionHold, ReaderDisconnected> {
        let bus = self.bus().clone();
        let key = bus_name(entity, group, partition);
        let held = bus.presence(&key).await.is_some();
        let epoch = match epoch {
            None if held => {
                return Err(ReaderDisconnected(format!(
                    "A receiver with an epoch holds partition {partition} of consumer group \
                     '{group}'; a receiver without epoch cannot be created. Close the epoch \
                     receiver or give this one a higher epoch."
                )));
            }
            None => None,
            Some(epoch) => {
                if held {
                    let asked = bus
                        .call_method(
                            &key,
                            EPOCH_CALL,
                            epoch.to_string().into_bytes(),
                            ASK_TIMEOUT,
                        )
                        .await;
                    if let Ok(answer) = asked
                        && answer.status != 200
                    {
                        let holder = String::from_utf8_lossy(&answer.payload).into_owned();
                        return Err(ReaderDisconnected(format!(
                            "A receiver with the higher epoch {holder} holds partition \
                             {partition} of consumer group '{group}'; a receiver with epoch \
                             {epoch} cannot be created. Use an epoch at least as high, or \
                             close the other receiver first."
                        )));
                    }
                }
                Some((epoch, bus.attach(&key).await))
            }
        };
        Ok(PartitionHold {
            bus,
            key,
            group: group.to_owned(),
            partition,
            epoch,
        })
    }
}

impl PartitionHold {
    /// Waits until another reader takes the partition; why this one is disconnected. Safe to
    /// cancel and call again (a `select!` branch).
    pub async fn lost(&mut self) -> ReaderDisconnected {
        let (partition, group) = (self.partition, self.group.as_str());
        let Some((mine, attachment)) = self.epoch.as_mut() else {
            // Without epoch: until an epoch reader attaches.
            while !self.bus.wait_for_connect(&self.key, WATCH).await {}
            return ReaderDisconnected(format!(
                "A receiver with an epoch took partition {partition} of consumer group \
                 '{group}'; receivers without epoch are disconnected."
            ));
        };
        let mine = *mine;
        loop {
            match attachment.messages.recv().await {
                Some(BusMessage::Method(call)) if call.name == EPOCH_CALL => {
                    let MethodCall {
                        call_id, payload, ..
                    } = *call;
                    let theirs = std::str::from_utf8(&payload)
                        .ok()
                        .and_then(|t| t.trim().parse::<i64>().ok());
                    match theirs {
                        Some(theirs) if theirs >= mine => {
                            self.bus.complete_method(
                                call_id,
                                Ok(MethodResponse {
                                    status: 200,
                                    payload: Vec::new(),
                                }),
                            );
                            return ReaderDisconnected(format!(
                                "A receiver with epoch {theirs} took partition {partition} of \
                                 consumer group '{group}'; this receiver (epoch {mine}) is \
                                 disconnected. A receiver that reconnects needs an epoch at \
                                 least as high."
                            ));
                        }
                        _ => self.bus.complete_method(
                            call_id,
                            Ok(MethodResponse {
                                status: 409,
                                payload: mine.to_string().into_bytes(),
                            }),
                        ),
                    }
                }
                Some(BusMessage::Method(call)) => {
                    self.bus
                        .complete_method(call.call_id, Err(BusError::NotSubscribed));
                }
                Some(BusMessage::TakenOver) | None => {
                    return ReaderDisconnected(format!(
                        "Another receiver with an epoch took partition {partition} of consumer \
                         group '{group}'; this receiver (epoch {mine}) is disconnected."
                    ));
                }
                Some(_) => {}
            }
        }
    }
}

impl Drop for PartitionHold {
    fn drop(&mut self) {
        let Some((_, attachment)) = self.epoch.take() else {
            return;
        };
        // Gives the partition back at once (a closed attachment already counts as gone).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let bus = self.bus.clone();
            let key = std::mem::take(&mut self.key);
            runtime.spawn(async move { bus.detach(&key, attachment.connection_id).await });
        }
    }
}

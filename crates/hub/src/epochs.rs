//! Exclusive readers of a partition (Event Hubs' epoch receivers, the SDKs' `owner_level`):
//! on one consumer group and partition, a reader with an epoch disconnects the readers with a
//! lower or equal epoch and every reader without one; a reader with a lower epoch than the
//! holder's, and a reader without epoch while an epoch reader holds, is refused.
//!
//! Who holds a partition is a claim in the store (`ReaderClaimStore`), made compare-and-swap,
//! so however many readers arrive together on whichever nodes, the rule is applied to each
//! against the claim before it and exactly one ends up holding. The holder renews its claim
//! every [`RENEW`]; a dead node's claim lapses after [`LEASE`]. The bus carries the notices:
//! each epoch reader is attached under a name of its own (`{key}/{holder}`, where the key is
//! `$partition/{entity}/{group}/{partition}`, a name no device or module can have), and the
//! reader that displaces it calls it there (`$epoch`, its epoch as text), wherever it is; a
//! holder that misses the call learns it from its next renewal. The holder is also attached
//! under the key itself, whose presence readers without epoch watch to leave when an epoch
//! reader arrives (and they look at the claim every [`RENEW`] besides).

use std::sync::Arc;
use std::time::Duration;

use ironhub_store::{
    Attachment, BusError, BusMessage, ClaimOutcome, DeviceBus, MethodCall, MethodResponse,
    ReaderClaim, Store,
};
use ring::rand::SecureRandom;

use crate::{Hub, HubError};

/// The bus call that tells a holder it was displaced.
const EPOCH_CALL: &str = "$epoch";
/// How long a claim runs unless renewed: how long a dead node's reader keeps a partition.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a holder renews its claim, and a reader without epoch looks at the claim.
pub const RENEW: Duration = Duration::from_secs(10);
/// How long the notice to a displaced holder may take.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a reader was refused or disconnected (Event Hubs' `ReceiverDisconnected`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReaderDisconnected(pub String);

/// A reader's place on a partition: held until released or dropped; [`PartitionHold::lost`]
/// says when another reader took it.
#[derive(Debug)]
pub struct PartitionHold {
    hub: Hub,
    key: String,
    group: String,
    partition: u32,
    /// The reader's claim and bus connections; `None` for a reader without epoch.
    epoch: Option<Held>,
}

/// An epoch reader's claim and its two bus connections.
#[derive(Debug)]
struct Held {
    epoch: i64,
    holder: String,
    /// Under `{key}/{holder}`: where the notices come.
    own: Attachment,
    /// Under the key: the presence readers without epoch watch.
    shared: Attachment,
    /// When the claim is renewed next.
    renew_at: tokio::time::Instant,
}

/// The name of a partition's exclusive reader. Event hub and consumer group names are
/// case-insensitive.
fn partition_key(entity: &str, group: &str, partition: u32) -> String {
    format!(
        "$partition/{}/{}/{partition}",
        entity.to_lowercase(),
        group.to_lowercase()
    )
}

/// A holder's own bus name.
fn own_name(key: &str, holder: &str) -> String {
    format!("{key}/{holder}")
}

/// A new reader's id, unique among the readers of every node.
fn new_holder() -> String {
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lease_until(hub: &Hub) -> chrono::DateTime<chrono::Utc> {
    hub.now() + chrono::TimeDelta::from_std(LEASE).unwrap_or_default()
}

impl Hub {
    /// Places a reader of `partition` of consumer group `group` of event hub `entity`, with
    /// `epoch` or none (see the module documentation): `Ok(Err(_))` when the rule refuses it,
    /// `Err(_)` when the store failed.
    pub async fn hold_partition(
        &self,
        entity: &str,
        group: &str,
        partition: u32,
        epoch: Option<i64>,
    ) -> Result<Result<PartitionHold, ReaderDisconnected>, HubError> {
        let key = partition_key(entity, group, partition);
        let store: &Arc<dyn Store> = self.store();
        let held = match epoch {
            None => {
                if store.reader_claim(&key, self.now()).await?.is_some() {
                    return Ok(Err(ReaderDisconnected(format!(
                        "A receiver with an epoch holds partition {partition} of consumer group \
                         '{group}'; a receiver without epoch cannot be created. Close the epoch \
                         receiver or give this one a higher epoch."
                    ))));
                }
                None
            }
            Some(epoch) => {
                let bus = self.bus();
                let holder = new_holder();
                let own_name = own_name(&key, &holder);
                // Attached first, so a newcomer that displaces this reader at once finds it.
                let own = bus.attach(&own_name).await;
                let claim = ReaderClaim {
                    key: key.clone(),
                    holder: holder.clone(),
                    epoch,
                    until: lease_until(self),
                };
                let outcome = store.claim_reader(claim, self.now()).await;
                let displaced = match outcome {
                    Ok(ClaimOutcome::Granted { displaced }) => displaced,
                    Ok(ClaimOutcome::Refused(by)) => {
                        bus.detach(&own_name, own.connection_id).await;
                        return Ok(Err(ReaderDisconnected(format!(
                            "A receiver with the higher epoch {} holds partition {partition} of \
                             consumer group '{group}'; a receiver with epoch {epoch} cannot be \
                             created. Use an epoch at least as high, or close the other \
                             receiver first.",
                            by.epoch
                        ))));
                    }
                    Err(e) => {
                        bus.detach(&own_name, own.connection_id).await;
                        return Err(e.into());
                    }
                };
                let shared = bus.attach(&key).await;
                if let Some(old) = displaced {
                    let (bus, name) = (bus.clone(), self::own_name(&key, &old.holder));
                    tokio::spawn(async move {
                        let told = bus
                            .call_method(
                                &name,
                                EPOCH_CALL,
                                epoch.to_string().into_bytes(),
                                NOTICE_TIMEOUT,
                            )
                            .await;
                        if let Err(e) = told {
                            // It learns it from its next renewal.
                            tracing::debug!(reader = %name, error = ?e, "displaced reader not told");
                        }
                    });
                }
                Some(Held {
                    epoch,
                    holder,
                    own,
                    shared,
                    renew_at: tokio::time::Instant::now() + RENEW,
                })
            }
        };
        Ok(Ok(PartitionHold {
            hub: self.clone(),
            key,
            group: group.to_owned(),
            partition,
            epoch: held,
        }))
    }
}

impl PartitionHold {
    /// Waits until another reader takes the partition; why this one is disconnected. Safe to
    /// cancel and call again (a `select!` branch).
    pub async fn lost(&mut self) -> ReaderDisconnected {
        let (partition, group) = (self.partition, self.group.as_str());
        let (hub, key) = (&self.hub, self.key.as_str());
        let Some(held) = self.epoch.as_mut() else {
            // Without epoch: until an epoch reader attaches, or its claim shows.
            loop {
                let attached = hub.bus().wait_for_connect(key, RENEW).await;
                if attached || matches!(hub.store().reader_claim(key, hub.now()).await, Ok(Some(_)))
                {
                    return ReaderDisconnected(format!(
                        "A receiver with an epoch took partition {partition} of consumer group \
                         '{group}'; receivers without epoch are disconnected."
                    ));
                }
            }
        };
        let mine = held.epoch;
        let taken = || {
            ReaderDisconnected(format!(
                "Another receiver with an epoch took partition {partition} of consumer group \
                 '{group}'; this receiver (epoch {mine}) is disconnected."
            ))
        };
        loop {
            let message = tokio::select! {
                message = held.own.messages.recv() => message,
                () = tokio::time::sleep_until(held.renew_at) => {
                    match hub.store().renew_reader(key, &held.holder, lease_until(hub)).await {
                        Ok(true) => {}
                        Ok(false) => return taken(),
                        Err(e) => {
                            tracing::warn!(reader = %key, error = %e, "renewing a reader's claim failed");
                        }
                    }
                    held.renew_at = tokio::time::Instant::now() + RENEW;
                    continue;
                }
            };
            match message {
                Some(BusMessage::Method(call)) if call.name == EPOCH_CALL => {
                    let MethodCall {
                        call_id, payload, ..
                    } = *call;
                    hub.bus().complete_method(
                        call_id,
                        Ok(MethodResponse {
                            status: 200,
                            payload: Vec::new(),
                        }),
                    );
                    let theirs = std::str::from_utf8(&payload)
                        .ok()
                        .and_then(|t| t.trim().parse::<i64>().ok());
                    let Some(theirs) = theirs else {
                        return taken();
                    };
                    return ReaderDisconnected(format!(
                        "A receiver with epoch {theirs} took partition {partition} of consumer \
                         group '{group}'; this receiver (epoch {mine}) is disconnected. A \
                         receiver that reconnects needs an epoch at least as high."
                    ));
                }
                Some(BusMessage::Method(call)) => {
                    hub.bus()
                        .complete_method(call.call_id, Err(BusError::NotSubscribed));
                }
                Some(BusMessage::TakenOver) | None => return taken(),
                Some(_) => {}
            }
        }
    }

    /// Gives the partition back now (dropping the hold does it in a task).
    pub async fn release(mut self) {
        if let Some(held) = self.epoch.take() {
            give_back(self.hub.bus(), self.hub.store(), &self.key, held).await;
        }
    }
}

/// Leaves the bus (the presence first, so a reader without epoch that finds no claim finds
/// no presence either) and removes the claim.
async fn give_back(bus: &Arc<dyn DeviceBus>, store: &Arc<dyn Store>, key: &str, held: Held) {
    bus.detach(key, held.shared.connection_id).await;
    bus.detach(&own_name(key, &held.holder), held.own.connection_id)
        .await;
    if let Err(e) = store.release_reader(key, &held.holder).await {
        // The claim lapses with its lease.
        tracing::warn!(reader = %key, error = %e, "releasing a reader's claim failed");
    }
}

impl Drop for PartitionHold {
    fn drop(&mut self) {
        let Some(held) = self.epoch.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (bus, store) = (self.hub.bus().clone(), self.hub.store().clone());
            let key = std::mem::take(&mut self.key);
            runtime.spawn(async move { give_back(&bus, &store, &key, held).await });
        }
    }
}

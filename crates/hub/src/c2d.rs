//! Cloud-to-device messages: a durable queue per device, with IoT Hub's rules.
//!
//! - at most [`MAX_QUEUE_DEPTH`] live messages per device (403004 beyond);
//! - a message of at most [`MAX_MESSAGE_BYTES`] (body and properties, 413 beyond);
//! - it expires [`DEFAULT_TTL`] after it was sent unless the sender set an expiry;
//! - a delivery locks it for [`LOCK_TIMEOUT`]; a lock that is not settled (completed,
//!   rejected or abandoned) runs out and the message is visible again;
//! - every delivery counts; a message delivered [`MAX_DELIVERY_COUNT`] times and still not
//!   completed is dead-lettered;
//! - whenever a message leaves its queue (completed, rejected, expired, worn out, purged) and its
//!   `ack` asks for it, a feedback record is written; the service reads feedback in locked
//!   batches (`GET /messages/serviceBound/feedback`), kept for [`FEEDBACK_TTL`].
//!
//! The store applies each rule atomically (see [`ironhub_store::C2dStore::c2d_lock_next`]); this
//! module validates what senders and devices ask for and renders IoT Hub's shapes.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ironhub_store::{
    AckMode, BusMessage, C2dMessage, C2dRefusal, C2dRules, C2dSettle, FeedbackBatch,
};

use crate::model::azure_time;
use crate::{Hub, HubError};
pub use ironhub_wire::hub::{FeedbackRecord, PurgeResult};

/// Most live messages in one device's queue.
pub const MAX_QUEUE_DEPTH: usize = 50;
/// Largest message: body, property names and values, and system property values.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How long a message lives when its sender sets no expiry.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The longest a message may live (IoT Hub's largest configurable TTL).
pub const MAX_TTL: Duration = Duration::from_secs(2 * 24 * 3600);
/// Deliveries after which a message that is still not completed is dead-lettered.
pub const MAX_DELIVERY_COUNT: u32 = 10;
/// How long a delivered message waits to be settled before it is visible again.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long feedback is kept.
pub const FEEDBACK_TTL: Duration = Duration::from_secs(3600);
/// How long a received feedback batch stays locked.
pub const FEEDBACK_LOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// Most feedback records in one batch (IoT Hub batches up to 64).
pub const FEEDBACK_BATCH: usize = 64;

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// The rules the store applies.
pub fn rules() -> C2dRules {
    C2dRules {
        max_depth: MAX_QUEUE_DEPTH,
        max_delivery_count: MAX_DELIVERY_COUNT,
        lock_duration: delta(LOCK_TIMEOUT),
        feedback_ttl: delta(FEEDBACK_TTL),
        feedback_lock_duration: delta(FEEDBACK_LOCK_TIMEOUT),
        feedback_batch: FEEDBACK_BATCH,
    }
}

/// A message as a service sends it; everything but the body is optional.
#[derive(Debug, Clone, Default)]
pub struct OutgoingMessage {
    /// Generated (a UUID) when absent.
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub user_id: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// Absolute expiry; [`DEFAULT_TTL`] from now when absent.
    pub expiry_time: Option<DateTime<Utc>>,
    pub ack: AckMode,
    /// Application properties, in order.
    pub properties: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Parses `iothub-ack` (`none`, `positive`, `negative`, `full`; any case).
pub fn parse_ack(value: &str) -> Result<AckMode, HubError> {
    [
        AckMode::None,
        AckMode::Positive,
        AckMode::Negative,
        AckMode::Full,
    ]
    .into_iter()
    .find(|m| m.as_str().eq_ignore_ascii_case(value.trim()))
    .ok_or_else(|| {
        HubError::ArgumentInvalid(format!(
            "The ack mode '{value}' is not valid; use none, positive, negative or full."
        ))
    })
}

/// Parses an absolute expiry time: RFC 3339 (`2026-01-02T03:04:05Z`, as `$.exp` and
/// `expiryTimeUtc` carry it) or an HTTP date (`Fri, 02 Jan 2026 03:04:05 GMT`).
pub fn parse_expiry(value: &str) -> Result<DateTime<Utc>, HubError> {
    let v = value.trim();
    DateTime::parse_from_rfc3339(v)
        .or_else(|_| DateTime::parse_from_rfc2822(v))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            HubError::ArgumentInvalid(format!(
                "The expiry time '{value}' is not valid; use an ISO 8601 UTC time such as 2026-01-02T03:04:05Z."
            ))
        })
}

/// A UUID (version 4) as IoT Hub's SDKs generate message ids.
pub fn new_message_id() -> String {
    ironhub_auth::random_uuid()
}

fn check_id(value: &str, what: &str) -> Result<(), HubError> {
    if value.is_empty() || value.len() > 128 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HubError::ArgumentInvalid(format!(
            "The {what} '{value}' is not valid: it must be 1 to 128 printable ASCII characters."
        )));
    }
    Ok(())
}

/// The feedback records of a batch, as the body of a feedback message.
pub fn feedback_views(batch: &FeedbackBatch) -> Vec<FeedbackRecord> {
    batch
        .records
        .iter()
        .map(|r| FeedbackRecord {
            original_message_id: r.original_message_id.clone(),
            description: r.status_code.description().to_owned(),
            device_generation_id: r.device_generation_id.clone(),
            device_id: r.device_id.clone(),
            enqueued_time_utc: azure_time(Some(r.enqueued_time_utc)),
            status_code: r.status_code,
        })
        .collect()
}

fn lock_lost(token: &str) -> HubError {
    HubError::DeviceMessageLockLost(format!(
        "No message is locked with the lock token '{token}': it was settled already, its lock ran out and it was delivered again, or it expired."
    ))
}

impl Hub {
    /// Queues a message for `device_id` and tells the device's connection, if there is one.
    /// Returns the message as stored (with its id, expiry and sequence number).
    pub(crate) async fn send_c2d_unobserved(
        &self,
        device_id: &str,
        message: OutgoingMessage,
    ) -> Result<C2dMessage, HubError> {
        self.admit(crate::throttle::Operation::CloudToDevice, Some(device_id))?;
        let now = self.now();
        let size = message.body.len()
            + message
                .properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + [
                &message.message_id,
                &message.correlation_id,
                &message.user_id,
                &message.content_type,
                &message.content_encoding,
            ]
            .into_iter()
            .flatten()
            .map(String::len)
            .sum::<usize>();
        if size > MAX_MESSAGE_BYTES {
            return Err(HubError::MessageTooLarge(MAX_MESSAGE_BYTES));
        }
        if let Some(id) = &message.message_id {
            check_id(id, "message id")?;
        }
        if let Some(id) = &message.correlation_id {
            check_id(id, "correlation id")?;
        }
        for (key, _) in &message.properties {
            if key.is_empty() || key.starts_with("$.") {
                return Err(HubError::ArgumentInvalid(format!(
                    "The property name '{key}' is not valid: it must not be empty nor start with '$.'."
                )));
            }
        }
        let expiry_time = match message.expiry_time {
            None => now + delta(DEFAULT_TTL),
            Some(t) if t <= now => {
                return Err(HubError::ArgumentInvalid(format!(
                    "The expiry time {} is in the past.",
                    azure_time(Some(t))
                )));
            }
            Some(t) => t.min(now + delta(MAX_TTL)),
        };
        let device = self.device_record(device_id).await?;
        let stored = C2dMessage {
            device_id: device.device_id.clone(),
            device_generation_id: device.generation_id,
            message_id: message.message_id.unwrap_or_else(new_message_id),
            correlation_id: message.correlation_id,
            user_id: message.user_id,
            to: format!("/devices/{}/messages/deviceBound", device.device_id),
            content_type: message.content_type,
            content_encoding: message.content_encoding,
            expiry_time,
            ack: message.ack,
            properties: message.properties,
            body: message.body,
            enqueued_time: now,
            sequence_number: 0,
            delivery_count: 0,
            lock_token: None,
            locked_until: None,
            lock_node: None,
        };
        crate::nul::reject_nul_in(&stored, "the message's properties")?;
        let queued = match self.store.c2d_enqueue(stored, rules(), now).await? {
            Ok(m) => m,
            Err(C2dRefusal::DeviceNotFound) => {
                return Err(HubError::DeviceNotFound(device_id.to_owned()));
            }
            Err(C2dRefusal::QueueFull) => {
                return Err(HubError::DeviceMaximumQueueDepthExceeded(format!(
                    "The queue of device '{device_id}' already holds {MAX_QUEUE_DEPTH} messages."
                )));
            }
        };
        // The queue is the truth; the notification only saves the connection a wait. A stuck
        // connection must not hold up the sender.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.bus.send(device_id, BusMessage::C2dAvailable),
        )
        .await;
        Ok(queued)
    }

    /// Locks the next message of the device's queue for delivery (`None` when it is empty),
    /// dead-lettering expired and worn-out messages on the way.
    pub async fn receive_c2d(&self, device_id: &str) -> Result<Option<C2dMessage>, HubError> {
        Ok(self
            .store
            .c2d_lock_next(device_id, self.bus.node_id(), rules(), self.now())
            .await?)
    }

    /// Completes, rejects or abandons the message locked under `lock_token`.
    /// 412 DeviceMessageLockLost when no message holds that lock.
    pub(crate) async fn settle_c2d_unobserved(
        &self,
        device_id: &str,
        lock_token: &str,
        settle: C2dSettle,
    ) -> Result<C2dMessage, HubError> {
        self.store
            .c2d_settle(device_id, lock_token, settle, rules(), self.now())
            .await?
            .ok_or_else(|| lock_lost(lock_token))
    }

    /// `DELETE /devices/{id}/commands`: empties the device's queue.
    pub async fn purge_c2d(&self, device_id: &str) -> Result<PurgeResult, HubError> {
        self.device_record(device_id).await?;
        let n = self.store.c2d_purge(device_id, rules(), self.now()).await?;
        Ok(PurgeResult {
            total_messages_purged: n,
            device_id: device_id.to_owned(),
        })
    }

    /// Dead-letters expired messages of every queue and drops expired feedback; returns how
    /// many messages expired. The server runs it periodically ([`Hub::expire_c2d_until`]).
    pub(crate) async fn expire_c2d_unobserved(&self) -> Result<u64, HubError> {
        Ok(self.store.c2d_expire(rules(), self.now()).await?)
    }

    /// Runs [`Hub::expire_c2d`] and [`Hub::expire_inputs`] every `interval` until `stop`
    /// turns true.
    pub async fn expire_c2d_until(
        self,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *stop.borrow() {
                return;
            }
            match self.expire_c2d().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "cloud-to-device messages expired"),
                Err(e) => tracing::warn!(error = %e, "could not expire cloud-to-device messages"),
            }
            match self.expire_inputs().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "module input messages expired"),
                Err(e) => tracing::warn!(error = %e, "could not expire module input messages"),
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                changed = stop.changed() => if changed.is_err() { return },
            }
        }
    }

    /// `GET /messages/serviceBound/feedback`: the next batch of feedback, locked.
    pub async fn receive_feedback(&self) -> Result<Option<FeedbackBatch>, HubError> {
        Ok(self.store.feedback_lock(rules(), self.now()).await?)
    }

    /// Completes (`DELETE …/feedback/{lockToken}`) or abandons (`POST …/abandon`) a batch.
    pub async fn settle_feedback(&self, lock_token: &str, complete: bool) -> Result<(), HubError> {
        if self.store.feedback_settle(lock_token, complete).await? {
            Ok(())
        } else {
            Err(lock_lost(lock_token))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_modes_and_expiry_times() {
        assert_eq!(parse_ack("FULL").unwrap(), AckMode::Full);
        assert_eq!(parse_ack("positive").unwrap(), AckMode::Positive);
        assert_eq!(parse_ack("bogus").unwrap_err().code(), 400_004);
        let t = parse_expiry("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(t, parse_expiry("Fri, 02 Jan 2026 03:04:05 GMT").unwrap());
        assert!(parse_expiry("tomorrow").is_err());
    }

    #[test]
    fn message_ids_are_uuids() {
        let id = new_message_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_message_id());
    }
}

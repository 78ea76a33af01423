//! The delivery pump: one task a partition of an endpoint's delivery stream reads from the
//! consumer group's checkpoint, hands batches to the sink in order, and moves the checkpoint
//! only past what the sink has delivered (for the file sink: past closed chunks). A failed
//! message is retried with exponential back-off; after `max_delivery_count` failed attempts,
//! or at once if the endpoint refused it for good, it is appended to the dead-letter log
//! (with the reason, the attempts and the time as system properties) and the checkpoint
//! moves past it. The stream is the buffer: the pump holds one batch a partition, however
//! long the endpoint is down. Delivery is at least once (a crash between a delivery and its
//! checkpoint repeats it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use ironhub_store::eventlog::DEFAULT_CONSUMER_GROUP;
use ironhub_store::{Event, EventLog, NewEvent, StartPosition};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::settings::{DEFAULT_MAX_DELIVERY_COUNT, Settings};
use crate::sink::{Accepted, BatchError, DeliveryError, Sink};
use crate::status::{self, EndpointStatus, Outcome};

/// System properties a dead-lettered message carries besides its own.
pub mod dead_letter {
    /// The endpoint that could not take the message.
    pub const ENDPOINT: &str = "ironhub-deadletter-endpoint";
    /// The last error.
    pub const REASON: &str = "ironhub-deadletter-reason";
    /// How many attempts were made.
    pub const ATTEMPTS: &str = "ironhub-deadletter-attempts";
    /// When it was dead-lettered (RFC 3339).
    pub const TIME: &str = "ironhub-deadletter-time";
    /// Its partition and sequence number in the delivery stream (`{partition}-{sequence}`).
    pub const DELIVERY_ID: &str = "ironhub-deadletter-delivery-id";
}

/// How a pump reads and retries.
#[derive(Debug, Clone)]
pub struct PumpConfig {
    /// The consumer group whose checkpoints the pump keeps in the delivery stream.
    pub consumer_group: String,
    /// Failed attempts after which a message is dead-lettered.
    pub max_delivery_count: u32,
    /// The most events handed to the sink at once.
    pub batch_size: usize,
    /// The first wait after a failure; it doubles with each further failure…
    pub backoff_initial: Duration,
    /// … up to this.
    pub backoff_max: Duration,
    /// The longest a partition waits for new events before looking again.
    pub idle_wait: Duration,
}

impl Default for PumpConfig {
    fn default() -> Self {
        PumpConfig {
            consumer_group: DEFAULT_CONSUMER_GROUP.to_owned(),
            max_delivery_count: DEFAULT_MAX_DELIVERY_COUNT,
            batch_size: 100,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            idle_wait: Duration::from_secs(5),
        }
    }
}

impl PumpConfig {
    /// The defaults with the endpoint's own `maxDeliveryCount`.
    pub fn for_settings(settings: &Settings) -> Self {
        PumpConfig {
            max_delivery_count: settings.max_delivery_count(),
            ..PumpConfig::default()
        }
    }
}

/// A running pump (see the module documentation). Dropping it stops its tasks; [`Pump::stop`]
/// also waits for them and closes the file sink's open chunks.
#[derive(Debug)]
pub struct Pump {
    status: watch::Receiver<EndpointStatus>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    endpoint: String,
    stream: Arc<dyn EventLog>,
    sink: Arc<dyn Sink>,
    dead_letters: Arc<dyn EventLog>,
    config: PumpConfig,
    outcomes: Mutex<Vec<Option<Outcome>>>,
    status: watch::Sender<EndpointStatus>,
}

impl Pump {
    /// Starts delivering `stream` to `sink` for endpoint `endpoint`, dead-lettering into
    /// `dead_letters`.
    pub fn start(
        endpoint: &str,
        stream: Arc<dyn EventLog>,
        sink: Arc<dyn Sink>,
        dead_letters: Arc<dyn EventLog>,
        config: PumpConfig,
    ) -> Pump {
        let partitions = stream.partition_count();
        let (status_tx, status_rx) = watch::channel(EndpointStatus {
            endpoint_id: endpoint.to_owned(),
            ..EndpointStatus::default()
        });
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            endpoint: endpoint.to_owned(),
            stream,
            sink,
            dead_letters,
            config,
            outcomes: Mutex::new(vec![None; partitions as usize]),
            status: status_tx,
        });
        let tasks = (0..partitions)
            .map(|p| {
                let worker = Worker {
                    shared: shared.clone(),
                    partition: p,
                    shutdown: shutdown.subscribe(),
                    checkpoint: 0,
                    cursor: 0,
                    attempts: 0,
                    backoff: shared.config.backoff_initial,
                };
                tokio::spawn(worker.run())
            })
            .collect();
        Pump {
            status: status_rx,
            shutdown,
            tasks,
        }
    }

    /// The endpoint's status now.
    pub fn status(&self) -> EndpointStatus {
        self.status.borrow().clone()
    }

    /// The endpoint's status as it changes.
    pub fn watch(&self) -> watch::Receiver<EndpointStatus> {
        self.status.clone()
    }

    /// Stops the pump: each partition finishes its current attempt, closes its open chunk
    /// and checkpoints what was delivered.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

struct Worker {
    shared: Arc<Shared>,
    partition: u32,
    shutdown: watch::Receiver<bool>,
    /// The next sequence number not yet delivered (what the consumer group holds).
    checkpoint: u64,
    /// The next sequence number to hand to the sink (past `checkpoint` for a buffering sink).
    cursor: u64,
    /// Failed attempts at the message at `checkpoint`.
    attempts: u32,
    backoff: Duration,
}

enum Step {
    Continue,
    Stop,
}

impl Worker {
    async fn run(mut self) {
        loop {
            match self.start_position().await {
                Ok(next) => {
                    self.checkpoint = next;
                    self.cursor = next;
                    break;
                }
                Err(e) => {
                    tracing::warn!(endpoint = %self.shared.endpoint, partition = self.partition,
                        error = %e, "cannot read the delivery stream's checkpoint");
                    if let Step::Stop = self.pause().await {
                        return;
                    }
                }
            }
        }
        while !*self.shutdown.borrow() {
            if let Step::Stop = self.step().await {
                break;
            }
        }
        // Close what the sink holds so it is delivered and checkpointed, not redone.
        match self.shared.sink.close_due(self.partition, true).await {
            Ok(Some(next)) => {
                let _ = self.advance_closed(next).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(endpoint = %self.shared.endpoint, partition = self.partition,
                    error = %e, "cannot close the open chunk at shutdown; it is redone at start");
                self.shared.sink.discard(self.partition).await;
            }
        }
    }

    async fn start_position(&self) -> ironhub_store::Result<u64> {
        let stream = &self.shared.stream;
        match stream
            .checkpoint(&self.shared.config.consumer_group, self.partition)
            .await?
        {
            Some(next) => Ok(next),
            None => {
                stream
                    .resolve(self.partition, StartPosition::Earliest)
                    .await
            }
        }
    }

    /// Waits out the back-off (or shutdown); doubles it.
    async fn pause(&mut self) -> Step {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.shared.config.backoff_max);
        tokio::select! {
            () = tokio::time::sleep(wait) => Step::Continue,
            _ = self.shutdown.changed() => Step::Stop,
        }
    }

    async fn step(&mut self) -> Step {
        let sink = self.shared.sink.clone();
        if sink.buffering() {
            match sink.close_due(self.partition, false).await {
                Ok(Some(next)) => {
                    if self.advance_closed(next).await.is_err() {
                        return self.pause().await;
                    }
                }
                Ok(None) => {}
                Err(e) => return self.buffer_failed(e).await,
            }
        }
        let events = match self
            .shared
            .stream
            .read(self.partition, self.cursor, self.shared.config.batch_size)
            .await
        {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(endpoint = %self.shared.endpoint, partition = self.partition,
                    error = %e, "cannot read the delivery stream");
                return self.pause().await;
            }
        };
        if events.is_empty() {
            let mut wait = self.shared.config.idle_wait;
            if let Some(due) = sink.due_at(self.partition) {
                wait = wait.min(due.saturating_duration_since(Instant::now()));
            }
            let stream = self.shared.stream.clone();
            tokio::select! {
                _ = stream.wait_for(self.partition, self.cursor, wait) => {}
                _ = self.shutdown.changed() => return Step::Stop,
            }
            return Step::Continue;
        }
        self.record_attempt();
        match sink.deliver(&events).await {
            Ok(Accepted::Delivered) => {
                let next = events.last().map_or(self.cursor, |e| e.sequence_number + 1);
                match self.advance(next, events.len() as u64).await {
                    Ok(()) => Step::Continue,
                    Err(()) => self.pause().await,
                }
            }
            Ok(Accepted::Buffered(n)) => {
                if let Some(last) = events.get(n.wrapping_sub(1)).filter(|_| n > 0) {
                    self.cursor = last.sequence_number + 1;
                }
                Step::Continue
            }
            Err(BatchError { delivered, error }) => {
                if sink.buffering() {
                    // A buffering sink: its open chunk is void.
                    return self.buffer_failed(error).await;
                }
                if delivered > 0
                    && let Some(last) = events.get(delivered - 1)
                    && self
                        .advance(last.sequence_number + 1, delivered as u64)
                        .await
                        .is_err()
                {
                    return self.pause().await;
                }
                match events.get(delivered) {
                    Some(failed) => self.failed(failed.clone(), error).await,
                    None => Step::Continue,
                }
            }
        }
    }

    /// The buffering sink failed: its open chunk is dropped, reading resumes at the
    /// checkpoint, and the failure counts against the message there.
    async fn buffer_failed(&mut self, error: DeliveryError) -> Step {
        self.shared.sink.discard(self.partition).await;
        self.cursor = self.checkpoint;
        match self
            .shared
            .stream
            .read(self.partition, self.checkpoint, 1)
            .await
        {
            Ok(mut head) if !head.is_empty() => self.failed(head.remove(0), error).await,
            _ => {
                self.record_failure(&error, Outcome::Retrying);
                self.pause().await
            }
        }
    }

    /// `event` (the first not delivered) failed: retry later or dead-letter it.
    async fn failed(&mut self, event: Event, error: DeliveryError) -> Step {
        self.attempts += 1;
        let limit = self.shared.config.max_delivery_count.max(1);
        if error.retryable && self.attempts < limit {
            tracing::debug!(endpoint = %self.shared.endpoint, partition = self.partition,
                attempts = self.attempts, error = %error, "delivery failed; retrying");
            self.record_failure(&error, Outcome::Retrying);
            return self.pause().await;
        }
        let mut system = event.event.system_properties.clone();
        system.insert(dead_letter::ENDPOINT.into(), self.shared.endpoint.clone());
        system.insert(dead_letter::REASON.into(), error.message.clone());
        system.insert(dead_letter::ATTEMPTS.into(), self.attempts.to_string());
        system.insert(dead_letter::TIME.into(), Utc::now().to_rfc3339());
        system.insert(
            dead_letter::DELIVERY_ID.into(),
            crate::headers::delivery_id(&event),
        );
        let dead = NewEvent {
            system_properties: system,
            ..event.event.clone()
        };
        if let Err(e) = self.shared.dead_letters.append(dead).await {
            tracing::warn!(endpoint = %self.shared.endpoint, error = %e,
                "cannot append to the dead-letter log; the message stays in the stream");
            self.record_failure(&error, Outcome::Retrying);
            return self.pause().await;
        }
        tracing::warn!(endpoint = %self.shared.endpoint, partition = self.partition,
            sequence = event.sequence_number, attempts = self.attempts, error = %error,
            "message dead-lettered");
        self.attempts = 0;
        let advanced = self.advance(event.sequence_number + 1, 0).await;
        self.record_failure(&error, Outcome::Dead);
        self.shared.status.send_modify(|s| s.dead_lettered += 1);
        match advanced {
            Ok(()) => Step::Continue,
            Err(()) => self.pause().await,
        }
    }

    /// Moves the checkpoint to `next`, the end of a chunk the sink closed.
    async fn advance_closed(&mut self, next: u64) -> Result<(), ()> {
        let delivered = next.saturating_sub(self.checkpoint);
        self.advance(next, delivered).await
    }

    /// Moves the checkpoint to `next` after `delivered` messages went through.
    async fn advance(&mut self, next: u64, delivered: u64) -> Result<(), ()> {
        if let Err(e) = self
            .shared
            .stream
            .set_checkpoint(&self.shared.config.consumer_group, self.partition, next)
            .await
        {
            tracing::warn!(endpoint = %self.shared.endpoint, partition = self.partition,
                error = %e, "cannot store the checkpoint");
            return Err(());
        }
        let moved = next > self.checkpoint;
        self.checkpoint = next;
        self.cursor = self.cursor.max(next);
        if moved {
            self.attempts = 0;
            self.backoff = self.shared.config.backoff_initial;
        }
        if delivered > 0 {
            self.set_outcome(Outcome::Delivered);
            self.shared.status.send_modify(|s| {
                s.delivered += delivered;
                if delivered > 0 {
                    s.last_successful_send_attempt_time = Some(Utc::now());
                }
            });
        }
        Ok(())
    }

    fn record_attempt(&self) {
        self.shared
            .status
            .send_modify(|s| s.last_send_attempt_time = Some(Utc::now()));
    }

    fn record_failure(&self, error: &DeliveryError, outcome: Outcome) {
        let sticky = {
            let outcomes = self
                .shared
                .outcomes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            outcomes.get(self.partition as usize).copied().flatten() == Some(Outcome::Dead)
        };
        self.set_outcome(if sticky { Outcome::Dead } else { outcome });
        self.shared.status.send_modify(|s| {
            s.last_known_error = Some(error.message.clone());
            s.last_known_error_time = Some(Utc::now());
        });
    }

    fn set_outcome(&self, outcome: Outcome) {
        let health = {
            let mut outcomes = self
                .shared
                .outcomes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(slot) = outcomes.get_mut(self.partition as usize) {
                *slot = Some(outcome);
            }
            status::health(&outcomes)
        };
        self.shared.status.send_modify(|s| s.health_status = health);
    }
}

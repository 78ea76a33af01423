//! The fleet's connect phase: how many handshakes run at once, and when the first connect
//! started and the last CONNACK came, for the connect rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections (or provisionings) under way at once.
const CONCURRENCY: usize = 100;

/// When devices connect: the first connect's start and the last CONNACK.
#[derive(Debug)]
pub struct Phase {
    gate: Arc<Semaphore>,
    started: Instant,
    first_connect: AtomicU64,
    last_connected: AtomicU64,
}

impl Default for Phase {
    /// Starts the clock.
    fn default() -> Phase {
        Phase {
            gate: Arc::new(Semaphore::new(CONCURRENCY)),
            started: Instant::now(),
            first_connect: AtomicU64::new(u64::MAX),
            last_connected: AtomicU64::new(0),
        }
    }
}

impl Phase {
    /// Waits for a place among the connections under way; it is held until dropped.
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.gate.clone().acquire_owned().await.ok()
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_micros()).unwrap_or(u64::MAX)
    }

    /// A device connected: it began at `began` and has its CONNACK now.
    pub fn connected(&self, began: Instant) {
        self.first_connect
            .fetch_min(self.micros(began), Ordering::Relaxed);
        self.last_connected
            .fetch_max(self.micros(Instant::now()), Ordering::Relaxed);
    }

    /// Seconds from the first connect's start to the last CONNACK.
    pub fn connect_seconds(&self) -> f64 {
        let first = self.first_connect.load(Ordering::Relaxed);
        let last = self.last_connected.load(Ordering::Relaxed);
        if first == u64::MAX || last < first {
            return 0.0;
        }
        (last - first) as f64 / 1e6
    }
}

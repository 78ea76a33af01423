//! When the fleet connected: the first connect's start and the last CONNACK, for the connect
//! rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// When devices connect: the first connect's start and the last CONNACK.
#[derive(Debug)]
pub struct Phase {
    started: Instant,
    first_connect: AtomicU64,
    last_connected: AtomicU64,
}

impl Default for Phase {
    /// Starts the clock.
    fn default() -> Phase {
        Phase {
            started: Instant::now(),
            first_connect: AtomicU64::new(u64::MAX),
            last_connected: AtomicU64::new(0),
        }
    }
}

impl Phase {
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

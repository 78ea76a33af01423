//! This node's health: liveness is the process answering; readiness is the store and the event
//! log answering a cheap read within a short bound, and the node not draining. A drain (the
//! server stopping) turns readiness off at once and tells every device connection of this
//! node to close once what it already received is acknowledged; [`Drain::idle`] waits for
//! them.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::Hub;

/// How long each readiness probe may take before its backend counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// This node's drain: whether it began, and how many device connections are still open.
#[derive(Debug, Clone)]
pub struct Drain {
    draining: Arc<watch::Sender<bool>>,
    open: Arc<watch::Sender<usize>>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            draining: Arc::new(watch::channel(false).0),
            open: Arc::new(watch::channel(0).0),
        }
    }
}

/// An open device connection, counted until dropped (see [`Drain::idle`]).
#[derive(Debug)]
pub struct ConnectionGuard(Arc<watch::Sender<usize>>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Drain {
    /// Begins the drain: readiness turns off and device connections close.
    pub fn begin(&self) {
        self.draining.send_replace(true);
    }

    /// Whether the drain began.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Resolves once the drain begins (at once when it has).
    pub async fn begun(&self) {
        let mut draining = self.draining.subscribe();
        let _ = draining.wait_for(|d| *d).await;
    }

    /// Counts a device connection open until the guard is dropped.
    pub fn track(&self) -> ConnectionGuard {
        self.open.send_modify(|n| *n += 1);
        ConnectionGuard(self.open.clone())
    }

    /// How many device connections are open.
    pub fn open_connections(&self) -> usize {
        *self.open.borrow()
    }

    /// Resolves once no device connection is open.
    pub async fn idle(&self) {
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|n| *n == 0).await;
    }
}

/// What a readiness check found: `ready` only when nothing failed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    pub ready: bool,
    /// What failed: `store`, `eventLog`, `draining`; empty when ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

impl Hub {
    /// This node's drain.
    pub fn drain(&self) -> &Drain {
        &self.drain
    }

    /// Probes the store (the hub's settings) and the event log (partition 0's bounds), each
    /// bounded by `bound`; not ready while draining.
    pub async fn readiness(&self, bound: Duration) -> Readiness {
        let mut failed = Vec::new();
        if self.drain.is_draining() {
            failed.push("draining".to_owned());
        }
        let (store, events) = tokio::join!(
            tokio::time::timeout(bound, self.store.hub_settings()),
            tokio::time::timeout(bound, self.events.bounds(0)),
        );
        if !matches!(store, Ok(Ok(Some(_)))) {
            tracing::warn!(result = ?store.map(|r| r.map(|_| ())), "readiness: the store did not answer");
            failed.push("store".to_owned());
        }
        if !matches!(events, Ok(Ok(_))) {
            tracing::warn!(result = ?events.map(|r| r.map(|_| ())), "readiness: the event log did not answer");
            failed.push("eventLog".to_owned());
        }
        Readiness {
            ready: failed.is_empty(),
            failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_turns_on_once_and_counts_connections() {
        let drain = Drain::default();
        assert!(!drain.is_draining());
        let guard = drain.track();
        let other = drain.clone().track();
        assert_eq!(drain.open_connections(), 2);
        drain.begin();
        assert!(drain.is_draining());
        drain.begun().await;
        drop(guard);
        assert_eq!(drain.open_connections(), 1);
        drop(other);
        tokio::time::timeout(Duration::from_secs(1), drain.idle())
            .await
            .expect("idle once every connection is dropped");
    }
}

//! The hub as one node among several sharing a store: what it owns (the connections, the
//! cloud-to-device locks and the job devices it records with its node id), the heartbeat that says it is alive,
//! and what it releases — its own entries when it starts, and those of nodes whose heartbeat
//! ran out.

use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::watch;

use crate::{Hub, HubError};

/// How long a node's heartbeat holds. A node renews it three times within; once it runs
/// out, any other node releases what that node held.
pub const NODE_LEASE: Duration = Duration::from_secs(30);

/// What a node released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Devices marked disconnected.
    pub disconnected: u64,
    /// Cloud-to-device messages made visible again.
    pub released_locks: u64,
    /// Devices a job was running on, put back to `pending` for any node to run.
    pub released_job_devices: u64,
}

impl std::ops::AddAssign for Recovered {
    fn add_assign(&mut self, other: Recovered) {
        self.disconnected += other.disconnected;
        self.released_locks += other.released_locks;
        self.released_job_devices += other.released_job_devices;
    }
}

impl Hub {
    /// The node this hub runs as: its bus's node id.
    pub fn node_id(&self) -> &str {
        self.bus.node_id()
    }

    /// At a node's start: says it is alive, then releases what its earlier run held and nobody
    /// will finish — its connections (their devices are marked disconnected) and its
    /// deliveries in flight (visible again at once instead of when their locks run out), the
    /// devices its job runner was on (`pending` again) — and
    /// what nodes whose heartbeat ran out held. Other live nodes' devices stay connected and
    /// their deliveries locked. Call it before listening.
    pub async fn recover_node(&self) -> Result<Recovered, HubError> {
        self.heartbeat().await?;
        let mut recovered = self.release(self.node_id()).await?;
        recovered += self.release_expired_nodes().await?;
        Ok(recovered)
    }

    /// Renews this node's heartbeat and releases what nodes whose heartbeat ran out held.
    pub async fn keep_node_alive(&self) -> Result<Recovered, HubError> {
        self.heartbeat().await?;
        self.release_expired_nodes().await
    }

    /// Runs [`Hub::keep_node_alive`] every third of [`NODE_LEASE`] until `stop` turns true.
    pub async fn keep_node_alive_until(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(NODE_LEASE / 3);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            }
            match self.keep_node_alive().await {
                Ok(r) if r != Recovered::default() => tracing::info!(
                    devices = r.disconnected,
                    messages = r.released_locks,
                    job_devices = r.released_job_devices,
                    "released what nodes that stopped answering held"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not renew this node's heartbeat"),
            }
        }
    }

    async fn heartbeat(&self) -> Result<(), HubError> {
        let until = self.now() + TimeDelta::from_std(NODE_LEASE).unwrap_or_default();
        Ok(self.store.node_heartbeat(self.node_id(), until).await?)
    }

    /// Releases the connections, locks and job devices `node` holds.
    async fn release(&self, node: &str) -> Result<Recovered, HubError> {
        Ok(Recovered {
            disconnected: self.store.disconnect_node(node).await?,
            released_locks: self.store.c2d_release_locks(node).await?,
            released_job_devices: self.release_job_devices(node).await?,
        })
    }

    async fn release_expired_nodes(&self) -> Result<Recovered, HubError> {
        let mut recovered = Recovered::default();
        for node in self.store.expired_nodes(self.now()).await? {
            if node != self.node_id() {
                recovered += self.release(&node).await?;
                self.store.forget_node(&node).await?;
            }
        }
        Ok(recovered)
    }
}

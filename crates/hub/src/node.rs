//! The hub as one node among several sharing a store: what it owns (the connections and the
//! cloud-to-device locks it records with its node id) and what it releases when it starts.

use crate::{Hub, HubError};

/// What a node released at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Devices the node's earlier run left marked connected.
    pub disconnected: u64,
    /// Cloud-to-device messages its earlier run's connections had locked.
    pub released_locks: u64,
}

impl Hub {
    /// The node this hub runs as: its bus's node id.
    pub fn node_id(&self) -> &str {
        self.bus.node_id()
    }

    /// Releases what this node's earlier run held and nobody will finish: its connections
    /// (their devices are marked disconnected) and its deliveries in flight (those messages are
    /// visible again at once instead of when their locks run out). Other nodes' devices stay
    /// connected and their deliveries locked. A node calls it at start, before it listens.
    pub async fn recover_node(&self) -> Result<Recovered, HubError> {
        let node = self.node_id();
        Ok(Recovered {
            disconnected: self.store.disconnect_node(node).await?,
            released_locks: self.store.c2d_release_locks(node).await?,
        })
    }
}

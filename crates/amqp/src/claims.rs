//! What a connection has proven: the tokens it put on `$cbs` (or its PLAIN login), each good
//! for the resource it names until it expires. A later token for the same audience replaces
//! the earlier one, which is how a client renews.

use std::sync::{Arc, Mutex};

use ironhub_auth::unix_now;
use ironhub_hub::{Hub, ServiceGrant};

/// The grants of one connection, shared by its links.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    grants: Arc<Mutex<Vec<(String, ServiceGrant)>>>,
}

impl Claims {
    /// Records `grant` for `audience` (replacing an earlier token for it).
    pub fn put(&self, audience: &str, grant: ServiceGrant) {
        if let Ok(mut grants) = self.grants.lock() {
            let now = unix_now();
            grants.retain(|(a, g)| a != audience && g.expires > now);
            grants.push((audience.to_owned(), grant));
        }
    }

    /// Whether a grant still valid covers `path` of the hub (`/{entity}/ConsumerGroups/…`).
    pub fn allows(&self, hub: &Hub, path: &str) -> bool {
        let now = unix_now();
        self.grants
            .lock()
            .map(|grants| grants.iter().any(|(_, g)| hub.grant_covers(g, path, now)))
            .unwrap_or(false)
    }
}

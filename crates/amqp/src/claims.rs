//! What a connection has proven: the tokens it put on `$cbs` (or its PLAIN login), each good
//! for the resource it names until it expires. A later token for the same audience replaces
//! the earlier one, which is how a client renews. Device tokens are kept apart: each proves
//! one device or module (many may share a connection, the gateway pattern), as the domain
//! decided, and is found by the identity's key (`deviceId` or `deviceId/moduleId`).

use std::sync::{Arc, Mutex};

use ironhub_auth::unix_now;
use ironhub_hub::{AuthenticatedDevice, Hub, ServiceGrant};

/// The grants of one connection, shared by its links.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    grants: Arc<Mutex<Vec<(String, ServiceGrant)>>>,
    devices: Arc<Mutex<Vec<AuthenticatedDevice>>>,
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

    /// Records a device's or module's token (replacing an earlier one of the same identity).
    pub fn put_device(&self, device: AuthenticatedDevice) {
        if let Ok(mut devices) = self.devices.lock() {
            let key = device.identity.key();
            devices.retain(|d| !same(d, &key));
            devices.push(device);
        }
    }

    /// The device or module `key` (`deviceId` or `deviceId/moduleId`) as its token proved
    /// it, while that token is valid.
    pub fn device(&self, key: &str) -> Option<AuthenticatedDevice> {
        let now = unix_now();
        let devices = self.devices.lock().ok()?;
        devices
            .iter()
            .find(|d| same(d, key) && d.expires.is_none_or(|e| e > now))
            .cloned()
    }

    /// Forgets the login of `key` (its access was revoked: a new link must log in again).
    pub fn forget_device(&self, key: &str) {
        if let Ok(mut devices) = self.devices.lock() {
            devices.retain(|d| !same(d, key));
        }
    }
}

/// Whether `device` is the identity `key` names.
fn same(device: &AuthenticatedDevice, key: &str) -> bool {
    device.identity.key() == key
}

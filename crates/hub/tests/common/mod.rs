//! What the device tests share: a hub on a temporary embedded engine, and device identities.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{AuthMethod, AuthenticatedDevice, Backends, DeviceIdentity, Hub};

/// A hub named `myhub.example` on a temporary SQLite store and event log and a local bus.
pub async fn temp_hub() -> (Hub, tempfile::TempDir) {
    let (hub, _, dir) = temp_hub_with_bus().await;
    (hub, dir)
}

/// [`temp_hub`] and its bus, for tests that watch what the hub tells connections.
pub async fn temp_hub_with_bus() -> (Hub, Arc<LocalBus>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(LocalBus::new());
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: bus.clone(),
    };
    let hub = Hub::open(backends, vec!["myhub.example".into()])
        .await
        .unwrap();
    (hub, bus, dir)
}

/// A device `id` authenticated by SAS, generation `gen-1`.
pub fn authenticated(id: &str) -> AuthenticatedDevice {
    AuthenticatedDevice {
        identity: DeviceIdentity {
            device_id: id.into(),
            module_id: None,
            generation_id: "gen-1".into(),
            auth: AuthMethod::Sas,
            model_id: None,
        },
        expires: None,
    }
}

//! What the crate's unit tests share: a hub on the embedded engine.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{Backends, Hub};

/// The host name of [`hub`].
pub const HOST: &str = "myhub.example";

/// A hub named [`HOST`] with the device `d1` (symmetric keys), and the directory that holds
/// its data (kept while the test runs).
pub async fn hub() -> (Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
        events: Arc::new(SqliteEventLog::open(dir.path(), 2).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec![HOST.into()]).await.unwrap();
    hub.put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    (hub, dir)
}

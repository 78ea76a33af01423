//! The device registry port: hub settings, where the server listens, and device identities.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    BatchResult, DeviceCounts, DeviceRecord, DeviceWrite, Endpoint, HubSettings, Result,
    RuntimeUpdate,
};

/// Device identities and the hub's settings. Writes are compare-and-swap on the etag.
#[async_trait]
pub trait RegistryStore: Send + Sync {
    /// The hub's settings; created from `init` on the very first call and never replaced.
    async fn hub_settings_or_init(&self, init: HubSettings) -> Result<HubSettings>;
    /// The hub's settings, if the hub was ever started.
    async fn hub_settings(&self) -> Result<Option<HubSettings>>;
    /// Records where the server listens (see [`Endpoint`]).
    async fn set_endpoint(&self, endpoint: &Endpoint) -> Result<()>;
    /// Where the server last listened.
    async fn endpoint(&self) -> Result<Option<Endpoint>>;

    /// One device, by its exact (case-sensitive) id.
    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>>;
    /// Devices ordered by id, after `after`, at most `limit`.
    async fn list_devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<DeviceRecord>>;
    /// Total, enabled and disabled devices.
    async fn device_counts(&self) -> Result<DeviceCounts>;
    /// Changes a device's runtime fields without changing its etag; false if there is no such
    /// device.
    async fn update_device_runtime(&self, id: &str, update: RuntimeUpdate) -> Result<bool>;
    /// Marks disconnected the devices and modules connected through `node`, or through no
    /// recorded node (as servers before node ids left them). A node calls it at start: none of
    /// its own connections of before is still open, while other nodes' devices stay
    /// connected. Returns how many devices and modules it disconnected.
    async fn disconnect_node(&self, node: &str) -> Result<u64>;
    /// Records that `node` is alive until `until`; a running node renews it.
    async fn node_heartbeat(&self, node: &str, until: DateTime<Utc>) -> Result<()>;
    /// The nodes whose last heartbeat ran out at or before `now`, ordered by id: they are gone,
    /// and any node may release what they held (then [`RegistryStore::forget_node`]).
    async fn expired_nodes(&self, now: DateTime<Utc>) -> Result<Vec<String>>;
    /// Forgets a node's heartbeat (once what it held is released).
    async fn forget_node(&self, node: &str) -> Result<()>;
    /// Applies all writes atomically, or none. The store assigns each written record a new
    /// etag, unique for the lifetime of the store. Deleting a device deletes its twin, its modules, its
    /// persistent MQTT sessions and its cloud-to-device queue.
    async fn write_devices(&self, writes: Vec<DeviceWrite>) -> Result<BatchResult>;
}

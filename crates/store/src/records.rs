//! The plain data the store keeps. Rules about it live in the domains (`hub`, `dps`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ironhub_auth::SharedAccessPolicy;
use serde::{Deserialize, Serialize};

pub use ironhub_wire::hub::{
    AuthType, Authentication, ConnectionState, DeviceStatus, FeedbackStatus, SymmetricKey,
    Thumbprint as X509Thumbprint,
};

/// A device identity in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    pub device_id: String,
    pub generation_id: String,
    /// Assigned by the store on every write; opaque to everyone else.
    pub etag: String,
    pub status: DeviceStatus,
    pub status_reason: Option<String>,
    pub status_updated_time: Option<DateTime<Utc>>,
    pub connection_state: ConnectionState,
    /// The node holding the device's connection, while connected (a runtime field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_node: Option<String>,
    pub connection_state_updated_time: Option<DateTime<Utc>>,
    pub last_activity_time: Option<DateTime<Utc>>,
    pub cloud_to_device_message_count: u64,
    pub authentication: Authentication,
    pub iot_edge: bool,
    pub device_scope: Option<String>,
    #[serde(default)]
    pub parent_scopes: Vec<String>,
}

/// One write in an atomic batch of device writes.
#[derive(Debug, Clone)]
pub enum DeviceWrite {
    /// Insert; fails with [`WriteConflict::AlreadyExists`] if the id is taken.
    Create(DeviceRecord),
    /// Replace an existing device; with `if_match`, only when its etag is that one. Runtime
    /// fields (connection state, its time and its node, last activity, cloud-to-device message
    /// count) are kept as stored: they
    /// change through [`crate::RegistryStore::update_device_runtime`] only.
    Replace {
        record: DeviceRecord,
        if_match: Option<String>,
    },
    /// Delete; with `if_match`, only when the etag is that one.
    Delete {
        id: String,
        if_match: Option<String>,
    },
}

impl DeviceWrite {
    /// The device id this write is about.
    pub fn device_id(&self) -> &str {
        match self {
            DeviceWrite::Create(r) | DeviceWrite::Replace { record: r, .. } => &r.device_id,
            DeviceWrite::Delete { id, .. } => id,
        }
    }
}

/// Why one write of a batch could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteConflict {
    #[error("the device already exists")]
    AlreadyExists,
    #[error("the device does not exist")]
    NotFound,
    #[error("the etag does not match")]
    EtagMismatch,
}

/// The outcome of an atomic batch: either every write was applied (with the records as stored,
/// `None` for deletes), or none was, with the reason for each write that failed.
pub type BatchResult = Result<Vec<Option<DeviceRecord>>, Vec<(usize, WriteConflict)>>;

/// Counts for registry statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceCounts {
    pub total: u64,
    pub enabled: u64,
    pub disabled: u64,
    /// Devices whose connection state is `Connected`.
    pub connected: u64,
}

/// Hub-wide settings created at first start and never regenerated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubSettings {
    pub policies: Vec<SharedAccessPolicy>,
    pub created_time: DateTime<Utc>,
}

impl HubSettings {
    /// The policy with this name (matched case-insensitively, as IoT Hub does).
    pub fn policy(&self, name: &str) -> Option<&SharedAccessPolicy> {
        self.policies
            .iter()
            .find(|p| p.key_name.eq_ignore_ascii_case(name))
    }
}

/// Where the running server can be reached, recorded at every start so that `ironhub info` and
/// the CLI on the same machine can build connection strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The hub's host name (the first `--hostname`).
    pub host_name: String,
    /// Every name the server answers to.
    pub host_names: Vec<String>,
    pub https_port: u16,
    pub mqtt_port: u16,
    /// The port of AMQP over TLS (absent in records of older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp_port: Option<u16>,
    /// The address the HTTPS listener is bound to (absent in records of older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_listen: Option<SocketAddr>,
    /// The server certificate given with `--tls-cert`, when the generated one is not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_certificate: Option<PathBuf>,
}

impl Endpoint {
    /// Where a client on the server's own machine connects to reach HTTPS: the listen address,
    /// with an unspecified IP (`0.0.0.0`, `[::]`) replaced by loopback. The host name may not
    /// resolve there (`--hostname myhub.example`), so the CLI dials this address and checks the
    /// certificate against the host name.
    pub fn local_https_address(&self) -> Option<SocketAddr> {
        let mut addr = self.https_listen?;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        Some(addr)
    }

    /// `host` when HTTPS is on 443, else `host:port`: the `HostName` of a connection string.
    pub fn connection_host(&self) -> String {
        if self.https_port == 443 {
            self.host_name.clone()
        } else if self.host_name.contains(':') {
            format!("[{}]:{}", self.host_name, self.https_port)
        } else {
            format!("{}:{}", self.host_name, self.https_port)
        }
    }
}

/// A device twin's documents. The hub domain owns their rules (merging, versions, metadata);
/// the store keeps them and assigns the etag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TwinRecord {
    pub device_id: String,
    /// Assigned by the store on every write.
    pub etag: String,
    /// Counts every change of the twin.
    pub version: u64,
    pub tags: serde_json::Map<String, serde_json::Value>,
    pub desired: serde_json::Map<String, serde_json::Value>,
    pub desired_version: u64,
    pub desired_metadata: serde_json::Map<String, serde_json::Value>,
    pub reported: serde_json::Map<String, serde_json::Value>,
    pub reported_version: u64,
    pub reported_metadata: serde_json::Map<String, serde_json::Value>,
    /// The IoT Plug and Play model the device last announced when it connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// The configurations that target the twin and how far each got, by configuration id
    /// (IoT Hub's `configurations`: `{"id": {"status": "Targeted" | "Applied"}}`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub configurations: serde_json::Map<String, serde_json::Value>,
}

/// Which outcomes of a cloud-to-device message the sender wants feedback on (`iothub-ack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    #[default]
    None,
    /// Only `Success`.
    Positive,
    /// Only failures: `Expired`, `DeliveryCountExceeded`, `Rejected`, `Purged`.
    Negative,
    /// Every outcome.
    Full,
}

impl AckMode {
    /// The value of `iothub-ack`.
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::None => "none",
            AckMode::Positive => "positive",
            AckMode::Negative => "negative",
            AckMode::Full => "full",
        }
    }

    /// Whether an outcome with this status produces a feedback record.
    pub fn wants(self, status: FeedbackStatus) -> bool {
        match self {
            AckMode::None => false,
            AckMode::Positive => status == FeedbackStatus::Success,
            AckMode::Negative => status != FeedbackStatus::Success,
            AckMode::Full => true,
        }
    }
}

/// A cloud-to-device message in a device's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct C2dMessage {
    pub device_id: String,
    /// The device's generation when the message was sent (for feedback).
    pub device_generation_id: String,
    pub message_id: String,
    pub correlation_id: Option<String>,
    pub user_id: Option<String>,
    /// `/devices/{id}/messages/deviceBound`.
    pub to: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub expiry_time: DateTime<Utc>,
    pub ack: AckMode,
    /// Application properties, in the sender's order.
    pub properties: Vec<(String, String)>,
    /// Kept in its own column, not in the JSON document.
    #[serde(skip)]
    pub body: Vec<u8>,
    pub enqueued_time: DateTime<Utc>,
    /// Assigned by the store at enqueue: grows with every message of the hub.
    #[serde(skip)]
    pub sequence_number: u64,
    /// How many times the message was locked for delivery (kept in a column).
    #[serde(skip)]
    pub delivery_count: u32,
    /// The lock of the delivery in progress, if any (kept in a column).
    #[serde(skip)]
    pub lock_token: Option<String>,
    #[serde(skip)]
    pub locked_until: Option<DateTime<Utc>>,
    /// The node whose connection holds the lock (kept in a column).
    #[serde(skip)]
    pub lock_node: Option<String>,
}

/// What a device (or its connection) did with a locked message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum C2dSettle {
    /// Delivered: removed, `Success` feedback.
    Complete,
    /// Refused by the device: removed, `Rejected` feedback.
    Reject,
    /// Put back in the queue, visible again (its delivery still counts).
    Abandon,
}

/// Why a message could not be enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum C2dRefusal {
    #[error("the device does not exist")]
    DeviceNotFound,
    #[error("the device's queue is full")]
    QueueFull,
}

/// The queue rules the store applies atomically; the hub domain chooses the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct C2dRules {
    /// Most live messages a device's queue holds.
    pub max_depth: usize,
    /// A message locked this many times is dead-lettered (`DeliveryCountExceeded`).
    pub max_delivery_count: u32,
    /// How long a delivered message stays invisible waiting to be settled.
    pub lock_duration: chrono::Duration,
    /// How long feedback records are kept.
    pub feedback_ttl: chrono::Duration,
    /// How long a received feedback batch stays locked.
    pub feedback_lock_duration: chrono::Duration,
    /// Most records in one feedback batch.
    pub feedback_batch: usize,
}

/// One feedback record (IoT Hub's shape, rendered by the hub domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackRecord {
    pub original_message_id: String,
    pub device_id: String,
    pub device_generation_id: String,
    pub status_code: FeedbackStatus,
    /// When the outcome happened.
    pub enqueued_time_utc: DateTime<Utc>,
}

/// Feedback records received together under one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackBatch {
    pub lock_token: String,
    /// When the oldest record of the batch was written.
    pub enqueued_time: DateTime<Utc>,
    /// How many times these records were received (the largest count among them).
    pub delivery_count: u32,
    pub records: Vec<FeedbackRecord>,
}

/// A change of a device's runtime fields, which does not change its etag (as in IoT Hub, where
/// a device connecting does not invalidate a service's `If-Match`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeUpdate {
    pub connection_state: Option<ConnectionState>,
    /// The node the connection change comes from: a connection records it; a disconnection
    /// applies only to a connection of that node (or of no recorded node), so a node whose
    /// old connection ends late does not mark disconnected a device that moved on.
    pub node: Option<String>,
    /// Sets `lastActivityTime` (and, with a connection state, `connectionStateUpdatedTime`).
    pub at: Option<DateTime<Utc>>,
}

/// The runtime fields a device and a module identity both keep, borrowed from either record,
/// so that one rule ([`RuntimeUpdate::apply`]) changes both.
#[derive(Debug)]
pub struct RuntimeFields<'a> {
    pub connection_state: &'a mut ConnectionState,
    pub connection_node: &'a mut Option<String>,
    pub connection_state_updated_time: &'a mut Option<DateTime<Utc>>,
    pub last_activity_time: &'a mut Option<DateTime<Utc>>,
}

/// Whether a connection `held` by a node (or by none known) is `node`'s (or any, for none).
fn held_by(held: Option<&str>, node: Option<&str>) -> bool {
    match (held, node) {
        (None, _) | (_, None) => true,
        (Some(held), Some(node)) => held == node,
    }
}

impl RuntimeFields<'_> {
    /// Whether the connection is held by `node`, or by no known node (a server from before
    /// node ids, or an update that named none).
    pub fn connected_through_or_unknown(&self, node: Option<&str>) -> bool {
        held_by(self.connection_node.as_deref(), node)
    }

    /// Marks the identity disconnected at `at` if `node` (or no known node) holds its
    /// connection, as a node's recovery does; whether it did.
    pub fn disconnect_from(&mut self, node: &str, at: DateTime<Utc>) -> bool {
        if *self.connection_state != ConnectionState::Connected
            || !self.connected_through_or_unknown(Some(node))
        {
            return false;
        }
        *self.connection_state = ConnectionState::Disconnected;
        *self.connection_node = None;
        *self.connection_state_updated_time = Some(at);
        true
    }
}

impl RuntimeUpdate {
    /// Applies the update to a device's runtime fields; false when it does not apply (a
    /// disconnection from a node that does not hold the device's connection).
    pub fn apply_to(&self, device: &mut DeviceRecord) -> bool {
        self.apply(device.runtime())
    }

    /// Applies the update to a module identity's runtime fields, by the device's rule.
    pub fn apply_to_module(&self, module: &mut ModuleRecord) -> bool {
        self.apply(module.runtime())
    }

    /// Applies the update to the runtime fields of a device or a module.
    pub fn apply(&self, fields: RuntimeFields<'_>) -> bool {
        if let Some(state) = self.connection_state {
            if state == ConnectionState::Disconnected
                && *fields.connection_state == ConnectionState::Connected
                && !fields.connected_through_or_unknown(self.node.as_deref())
            {
                return false;
            }
            *fields.connection_state = state;
            *fields.connection_node = match state {
                ConnectionState::Connected => self.node.clone(),
                ConnectionState::Disconnected => None,
            };
            *fields.connection_state_updated_time =
                self.at.or(*fields.connection_state_updated_time);
        }
        if self.at.is_some() {
            *fields.last_activity_time = self.at;
        }
        true
    }
}

impl DeviceRecord {
    /// Takes the runtime fields (connection state, its time and its node, last activity,
    /// cloud-to-device message count) from the stored device, as a replace keeps them.
    pub fn keep_runtime_of(&mut self, current: &DeviceRecord) {
        self.connection_state = current.connection_state;
        self.connection_node = current.connection_node.clone();
        self.connection_state_updated_time = current.connection_state_updated_time;
        self.last_activity_time = current.last_activity_time;
        self.cloud_to_device_message_count = current.cloud_to_device_message_count;
    }

    /// Whether the device's connection is held by `node`, or by no known node (a server from
    /// before node ids, or an update that named none).
    pub fn connected_through_or_unknown(&self, node: Option<&str>) -> bool {
        held_by(self.connection_node.as_deref(), node)
    }

    /// Its runtime fields, for [`RuntimeUpdate::apply`].
    pub fn runtime(&mut self) -> RuntimeFields<'_> {
        RuntimeFields {
            connection_state: &mut self.connection_state,
            connection_node: &mut self.connection_node,
            connection_state_updated_time: &mut self.connection_state_updated_time,
            last_activity_time: &mut self.last_activity_time,
        }
    }
}

/// Whose CA certificates: the hub's (for devices that authenticate by CA) or the DPS
/// instance's (for X.509 enrollment groups). Each has its own names and rules of use; the
/// upload and proof-of-possession rules are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertificateScope {
    Hub,
    Dps,
}

/// A CA certificate uploaded to the hub (or to the DPS instance, see [`CertificateScope`]), for devices that authenticate by CA
/// (`authentication.type = certificateAuthority`). The hub domain owns the rules (parsing,
/// proof of possession); the store keeps the record and assigns the etag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRecord {
    pub name: String,
    /// Assigned by the store on every write.
    pub etag: String,
    /// The certificate, PEM.
    pub certificate: String,
    pub subject: String,
    /// SHA-1 of the DER, upper-case hex.
    pub thumbprint: String,
    pub expiry: DateTime<Utc>,
    /// Proof of possession was given (or the uploader declared it verified).
    pub is_verified: bool,
    /// The code a proof-of-possession certificate must carry as its CN, once generated.
    pub verification_code: Option<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_clients_dial_loopback_for_an_unspecified_listen_address() {
        let mut e = Endpoint {
            host_name: "myhub.example".into(),
            host_names: vec!["myhub.example".into()],
            https_port: 443,
            mqtt_port: 8883,
            amqp_port: None,
            https_listen: None,
            tls_certificate: None,
        };
        assert_eq!(e.local_https_address(), None);
        e.https_listen = Some("0.0.0.0:443".parse().unwrap());
        assert_eq!(
            e.local_https_address(),
            Some("127.0.0.1:443".parse().unwrap())
        );
        e.https_listen = Some("[::]:8443".parse().unwrap());
        assert_eq!(e.local_https_address(), Some("[::1]:8443".parse().unwrap()));
        e.https_listen = Some("127.0.0.7:443".parse().unwrap());
        assert_eq!(
            e.local_https_address(),
            Some("127.0.0.7:443".parse().unwrap())
        );
    }
}

/// A module identity of a device in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleRecord {
    pub device_id: String,
    pub module_id: String,
    pub generation_id: String,
    /// Assigned by the store on every write; opaque to everyone else.
    pub etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    pub connection_state: ConnectionState,
    /// The node holding the module's connection while it is connected (as a device's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_node: Option<String>,
    pub connection_state_updated_time: Option<DateTime<Utc>>,
    pub last_activity_time: Option<DateTime<Utc>>,
    pub cloud_to_device_message_count: u64,
    pub authentication: Authentication,
}

impl ModuleRecord {
    /// Takes the runtime fields (connection state, its time and its node, last activity)
    /// from the stored module, as a replace keeps them.
    pub fn keep_runtime_of(&mut self, current: &ModuleRecord) {
        self.connection_state = current.connection_state;
        self.connection_node = current.connection_node.clone();
        self.connection_state_updated_time = current.connection_state_updated_time;
        self.last_activity_time = current.last_activity_time;
    }

    /// Its runtime fields, for [`RuntimeUpdate::apply`].
    pub fn runtime(&mut self) -> RuntimeFields<'_> {
        RuntimeFields {
            connection_state: &mut self.connection_state,
            connection_node: &mut self.connection_node,
            connection_state_updated_time: &mut self.connection_state_updated_time,
            last_activity_time: &mut self.last_activity_time,
        }
    }
}

/// One write of a module identity.
#[derive(Debug, Clone)]
pub enum ModuleWrite {
    /// Insert; [`WriteConflict::NotFound`] if the device does not exist,
    /// [`WriteConflict::AlreadyExists`] if the module does.
    Create(ModuleRecord),
    /// Replace an existing module; with `if_match`, only when its etag is that one. The
    /// connection state, its time and the last activity are kept as stored.
    Replace {
        record: ModuleRecord,
        if_match: Option<String>,
    },
    /// Delete; with `if_match`, only when the etag is that one.
    Delete {
        device_id: String,
        module_id: String,
        if_match: Option<String>,
    },
}

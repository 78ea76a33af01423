//! What a run is asked to do: every device's behaviour ([`Config`]) and which devices connect
//! where ([`Fleet`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::provision::Dps;

/// The MQTT port of IoT Hub and DPS.
pub const MQTT_PORT: u16 = 8883;

/// What every device does.
#[derive(Debug, Clone)]
pub struct Config {
    /// Names this run's messages (their ids start with it).
    pub run_id: String,
    pub device_count: usize,
    pub device_prefix: String,
    /// New connections per second over the fleet; 0: as fast as possible.
    pub connect_rate: f64,
    /// Time between two messages of one device.
    pub msg_interval: Duration,
    pub msg_size: usize,
    pub qos1: bool,
    /// QoS 1 messages one device may have unacknowledged.
    pub max_inflight: usize,
    pub twin_interval: Option<Duration>,
    /// Messages per device; `None` with a duration: until the duration ends.
    pub msg_count: Option<u64>,
    pub duration: Option<Duration>,
    /// Plain MQTT: IoT Hub's topics without its properties, nothing subscribed.
    pub plain_mqtt: bool,
    /// Set by [`run`]: when sending stops.
    pub deadline: Option<tokio::time::Instant>,
}

impl Config {
    /// Device `i`'s id (or registration id).
    pub fn device_id(&self, i: usize) -> String {
        format!("{}{i}", self.device_prefix)
    }
}

/// Which devices, and where they connect.
#[derive(Debug, Clone)]
pub enum Fleet {
    /// IoT Hub devices whose keys are known, `(id, key)` in fleet order.
    Hub {
        host: String,
        address: SocketAddr,
        keys: Vec<(String, String)>,
    },
    /// Devices that provision through DPS first (then connect to the hub DPS assigns, on
    /// [`MQTT_PORT`]).
    Dps(Dps),
    /// Plain MQTT clients of any broker.
    Mqtt { address: SocketAddr },
}

//! The largest frames and packets the transports read: a bound on what one client can make the
//! server buffer, configurable (`serve --max-mqtt-packet-bytes` and the like). They are not IoT
//! Hub's message size rule ([`crate::MAX_TELEMETRY_BYTES`], checked by the domain whatever the
//! transport): a packet under the frame limit can still carry a message over 256 KiB, and is
//! refused as IoT Hub refuses it.

use crate::MAX_TELEMETRY_BYTES;

/// The transports' read limits. A packet or message over its limit ends the connection as a
/// malformed one does (MQTT, WebSocket) or is refused on its link (AMQP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// The largest MQTT packet a client may send, over TLS and over WebSocket (its remaining
    /// length: the bytes after the fixed header).
    pub mqtt_packet_bytes: usize,
    /// The largest WebSocket message (and frame) a client may send.
    pub websocket_message_bytes: usize,
    /// The largest AMQP message a client may send on a link (its `max-message-size`).
    pub amqp_message_bytes: u64,
}

impl FrameLimits {
    /// A 256 KiB message with 64 KiB for its topic and properties.
    pub const DEFAULT_MQTT_PACKET_BYTES: usize = MAX_TELEMETRY_BYTES + 64 * 1024;
    /// Twice a 256 KiB message.
    pub const DEFAULT_WEBSOCKET_MESSAGE_BYTES: usize = MAX_TELEMETRY_BYTES * 2;
    /// A 256 KiB message with 16 KiB for the AMQP framing.
    pub const DEFAULT_AMQP_MESSAGE_BYTES: u64 = (MAX_TELEMETRY_BYTES + 16 * 1024) as u64;
    /// The smallest limit accepted: an MQTT CONNECT with a SAS token, a twin request.
    pub const MIN_BYTES: usize = 1024;
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            mqtt_packet_bytes: Self::DEFAULT_MQTT_PACKET_BYTES,
            websocket_message_bytes: Self::DEFAULT_WEBSOCKET_MESSAGE_BYTES,
            amqp_message_bytes: Self::DEFAULT_AMQP_MESSAGE_BYTES,
        }
    }
}

//! `serve`'s frame limits: the largest MQTT packet, WebSocket message and AMQP message a client
//! may send (`ironhub_hub::frame_limits`), as flags, `IRONHUB_*` variables and a
//! `[frame_limits]` table of the config file.

use clap::Args;
use ironhub_hub::frame_limits::FrameLimits;
use serde::Deserialize;

/// The largest limit accepted: 64 MiB.
const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The smallest, as clap's range bound.
const MIN_BYTES: u64 = FrameLimits::MIN_BYTES as u64;

/// The flags.
#[derive(Debug, Clone, Args, Default)]
pub struct FrameLimitArgs {
    /// The largest MQTT packet a client may send, over TLS and WebSocket, counted after its
    /// fixed header; a larger one closes the connection [default: 327680, a 256 KiB message
    /// with 64 KiB for its topic and properties].
    #[arg(long, env = "IRONHUB_MAX_MQTT_PACKET_BYTES", value_parser = clap::value_parser!(u64).range(MIN_BYTES..=MAX_BYTES))]
    pub max_mqtt_packet_bytes: Option<u64>,
    /// The largest WebSocket message (and frame) a client may send on the HTTPS port; a larger
    /// one closes the connection [default: 524288].
    #[arg(long, env = "IRONHUB_MAX_WEBSOCKET_MESSAGE_BYTES", value_parser = clap::value_parser!(u64).range(MIN_BYTES..=MAX_BYTES))]
    pub max_websocket_message_bytes: Option<u64>,
    /// The largest AMQP message a client may send on a link (its max-message-size) [default:
    /// 278528, a 256 KiB message with 16 KiB for the framing].
    #[arg(long, env = "IRONHUB_MAX_AMQP_MESSAGE_BYTES", value_parser = clap::value_parser!(u64).range(MIN_BYTES..=MAX_BYTES))]
    pub max_amqp_message_bytes: Option<u64>,
}

/// The `[frame_limits]` table: the same keys as the flags, without `max_` (`mqtt_packet_bytes`,
/// `websocket_message_bytes`, `amqp_message_bytes`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameLimitsFile {
    mqtt_packet_bytes: Option<u64>,
    websocket_message_bytes: Option<u64>,
    amqp_message_bytes: Option<u64>,
}

impl FrameLimitArgs {
    /// The limits: a flag wins over the file, the file over the default.
    pub fn resolve(&self, file: FrameLimitsFile) -> anyhow::Result<FrameLimits> {
        let defaults = FrameLimits::default();
        let pick = |key: &str, flag: Option<u64>, file: Option<u64>, default: u64| {
            let value = flag.or(file).unwrap_or(default);
            if !(MIN_BYTES..=MAX_BYTES).contains(&value) {
                anyhow::bail!(
                    "frame_limits.{key} is {value}: use {} to {MAX_BYTES} bytes",
                    FrameLimits::MIN_BYTES
                );
            }
            Ok(value)
        };
        let mqtt = pick(
            "mqtt_packet_bytes",
            self.max_mqtt_packet_bytes,
            file.mqtt_packet_bytes,
            defaults.mqtt_packet_bytes as u64,
        )?;
        let websocket = pick(
            "websocket_message_bytes",
            self.max_websocket_message_bytes,
            file.websocket_message_bytes,
            defaults.websocket_message_bytes as u64,
        )?;
        let amqp = pick(
            "amqp_message_bytes",
            self.max_amqp_message_bytes,
            file.amqp_message_bytes,
            defaults.amqp_message_bytes,
        )?;
        Ok(FrameLimits {
            mqtt_packet_bytes: usize::try_from(mqtt)?,
            websocket_message_bytes: usize::try_from(websocket)?,
            amqp_message_bytes: amqp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_the_defaults() {
        assert_eq!(
            FrameLimitArgs::default()
                .resolve(FrameLimitsFile::default())
                .unwrap(),
            FrameLimits::default()
        );
        let file: FrameLimitsFile =
            toml::from_str("mqtt_packet_bytes = 4096\namqp_message_bytes = 8192\n").unwrap();
        let args = FrameLimitArgs {
            max_mqtt_packet_bytes: Some(2048),
            ..FrameLimitArgs::default()
        };
        let limits = args.resolve(file).unwrap();
        assert_eq!(limits.mqtt_packet_bytes, 2048);
        assert_eq!(limits.amqp_message_bytes, 8192);
        assert_eq!(
            limits.websocket_message_bytes,
            FrameLimits::DEFAULT_WEBSOCKET_MESSAGE_BYTES
        );
        let tiny: FrameLimitsFile = toml::from_str("websocket_message_bytes = 10\n").unwrap();
        assert!(FrameLimitArgs::default().resolve(tiny).is_err());
        assert!(toml::from_str::<FrameLimitsFile>("max_mqtt_packet_bytes = 4096\n").is_err());
    }
}

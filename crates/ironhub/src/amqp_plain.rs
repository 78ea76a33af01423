//! The opt-in plain AMQP listener (`--amqp-plain-listen`): AMQP without TLS, for the Event
//! Hubs SDKs' development emulator mode. A connection string with
//! `UseDevelopmentEmulator=true` makes `azure-eventhub` and `@azure/event-hubs` connect with
//! plain AMQP (port 5672 unless the endpoint names another) instead of TLS on 5671. It serves
//! the same AMQP endpoint as 5671 (SASL, `$cbs`, the Event Hubs-compatible endpoint, devices),
//! under the same connection caps, network rules and AMQP handshake time-outs; only TLS (and so
//! client certificates) is missing. Tokens cross it in the clear, so it binds only to a
//! loopback address unless `--amqp-plain-any-address` says otherwise.

use std::net::SocketAddr;

/// The plain listener's address, if any: refused on a non-loopback address unless
/// `any_address`.
pub fn checked_listen(
    listen: Option<SocketAddr>,
    any_address: bool,
) -> anyhow::Result<Option<SocketAddr>> {
    match listen {
        Some(addr) if !addr.ip().is_loopback() && !any_address => anyhow::bail!(
            "--amqp-plain-listen {addr} is not a loopback address: plain AMQP carries tokens \
             in the clear and is meant for development on one machine; add \
             --amqp-plain-any-address to bind it elsewhere anyway"
        ),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_loopback_unless_told_otherwise() {
        let loopback: SocketAddr = "127.0.0.1:5672".parse().unwrap();
        let v6: SocketAddr = "[::1]:5672".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:5672".parse().unwrap();
        assert_eq!(checked_listen(None, false).unwrap(), None);
        assert_eq!(
            checked_listen(Some(loopback), false).unwrap(),
            Some(loopback)
        );
        assert_eq!(checked_listen(Some(v6), false).unwrap(), Some(v6));
        let refused = checked_listen(Some(any), false).unwrap_err().to_string();
        assert!(refused.contains("--amqp-plain-any-address"), "{refused}");
        assert_eq!(checked_listen(Some(any), true).unwrap(), Some(any));
    }
}

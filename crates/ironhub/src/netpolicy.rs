//! The network and TLS policy settings of `ironhub serve` (flags, `IRONHUB_*` variables and
//! the config file's `[network]` table), and the accept-time gate every listener asks.
//!
//! - `min_tls_version` (1.2 or 1.3) and `tls_cipher_suites` (IANA names): every TLS port.
//! - `device_hostname`, `service_hostname`: IoT Hub's separate device and service endpoint
//!   names (`{hub}.device.{domain}`, `{hub}.service.{domain}`), added to the generated server
//!   certificate.
//! - `private_endpoints`: the listeners (`https`, `mqtt`, `amqp`) whose connections count as
//!   coming through a private endpoint (IP filters and `publicNetworkAccess` do not apply).
//! - `[network.hub]`, `[network.dps]`: the network rules in ARM's property names
//!   (`publicNetworkAccess`, `ipFilterRules`, `networkRuleSets`), replacing the stored ones
//!   at every start, as `[routing]` does.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Args;
use ironhub_hub::Hub;
use ironhub_hub::network::{NetworkEndpoint, Peer};
use ironhub_store::NetworkScope;
use ironhub_tls::{MinTlsVersion, TlsPolicy};
use ironhub_wire::network::NetworkRules;
use serde::Deserialize;

/// The listeners a configuration can name a private endpoint.
pub const LISTENERS: [&str; 3] = ["https", "mqtt", "amqp"];

/// Network and TLS policy flags.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Network and TLS policy")]
pub struct NetPolicyArgs {
    /// The lowest TLS version every port accepts: 1.2 or 1.3 [default: 1.2].
    #[arg(long, env = "IRONHUB_MIN_TLS_VERSION")]
    pub min_tls_version: Option<MinTlsVersion>,
    /// The TLS cipher suites allowed, by IANA name, comma-separated (e.g.
    /// TLS_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384) [default: all
    /// that the server supports].
    #[arg(long, env = "IRONHUB_TLS_CIPHER_SUITES", value_delimiter = ',')]
    pub tls_cipher_suites: Vec<String>,
    /// The device endpoint's host name (IoT Hub's `{hub}.device.{domain}`), added to the
    /// generated server certificate.
    #[arg(long, env = "IRONHUB_DEVICE_HOSTNAME")]
    pub device_hostname: Option<String>,
    /// The service endpoint's host name (IoT Hub's `{hub}.service.{domain}`), added to the
    /// generated server certificate.
    #[arg(long, env = "IRONHUB_SERVICE_HOSTNAME")]
    pub service_hostname: Option<String>,
    /// Listeners whose connections come through a private endpoint (https, mqtt, amqp;
    /// comma-separated): IP filters and disabled public network access let them in.
    #[arg(long, env = "IRONHUB_PRIVATE_ENDPOINTS", value_delimiter = ',')]
    pub private_endpoints: Vec<String>,
}

/// The same settings in the `--config` file's `[network]` table, with the rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetPolicyFile {
    min_tls_version: Option<String>,
    tls_cipher_suites: Option<Vec<String>>,
    device_hostname: Option<String>,
    service_hostname: Option<String>,
    private_endpoints: Option<Vec<String>>,
    /// The hub's network rules, ARM's property names.
    hub: Option<NetworkRules>,
    /// The DPS instance's network rules, ARM's property names.
    dps: Option<NetworkRules>,
}

/// The network and TLS policy the server runs with.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    pub tls: TlsPolicy,
    /// The device and service endpoint names, for the server certificate.
    pub endpoint_hostnames: Vec<String>,
    /// The listeners that are private endpoints.
    pub private_endpoints: Vec<String>,
    /// Rules from the config file, applied at start.
    pub hub_rules: Option<NetworkRules>,
    pub dps_rules: Option<NetworkRules>,
}

impl NetPolicyArgs {
    /// Merges the flags over the config file's `[network]` table; checks the TLS policy
    /// and the listener names.
    pub fn resolve(self, file: NetPolicyFile) -> anyhow::Result<NetPolicy> {
        let min_version = match (self.min_tls_version, file.min_tls_version) {
            (Some(v), _) => v,
            (None, Some(text)) => text
                .parse()
                .map_err(|e: String| anyhow::anyhow!("min_tls_version: {e}"))?,
            (None, None) => MinTlsVersion::default(),
        };
        let cipher_suites = if self.tls_cipher_suites.is_empty() {
            file.tls_cipher_suites.unwrap_or_default()
        } else {
            self.tls_cipher_suites
        };
        let tls = TlsPolicy {
            min_version,
            cipher_suites: cipher_suites
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        };
        // A suite name that does not exist fails the start, not the first handshake.
        ironhub_tls::check_policy(&tls).context("tls_cipher_suites")?;
        let private_endpoints = if self.private_endpoints.is_empty() {
            file.private_endpoints.unwrap_or_default()
        } else {
            self.private_endpoints
        };
        let private_endpoints: Vec<String> = private_endpoints
            .into_iter()
            .map(|l| l.trim().to_ascii_lowercase())
            .filter(|l| !l.is_empty())
            .collect();
        if let Some(bad) = private_endpoints
            .iter()
            .find(|l| !LISTENERS.contains(&l.as_str()))
        {
            anyhow::bail!(
                "private_endpoints: no listener is called {bad:?}; use {}",
                LISTENERS.join(", ")
            );
        }
        let endpoint_hostnames = [
            self.device_hostname.or(file.device_hostname),
            self.service_hostname.or(file.service_hostname),
        ]
        .into_iter()
        .flatten()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
        Ok(NetPolicy {
            tls,
            endpoint_hostnames,
            private_endpoints,
            hub_rules: file.hub,
            dps_rules: file.dps,
        })
    }
}

impl NetPolicy {
    /// Whether the listener called `name` is a private endpoint.
    pub fn is_private(&self, name: &str) -> bool {
        self.private_endpoints.iter().any(|l| l == name)
    }

    /// Writes the config file's rules over the stored ones (a bad rule fails the start).
    pub async fn apply_rules(&self, hub: &Hub) -> anyhow::Result<()> {
        for (scope, rules) in [
            (NetworkScope::Hub, &self.hub_rules),
            (NetworkScope::Dps, &self.dps_rules),
        ] {
            if let Some(rules) = rules {
                hub.set_network_rules(scope, rules.clone(), Some("*"))
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "the config file's [network.{}] is not valid: {e}",
                            scope.as_str()
                        )
                    })?;
                tracing::info!(
                    scope = scope.as_str(),
                    "network rules applied from the config file"
                );
            }
        }
        Ok(())
    }
}

/// The accept-time question of a listener serving `endpoints`: may this peer reach any?
pub fn gate(
    hub: Hub,
    endpoints: &'static [NetworkEndpoint],
) -> impl Fn(SocketAddr, bool) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>>
+ Send
+ Sync
+ 'static {
    move |peer, private_endpoint| {
        let hub = hub.clone();
        Box::pin(async move {
            let peer = Peer {
                ip: peer.ip(),
                private_endpoint,
            };
            hub.network_admits_any(&peer, endpoints).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_bad_values_fail() {
        let file: NetPolicyFile = toml::from_str(
            r#"
            min_tls_version = "1.3"
            tls_cipher_suites = ["TLS_AES_256_GCM_SHA384"]
            device_hostname = "hub.device.example"
            private_endpoints = ["amqp"]
            [hub]
            publicNetworkAccess = "Disabled"
            [[hub.ipFilterRules]]
            filterName = "one"
            action = "Reject"
            ipMask = "10.0.0.0/8"
            "#,
        )
        .unwrap();
        let policy = NetPolicyArgs::default().resolve(file.clone()).unwrap();
        assert_eq!(policy.tls.min_version, MinTlsVersion::Tls13);
        assert_eq!(policy.endpoint_hostnames, ["hub.device.example"]);
        assert!(policy.is_private("amqp") && !policy.is_private("mqtt"));
        assert_eq!(policy.hub_rules.unwrap().ip_filter_rules.len(), 1);
        let flags = NetPolicyArgs {
            min_tls_version: Some(MinTlsVersion::Tls12),
            ..NetPolicyArgs::default()
        };
        assert_eq!(
            flags.resolve(file).unwrap().tls.min_version,
            MinTlsVersion::Tls12
        );
        let bad = NetPolicyArgs {
            tls_cipher_suites: vec!["TLS_NOPE".into()],
            ..NetPolicyArgs::default()
        };
        assert!(bad.resolve(NetPolicyFile::default()).is_err());
        let bad = NetPolicyArgs {
            private_endpoints: vec!["ftp".into()],
            ..NetPolicyArgs::default()
        };
        assert!(bad.resolve(NetPolicyFile::default()).is_err());
    }
}

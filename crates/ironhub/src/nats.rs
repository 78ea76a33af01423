//! NATS wiring: the `serve` settings that put the event log and the device bus on NATS
//! JetStream (`--nats`), and opening them. `serve.rs` chooses the store apart.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use ironhub_nats::{Names, NatsBus, NatsEventLog, NatsEventStreams, NatsOptions};
use ironhub_store::{DeviceBus, EventLog, EventStreams, Retention};
use serde::Deserialize;

/// The hub's telemetry stream among its event streams on NATS.
const TELEMETRY_STREAM: &str = "events";

/// `ironhub serve`'s NATS flags (each also an `IRONHUB_*` variable and a key of the config
/// file's `[nats]` table).
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "NATS")]
pub struct NatsArgs {
    /// Put the event log and the device bus on NATS JetStream at this URL
    /// (`nats://[user:password@]host:4222`, `tls://…`; several separated by commas), so that
    /// several nodes serve one hub.
    #[arg(long = "nats", env = "IRONHUB_NATS", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// A NATS credentials file (`.creds`: JWT and NKey seed).
    #[arg(long, env = "IRONHUB_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for the NATS server's TLS certificate; turns TLS on.
    #[arg(long, env = "IRONHUB_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for NATS servers that verify clients.
    #[arg(long, env = "IRONHUB_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --nats-tls-cert.
    #[arg(long, env = "IRONHUB_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
    /// How many copies JetStream keeps of the streams and buckets ironhub creates: 1 for one
    /// nats-server (the default), 3 for a JetStream cluster of 3.
    #[arg(long, env = "IRONHUB_NATS_REPLICAS", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_replicas: Option<u8>,
}

/// The same settings in the `--config` file's `[nats]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsFile {
    pub url: Option<String>,
    pub creds: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub replicas: Option<u8>,
}

impl NatsArgs {
    /// Flags and environment over the file's `[nats]` table; `None` without a URL (the
    /// embedded log and in-process bus).
    pub fn resolve(self, file: NatsFile) -> anyhow::Result<Option<NatsOptions>> {
        let Some(url) = self.nats_url.or(file.url).filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let tls_client = match (
            self.nats_tls_cert.or(file.tls_cert),
            self.nats_tls_key.or(file.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => anyhow::bail!("the NATS tls_cert and tls_key go together: give both or neither"),
        };
        let replicas = self.nats_replicas.or(file.replicas).unwrap_or(1);
        anyhow::ensure!(
            (1..=5).contains(&replicas),
            "NATS replicas {replicas}: JetStream keeps 1 to 5 copies"
        );
        Ok(Some(NatsOptions {
            url,
            creds_file: self.nats_creds.or(file.creds),
            tls_ca: self.nats_tls_ca.or(file.tls_ca),
            tls_client,
            name: None,
            replicas: usize::from(replicas),
        }))
    }
}

/// The event log and the device bus on NATS for node `node_id` of the hub named by
/// `hostnames`; `partitions` and `retention` apply to a log that is new.
pub async fn open_log_and_bus(
    options: &NatsOptions,
    hostnames: &[String],
    node_id: &str,
    partitions: u32,
    retention: Retention,
) -> anyhow::Result<(Arc<dyn EventLog>, Arc<dyn DeviceBus>, Arc<dyn EventStreams>)> {
    let options = NatsOptions {
        name: Some(format!("ironhub {node_id}")),
        ..options.clone()
    };
    let (client, names, log, streams) =
        open_log(&options, hostnames, partitions, retention).await?;
    let bus = NatsBus::start(client, &names, node_id).await?;
    tracing::info!(url = %ironhub_nats::redacted(&options.url), "event log and device bus on NATS JetStream");
    Ok((Arc::new(log), Arc::new(bus), Arc::new(streams)))
}

/// The event log and the named event streams on NATS of the hub named by `hostnames`, with
/// the client and names they use; `partitions` and `retention` apply to a log that is new.
pub(crate) async fn open_log(
    options: &NatsOptions,
    hostnames: &[String],
    partitions: u32,
    retention: Retention,
) -> anyhow::Result<(
    ironhub_nats::NatsClient,
    Names,
    NatsEventLog,
    NatsEventStreams,
)> {
    let client = ironhub_nats::connect(options).await?;
    let names = hub_names(hostnames).with_replicas(options.replicas);
    let log = NatsEventLog::open(
        client.clone(),
        &names,
        TELEMETRY_STREAM,
        partitions,
        retention,
    )
    .await?;
    let streams = NatsEventStreams::new(client.clone(), &names, retention);
    Ok((client, names, log, streams))
}

/// A hub's NATS names come from its host name's first label (`myhub` of
/// `myhub.azure-devices.net`), which all its nodes share.
fn hub_names(hostnames: &[String]) -> Names {
    let host = hostnames.first().map_or("localhost", String::as_str);
    Names::new(host.split('.').next().unwrap_or(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_settings_come_from_flags_over_the_file() {
        assert_eq!(
            NatsArgs::default().resolve(NatsFile::default()).unwrap(),
            None
        );
        let file = NatsFile {
            url: Some("nats://file:4222".into()),
            creds: Some("a.creds".into()),
            ..Default::default()
        };
        let args = NatsArgs {
            nats_url: Some("nats://flag:4222".into()),
            ..Default::default()
        };
        let options = args.resolve(file).unwrap().unwrap();
        assert_eq!(options.url, "nats://flag:4222");
        assert_eq!(options.creds_file, Some("a.creds".into()));
        let half = NatsFile {
            url: Some("nats://x".into()),
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(NatsArgs::default().resolve(half).is_err());
        assert_eq!(options.replicas, 1);
        let three = NatsArgs {
            nats_url: Some("nats://a:4222,nats://b:4222".into()),
            nats_replicas: Some(3),
            ..Default::default()
        };
        assert_eq!(
            three
                .resolve(NatsFile::default())
                .unwrap()
                .unwrap()
                .replicas,
            3
        );
        let too_many = NatsFile {
            url: Some("nats://x".into()),
            replicas: Some(7),
            ..Default::default()
        };
        assert!(NatsArgs::default().resolve(too_many).is_err());
    }

    #[test]
    fn hub_names_come_from_the_host_name() {
        assert_eq!(
            hub_names(&["myhub.example.com".into()]),
            Names::new("myhub")
        );
    }
}

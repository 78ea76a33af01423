//! `ironhub simulate`: a fleet of simulated devices against a hub (or, with `--mqtt-broker`,
//! any MQTT broker), like `az iot device simulate` at fleet scale. The flags are parsed and
//! checked here; the simulation is `ironhub_simulate`'s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use ironhub_simulate::{Config, Dialer, Dps, Fleet, MQTT_PORT, Progress, Stats};

use crate::cli::login::{CommonArgs, DEFAULT_DATA_DIR, Session};
use crate::cli::output::{self, Format};

/// `--output` of `simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ReportFormat {
    /// A few lines for a person.
    #[default]
    Text,
    /// The report as JSON.
    Json,
}

/// `--qos`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Qos {
    #[value(name = "0")]
    AtMostOnce,
    #[value(name = "1")]
    AtLeastOnce,
}

/// `ironhub simulate`
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// The hub's name: its host name or the first label of it. Only checked against the login.
    #[arg(long = "hub-name", short = 'n')]
    pub hub_name: Option<String>,
    /// A service connection string with RegistryRead (RegistryWrite for --create) and
    /// ServiceConnect (to read the event stream back).
    #[arg(
        long = "login",
        short = 'l',
        env = "IRONHUB_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub login: Option<String>,
    /// On the server's machine: log in from its data directory [default: ./ironhub-data when
    /// no --login is given].
    #[arg(long = "data-dir", env = "IRONHUB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A PEM file of extra CA certificates to trust (an ironhub server's is DATA_DIR/tls/ca.pem).
    #[arg(long = "ca-file", visible_alias = "cafile")]
    pub ca_file: Option<PathBuf>,
    /// Simulated devices, each with its own connection.
    #[arg(long = "device-count", visible_alias = "dc", default_value_t = 10)]
    pub device_count: usize,
    /// Device ids (or DPS registration ids) are this prefix and the device's number.
    #[arg(long = "device-prefix", default_value = "sim-")]
    pub device_prefix: String,
    /// Create the devices (SAS, generated keys) through the registry API first; without it they
    /// must exist.
    #[arg(long = "create", conflicts_with_all = ["dps_scope", "mqtt_broker"])]
    pub create: bool,
    /// Provision the devices through DPS first: the ID scope.
    #[arg(long = "dps-scope", requires_all = ["dps_endpoint", "group_key"], conflicts_with = "mqtt_broker")]
    pub dps_scope: Option<String>,
    /// The DPS endpoint's host name, `host` or `host:port` [default port: 8883].
    #[arg(long = "dps-endpoint", requires = "dps_scope")]
    pub dps_endpoint: Option<String>,
    /// The symmetric key of the enrollment group the devices provision with (each device's key
    /// is derived from it and its registration id).
    #[arg(long = "group-key", requires = "dps_scope", hide_env_values = true)]
    pub group_key: Option<String>,
    /// New connections per second over the fleet; 0: as fast as possible (100 at once).
    #[arg(long = "connect-rate", default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Seconds between two messages of one device.
    #[arg(
        long = "msg-interval",
        visible_alias = "mi",
        default_value_t = 3.0,
        conflicts_with = "msg_rate"
    )]
    pub msg_interval: f64,
    /// Messages per second over the whole fleet (instead of --msg-interval).
    #[arg(long = "msg-rate")]
    pub msg_rate: Option<f64>,
    /// Bytes of each message's body (JSON).
    #[arg(long = "msg-size", default_value_t = 256)]
    pub msg_size: usize,
    /// Telemetry's MQTT QoS.
    #[arg(long = "qos", value_enum, default_value = "1")]
    pub qos: Qos,
    /// QoS 1 messages a device may have unacknowledged.
    #[arg(long = "max-inflight", default_value_t = 20)]
    pub max_inflight: usize,
    /// Seconds between two reported-property updates of one device [default: none].
    #[arg(long = "twin-interval")]
    pub twin_interval: Option<f64>,
    /// Seconds to send for [default: until --msg-count].
    #[arg(long = "duration")]
    pub duration: Option<f64>,
    /// Messages each device sends [default: 100 without --duration].
    #[arg(long = "msg-count", visible_alias = "mc")]
    pub msg_count: Option<u64>,
    /// Local source addresses, a CIDR range (`127.0.1.0/24`) or one address, used in turn so
    /// more than ~64k connections can reach one port.
    #[arg(long = "source-addresses")]
    pub source_addresses: Option<String>,
    /// Plain MQTT to this broker (`host:port`) instead of a hub: no IoT Hub login or topics
    /// subscribed, the same publish load, for comparison with other brokers.
    #[arg(long = "mqtt-broker")]
    pub mqtt_broker: Option<String>,
    /// With --mqtt-broker: connect over TLS (trusting --ca-file and the system's roots).
    #[arg(long = "mqtt-tls", requires = "mqtt_broker")]
    pub mqtt_tls: bool,
    /// No live progress on standard error.
    #[arg(long = "no-progress")]
    pub no_progress: bool,
    /// The final report's format.
    #[arg(long = "output", short = 'o', value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
}

/// `host:port` (or `host`, with `default_port`) → (host, an address it resolves to).
async fn resolve(text: &str, default_port: u16) -> anyhow::Result<(String, SocketAddr)> {
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
            h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            p.parse::<u16>()
                .with_context(|| format!("{text}: the port is not a number"))?,
        ),
        _ => (text.to_owned(), default_port),
    };
    let address = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} resolves to no address"))?;
    Ok((host, address))
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0) {
        bail!("{name} must be a positive number of seconds");
    }
    Duration::try_from_secs_f64(value).with_context(|| format!("{name} is out of range"))
}

impl SimulateArgs {
    /// The engine's configuration.
    fn config(&self) -> anyhow::Result<Config> {
        if self.device_count == 0 {
            bail!("--device-count must be at least 1");
        }
        let msg_interval = match self.msg_rate {
            Some(rate) => {
                if !(rate.is_finite() && rate > 0.0) {
                    bail!("--msg-rate must be a positive number of messages per second");
                }
                seconds("--msg-rate", self.device_count as f64 / rate)?
            }
            None => seconds("--msg-interval", self.msg_interval)?,
        };
        if !(self.connect_rate.is_finite() && self.connect_rate >= 0.0) {
            bail!("--connect-rate must be 0 or a positive number");
        }
        let duration = self
            .duration
            .map(|d| seconds("--duration", d))
            .transpose()?;
        let twin_interval = self
            .twin_interval
            .map(|t| seconds("--twin-interval", t))
            .transpose()?;
        let msg_count = match (self.msg_count, duration) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(100),
        };
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        Ok(Config {
            run_id: format!("sim{micros:x}"),
            device_count: self.device_count,
            device_prefix: self.device_prefix.clone(),
            connect_rate: self.connect_rate,
            msg_interval,
            msg_size: self.msg_size,
            qos1: self.qos == Qos::AtLeastOnce,
            max_inflight: self.max_inflight.max(1),
            twin_interval,
            msg_count,
            duration,
            plain_mqtt: self.mqtt_broker.is_some(),
            deadline: None,
        })
    }

    /// The hub login: required unless the devices are plain MQTT clients or provision
    /// through DPS (then without a login, given or from ./ironhub-data, the event stream is not
    /// read back and only --ca-file and the system's roots are trusted).
    async fn session(&self) -> anyhow::Result<Option<Session>> {
        if self.mqtt_broker.is_some() {
            return Ok(None);
        }
        if self.dps_scope.is_some()
            && self.login.is_none()
            && self.data_dir.is_none()
            && !std::path::Path::new(DEFAULT_DATA_DIR).is_dir()
        {
            return Ok(None);
        }
        let common = CommonArgs {
            hub_name: self.hub_name.clone(),
            login: self.login.clone(),
            data_dir: self.data_dir.clone(),
            cafile: self.ca_file.clone(),
            auth_type: super::login::AuthType::Key,
            output: Format::Json,
        };
        Ok(Some(Session::open(&common).await?))
    }
}

/// `ironhub simulate`: runs the fleet and prints the report.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let session = args.session().await?;
    let mut ca_files: Vec<PathBuf> = args.ca_file.iter().cloned().collect();
    if let Some(s) = &session {
        ca_files.extend(s.ca_files.iter().cloned());
    }
    let sources = match &args.source_addresses {
        Some(text) => ironhub_simulate::parse_sources(text)?,
        None => Vec::new(),
    };
    let stats = Arc::new(Stats::default());
    let client = session.as_ref().map(Session::client).transpose()?;
    let tls = ironhub_simulate::tls_config(&ca_files)?;
    let (fleet, dialer) = if let Some(broker) = &args.mqtt_broker {
        let (host, address) = resolve(broker, 1883).await?;
        let tls = args.mqtt_tls.then(|| (tls.clone(), host.as_str()));
        (Fleet::Mqtt { address }, Dialer::new(tls, sources)?)
    } else if let (Some(scope), Some(endpoint), Some(group_key)) =
        (&args.dps_scope, &args.dps_endpoint, &args.group_key)
    {
        let (host, address) = resolve(endpoint, MQTT_PORT).await?;
        let dialer = Dialer::new(Some((tls.clone(), host.as_str())), sources)?;
        let dps = Dps {
            host,
            address,
            id_scope: scope.clone(),
            group_key: group_key.clone(),
        };
        (Fleet::Dps(dps), dialer)
    } else {
        let session = session
            .as_ref()
            .context("a hub login is needed (--login or --data-dir)")?;
        let client = client.as_ref().context("a hub login is needed")?;
        let keys = ironhub_simulate::prepare_devices(client, &config, args.create, &stats)
            .await
            .context(if args.create {
                "cannot create the devices"
            } else {
                "cannot read the devices (pass --create to create them)"
            })?;
        let host = ironhub_client::host_without_port(session.host()).to_owned();
        let (_, address) = resolve(&host, MQTT_PORT).await?;
        let dialer = Dialer::new(Some((tls.clone(), host.as_str())), sources)?;
        (
            Fleet::Hub {
                host,
                address,
                keys,
            },
            dialer,
        )
    };
    let progress = if args.no_progress {
        Progress::Off
    } else {
        Progress::Auto
    };
    let report = ironhub_simulate::run(config, fleet, dialer, client, progress, stats).await?;
    match args.output {
        ReportFormat::Json => output::print(&serde_json::to_value(&report)?, Format::Json)?,
        ReportFormat::Text => emit(&report.to_text())?,
    }
    if report.devices.connected == 0 {
        let kinds: Vec<String> = report
            .errors
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        bail!("no device connected (errors: {})", kinds.join(", "));
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn emit(text: &str) -> anyhow::Result<()> {
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(args: &[&str]) -> SimulateArgs {
        let mut all = vec!["simulate"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().args
    }

    #[test]
    fn rates_counts_and_durations() {
        let c = parse(&["--device-count", "50", "--msg-rate", "100"])
            .config()
            .unwrap();
        assert_eq!(c.msg_interval, Duration::from_millis(500));
        assert_eq!(
            c.msg_count,
            Some(100),
            "az's default count without a duration"
        );
        let c = parse(&["--duration", "5", "--qos", "0"]).config().unwrap();
        assert_eq!(c.msg_count, None);
        assert!(!c.qos1);
        assert!(parse(&["--msg-interval", "0"]).config().is_err());
        assert!(parse(&["--device-count", "0"]).config().is_err());
        assert!(Cli::try_parse_from(["simulate", "--create", "--mqtt-broker", "h:1"]).is_err());
        assert!(Cli::try_parse_from(["simulate", "--dps-scope", "s"]).is_err());
    }

    #[tokio::test]
    async fn broker_addresses_take_a_default_port() {
        let (host, a) = resolve("127.0.0.1", 1883).await.unwrap();
        assert_eq!((host.as_str(), a.port()), ("127.0.0.1", 1883));
        let (_, a) = resolve("127.0.0.1:9999", 1883).await.unwrap();
        assert_eq!(a.port(), 9999);
        assert!(resolve("127.0.0.1:x", 1883).await.is_err());
    }
}

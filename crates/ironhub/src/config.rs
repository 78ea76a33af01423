//! Server settings: flags, then `IRONHUB_*` environment variables, then the TOML file, then
//! defaults that work for a newcomer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use ironhub_http::ReadTimeouts;
use ironhub_hub::file_upload::FileUploadSettings;
use ironhub_store::Retention;
use ironhub_tls::ConnectionLimits;
use ironhub_wire::hub::RoutingConfig;
use serde::Deserialize;

use crate::file_upload::{FileUploadArgs, FileUploadFile};
use crate::frame_limits::{FrameLimitArgs, FrameLimitsFile};
use crate::monitoring::{Monitoring, MonitoringArgs, MonitoringFile};
use crate::nats::{NatsArgs, NatsFile};
use crate::netpolicy::{NetPolicy, NetPolicyArgs, NetPolicyFile};
use crate::service_auth::{AuthArgs, AuthFile, AuthSettings};

/// Longest event log retention accepted: a year.
const MAX_RETENTION_HOURS: u32 = 24 * 366;
/// Largest event log partition accepted: 1 TiB.
const MAX_RETENTION_MB: u64 = 1024 * 1024;
/// Longest TLS handshake, header read or body read timeout accepted: five minutes.
const MAX_TIMEOUT_SECONDS: u32 = 300;

/// How long a stop waits for connections to drain by default.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn chrono_hours(hours: u32) -> chrono::Duration {
    chrono::Duration::hours(i64::from(hours))
}

/// `ironhub serve` flags. Each has an `IRONHUB_*` variable and a key in the `--config` file.
#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// A TOML file with the same settings (keys: data_dir, hostname, https_listen, mqtt_listen,
    /// amqp_listen, amqp_plain_listen, amqp_plain_any_address,
    /// max_connections, max_connections_per_address, tls_handshake_timeout_seconds,
    /// http_header_read_timeout_seconds, http_body_read_timeout_seconds, health_listen,
    /// drain_timeout_seconds,
    /// tls_cert, tls_key, partitions, retention_hours, retention_mb_per_partition, log_format,
    /// trust_ca, dps_registrations_per_minute, dps_polls_per_device, node_id, issuing_ca_cert,
    /// issuing_ca_key, issued_certificate_days, issued_certificate_renewal,
    /// allow_small_file_batches, store, `[[issuing_cas]]`
    /// tables (more named issuing CAs: name, cert, key, validity_days, renewal) and a
    /// `[routing]` table (IoT Hub's routing document, replacing the stored one at start) and a
    /// `[file_upload]` table with connection_string, container, sas_ttl_hours, notifications,
    /// notification_ttl_hours, max_delivery_count, and a `[nats]` table with url, creds,
    /// tls_ca, tls_cert, tls_key, replicas, a `[throttling]` table of rates, a `[monitoring]` table with
    /// metrics_listen, diagnostic_logs, diagnostic_logs_file, diagnostic_logs_max_mb,
    /// diagnostic_logs_keep, a `[frame_limits]` table with mqtt_packet_bytes,
    /// websocket_message_bytes, amqp_message_bytes, an `[auth]` table, and a `[network]` table with min_tls_version,
    /// tls_cipher_suites, device_hostname, service_hostname, private_endpoints and the
    /// `[network.hub]`/`[network.dps]` rules).
    #[arg(long, env = "IRONHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where everything the server keeps lives [default: ./ironhub-data].
    #[arg(long, env = "IRONHUB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A name the server answers to (repeatable; the first is the hub's host name)
    /// [default: localhost].
    #[arg(long = "hostname", env = "IRONHUB_HOSTNAME", value_delimiter = ',')]
    pub hostnames: Vec<String>,
    /// HTTPS (REST APIs and MQTT over WebSocket) address [default: 0.0.0.0:443].
    #[arg(long, env = "IRONHUB_HTTPS_LISTEN")]
    pub https_listen: Option<SocketAddr>,
    /// MQTT over TLS address [default: 0.0.0.0:8883].
    #[arg(long, env = "IRONHUB_MQTT_LISTEN")]
    pub mqtt_listen: Option<SocketAddr>,
    /// AMQP over TLS address (service clients, Event Hubs readers) [default: the HTTPS
    /// address's IP with port 5671 (0.0.0.0:5671), or port 0 when HTTPS's port is 0].
    #[arg(long, env = "IRONHUB_AMQP_LISTEN")]
    pub amqp_listen: Option<SocketAddr>,
    /// Plain AMQP (no TLS) address, for Event Hubs clients' development emulator mode
    /// (`UseDevelopmentEmulator=true`, port 5672); development only, a loopback address
    /// unless --amqp-plain-any-address [default: none].
    #[arg(long, env = "IRONHUB_AMQP_PLAIN_LISTEN")]
    pub amqp_plain_listen: Option<SocketAddr>,
    /// Lets --amqp-plain-listen bind a non-loopback address (tokens then cross the network
    /// in the clear).
    #[arg(long, env = "IRONHUB_AMQP_PLAIN_ANY_ADDRESS")]
    pub amqp_plain_any_address: bool,
    /// Open connections the server accepts over both ports; one more is closed at once
    /// [default: 100000].
    #[arg(long, env = "IRONHUB_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Open connections one source IP address may hold over both ports; one more is closed at
    /// once [default: 10000].
    #[arg(long, env = "IRONHUB_MAX_CONNECTIONS_PER_ADDRESS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: Option<u32>,
    /// Seconds a client may take to complete the TLS handshake before it is disconnected
    /// [default: 10].
    #[arg(long, env = "IRONHUB_TLS_HANDSHAKE_TIMEOUT_SECONDS", value_parser = clap::value_parser!(u32).range(1..=MAX_TIMEOUT_SECONDS as i64))]
    pub tls_handshake_timeout_seconds: Option<u32>,
    /// Seconds an HTTPS client may take to send a request's line and headers (an idle
    /// kept-alive connection counts too) before it is disconnected [default: 30].
    #[arg(long, env = "IRONHUB_HTTP_HEADER_READ_TIMEOUT_SECONDS", value_parser = clap::value_parser!(u32).range(1..=MAX_TIMEOUT_SECONDS as i64))]
    pub http_header_read_timeout_seconds: Option<u32>,
    /// Seconds an HTTPS client may take to send a request's body before it is answered 408
    /// and disconnected [default: 30].
    #[arg(long, env = "IRONHUB_HTTP_BODY_READ_TIMEOUT_SECONDS", value_parser = clap::value_parser!(u32).range(1..=MAX_TIMEOUT_SECONDS as i64))]
    pub http_body_read_timeout_seconds: Option<u32>,
    /// A plain-HTTP address answering only `/health/live` and `/health/ready`, for load
    /// balancers that do not speak TLS [default: none; HTTPS answers them always].
    #[arg(long, env = "IRONHUB_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// How long a stop (SIGTERM, SIGINT) waits for device connections to close after their
    /// acknowledgements and for open HTTP requests, 1 to 300 [default: 10].
    #[arg(long, env = "IRONHUB_DRAIN_TIMEOUT_SECONDS", value_parser = clap::value_parser!(u32).range(1..=MAX_TIMEOUT_SECONDS as i64))]
    pub drain_timeout_seconds: Option<u32>,
    /// Your own server certificate chain (PEM) instead of the generated one.
    #[arg(long, env = "IRONHUB_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "IRONHUB_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Event log partitions, fixed when the data directory is created [default: 4].
    #[arg(long, env = "IRONHUB_PARTITIONS", value_parser = clap::value_parser!(u32).range(1..=32))]
    pub partitions: Option<u32>,
    /// How long telemetry stays readable in the event log, in hours [default: 24].
    #[arg(long, env = "IRONHUB_RETENTION_HOURS", value_parser = clap::value_parser!(u32).range(1..=MAX_RETENTION_HOURS as i64))]
    pub retention_hours: Option<u32>,
    /// Most telemetry (message bodies) kept per event log partition, in MiB; the oldest goes
    /// first [default: 256].
    #[arg(long, env = "IRONHUB_RETENTION_MB_PER_PARTITION", value_parser = clap::value_parser!(u64).range(1..=MAX_RETENTION_MB))]
    pub retention_mb_per_partition: Option<u64>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "IRONHUB_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// A CA certificate (PEM) to trust when the server calls out: hubs linked to its DPS by
    /// connection string, custom allocation webhooks (repeatable; besides the system's roots).
    #[arg(long = "trust-ca", env = "IRONHUB_TRUST_CA", value_delimiter = ',')]
    pub trust_ca: Vec<PathBuf>,
    /// Device registrations the DPS accepts per minute, 0 for no limit (Azure's default is
    /// 200) [default: 0].
    #[arg(long, env = "IRONHUB_DPS_REGISTRATIONS_PER_MINUTE")]
    pub dps_registrations_per_minute: Option<u32>,
    /// Registration status polls a device may make in 10 seconds, 0 for no limit (DPS allows
    /// 5) [default: 5].
    #[arg(long, env = "IRONHUB_DPS_POLLS_PER_DEVICE")]
    pub dps_polls_per_device: Option<u32>,
    /// This server's name among the nodes sharing one store: it owns the connections, message
    /// locks and registrations it records, and releases only its own when it restarts. Letters,
    /// digits, `.`, `_` and `-`, at most 64 [default: local].
    #[arg(long, env = "IRONHUB_NODE_ID")]
    pub node_id: Option<String>,
    /// Your own CA certificate (PEM) to sign devices' CSRs with, instead of the generated
    /// ECC P-384 issuing CA.
    #[arg(long, env = "IRONHUB_ISSUING_CA_CERT", requires = "issuing_ca_key")]
    pub issuing_ca_cert: Option<PathBuf>,
    /// The private key (PEM, PKCS#8) of --issuing-ca-cert.
    #[arg(long, env = "IRONHUB_ISSUING_CA_KEY", requires = "issuing_ca_cert")]
    pub issuing_ca_key: Option<PathBuf>,
    /// How long certificates issued from devices' CSRs are valid, in days [default: 30].
    #[arg(long, env = "IRONHUB_ISSUED_CERTIFICATE_DAYS", value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub issued_certificate_days: Option<u32>,
    /// Whether devices may renew the default CA's certificates over `$iothub/credentials`
    /// [default: true].
    #[arg(long, env = "IRONHUB_ISSUED_CERTIFICATE_RENEWAL", value_parser = clap::builder::BoolishValueParser::new())]
    pub issued_certificate_renewal: Option<bool>,
    /// Let file endpoints close chunks from 1 second and 1 byte on (IoT Hub refuses a
    /// `batchFrequencyInSeconds` under 60 and a `maxChunkSizeInBytes` under 10 MiB), for tests
    /// and demonstrations [default: false].
    #[arg(long, env = "IRONHUB_ALLOW_SMALL_FILE_BATCHES", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub allow_small_file_batches: Option<bool>,
    #[command(flatten)]
    pub file_upload: FileUploadArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Keep the hub's state in PostgreSQL instead of the data directory, so that several nodes
    /// serve one hub (with --nats): `postgres://user:password@host:5432/db`, with
    /// `?sslmode=require&sslrootcert=ca.pem` for TLS, or `?host=/socket/dir`.
    #[arg(long = "store", env = "IRONHUB_STORE", hide_env_values = true)]
    pub store: Option<String>,
    #[command(flatten)]
    pub monitoring: Box<MonitoringArgs>,
    #[command(flatten)]
    pub frame_limits: FrameLimitArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Boxed: the network and TLS flags would make every CLI command as large as `serve`.
    #[command(flatten)]
    pub network: Box<NetPolicyArgs>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where AMQP listens when not told: beside HTTPS on port 5671, so that servers on different
/// loopback addresses (or on ephemeral ports) do not compete for one wildcard port.
fn default_amqp_listen(https: SocketAddr) -> SocketAddr {
    let port = if https.port() == 0 { 0 } else { 5671 };
    SocketAddr::new(https.ip(), port)
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    hostname: Option<OneOrMany>,
    https_listen: Option<SocketAddr>,
    mqtt_listen: Option<SocketAddr>,
    amqp_listen: Option<SocketAddr>,
    amqp_plain_listen: Option<SocketAddr>,
    amqp_plain_any_address: Option<bool>,
    max_connections: Option<u32>,
    max_connections_per_address: Option<u32>,
    tls_handshake_timeout_seconds: Option<u32>,
    http_header_read_timeout_seconds: Option<u32>,
    http_body_read_timeout_seconds: Option<u32>,
    health_listen: Option<SocketAddr>,
    drain_timeout_seconds: Option<u32>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    partitions: Option<u32>,
    retention_hours: Option<u32>,
    retention_mb_per_partition: Option<u64>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    trust_ca: Option<OneOrMany>,
    dps_registrations_per_minute: Option<u32>,
    dps_polls_per_device: Option<u32>,
    node_id: Option<String>,
    issuing_ca_cert: Option<PathBuf>,
    issuing_ca_key: Option<PathBuf>,
    issued_certificate_days: Option<u32>,
    issued_certificate_renewal: Option<bool>,
    allow_small_file_batches: Option<bool>,
    #[serde(default)]
    issuing_cas: Vec<IssuingCaConfig>,
    file_upload: Option<FileUploadFile>,
    /// Message routing: IoT Hub's `properties.routing` document (see the README).
    routing: Option<RoutingConfig>,
    #[serde(default)]
    nats: Option<NatsFile>,
    /// Where the state lives: a `postgres://` URL (see `--store`).
    store: Option<String>,
    /// Throttling rates (`docs/operators.md`, "Throttling"); none when left out.
    throttling: Option<ironhub_hub::throttle::ThrottleSettings>,
    #[serde(default)]
    monitoring: Option<MonitoringFile>,
    frame_limits: Option<FrameLimitsFile>,
    /// Service API access: `disable_local_auth` and `[auth.oidc]` (see the README).
    #[serde(default)]
    auth: Option<AuthFile>,
    /// Network rules and TLS policy (see `netpolicy`).
    #[serde(default)]
    network: Option<NetPolicyFile>,
}

/// One more named issuing CA (a `[[issuing_cas]]` table of the config file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuingCaConfig {
    /// What enrollments call it (`clientCertificateIssuancePolicy.certificateAuthorityName`).
    pub name: String,
    /// Its certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// How long the certificates it issues are valid, in days (1–3650) [default: 30].
    #[serde(default = "default_validity_days")]
    pub validity_days: u32,
    /// Whether devices may renew its certificates over `$iothub/credentials` [default: true].
    #[serde(default = "yes")]
    pub renewal: bool,
}

fn default_validity_days() -> u32 {
    ironhub_hub::credentials::DEFAULT_VALIDITY_DAYS
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The `--store` URL: `None` (or empty) is the embedded store, a `postgres://` URL the shared
/// PostgreSQL store.
pub fn store_url(url: Option<String>) -> anyhow::Result<Option<ironhub_postgres::PgOptions>> {
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    anyhow::ensure!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "--store takes a postgres:// (or postgresql://) URL"
    );
    Ok(Some(ironhub_postgres::PgOptions::parse(&url)?))
}

/// The settings the server runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub hostnames: Vec<String>,
    pub https_listen: SocketAddr,
    pub mqtt_listen: SocketAddr,
    pub amqp_listen: SocketAddr,
    /// The opt-in plain AMQP address (checked: loopback unless allowed otherwise).
    pub amqp_plain_listen: Option<SocketAddr>,
    /// The caps on open connections and the TLS handshake time, over both ports.
    pub connection_limits: ConnectionLimits,
    /// How long an HTTPS client may take to send a request's head and its body.
    pub read_timeouts: ReadTimeouts,
    /// The plain-HTTP health address, when there is one.
    pub health_listen: Option<SocketAddr>,
    /// How long a stop waits for connections to drain.
    pub drain_timeout: Duration,
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    pub partitions: u32,
    /// What the event log keeps (enforced periodically while serving).
    pub retention: Retention,
    pub log_format: LogFormat,
    /// CA certificates trusted for outgoing calls, besides the system's.
    pub trust_ca: Vec<PathBuf>,
    /// The DPS's limits on the device API.
    pub dps_limits: ironhub_dps::Limits,
    /// This node's id (see `ServeArgs::node_id`).
    pub node_id: String,
    /// The operator's issuing CA (certificate, key), instead of the generated one.
    pub issuing_ca: Option<(PathBuf, PathBuf)>,
    /// How long the default CA's certificates are valid, in days.
    pub issued_certificate_days: u32,
    /// Whether devices may renew the default CA's certificates.
    pub issued_certificate_renewal: bool,
    /// What endpoint settings may be beyond IoT Hub's ranges.
    pub routing_allowances: ironhub_hub::routing::Allowances,
    /// The named issuing CAs besides the default one.
    pub issuing_cas: Vec<IssuingCaConfig>,
    /// The hub's storage account for file upload, when it has one.
    pub file_upload: Option<FileUploadSettings>,
    /// The routing document of the config file's `[routing]` table: applied at every start,
    /// replacing the stored one.
    pub routing: Option<RoutingConfig>,
    /// Where the event log and the device bus live when not embedded (`--nats`).
    pub nats: Option<ironhub_nats::NatsOptions>,
    /// The PostgreSQL database the nodes of a cluster share (`--store`); `None`: the data
    /// directory's embedded store.
    pub store: Option<ironhub_postgres::PgOptions>,
    /// The `[throttling]` table, checked; `None`: nothing is throttled.
    pub throttling: Option<ironhub_hub::throttle::ThrottleSettings>,
    /// Metrics and diagnostic logs.
    pub monitoring: Monitoring,
    /// The largest MQTT packet, WebSocket message and AMQP message a client may send.
    pub frame_limits: ironhub_hub::frame_limits::FrameLimits,
    /// Who may call the service APIs (bearer tokens, `disableLocalAuth`).
    pub auth: AuthSettings,
    /// IP filters, private endpoints and the TLS policy.
    pub network: NetPolicy,
}

impl ServeArgs {
    /// Merges flags and environment (already in `self`) over the config file and defaults.
    pub fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let hostnames = if !self.hostnames.is_empty() {
            self.hostnames
        } else {
            file.hostname.map(OneOrMany::into_vec).unwrap_or_default()
        };
        let trust_ca = if !self.trust_ca.is_empty() {
            self.trust_ca
        } else {
            file.trust_ca
                .map(OneOrMany::into_vec)
                .unwrap_or_default()
                .into_iter()
                .map(PathBuf::from)
                .collect()
        };
        let defaults = ironhub_dps::Limits::default();
        let dps_limits = ironhub_dps::Limits {
            registrations_per_minute: self
                .dps_registrations_per_minute
                .or(file.dps_registrations_per_minute)
                .unwrap_or(defaults.registrations_per_minute),
            polls_per_window: self
                .dps_polls_per_device
                .or(file.dps_polls_per_device)
                .unwrap_or(defaults.polls_per_window),
            ..defaults
        };
        let mut hostnames: Vec<String> = hostnames
            .into_iter()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect();
        if hostnames.is_empty() {
            hostnames.push("localhost".into());
        }
        let node_id = self
            .node_id
            .or(file.node_id)
            .unwrap_or_else(|| ironhub_store::LOCAL_NODE.to_owned());
        let valid = !node_id.is_empty()
            && node_id.len() <= 64
            && node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            anyhow::bail!("node_id {node_id:?}: use 1 to 64 letters, digits, '.', '_' or '-'");
        }
        let tls_cert = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => anyhow::bail!("tls_cert and tls_key go together: give both or neither"),
        };
        let issuing_ca = match (
            self.issuing_ca_cert.or(file.issuing_ca_cert),
            self.issuing_ca_key.or(file.issuing_ca_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => anyhow::bail!(
                "issuing_ca_cert and issuing_ca_key go together: give both or neither"
            ),
        };
        let connection_limits = ConnectionLimits {
            max_connections: positive(
                "max_connections",
                self.max_connections.or(file.max_connections),
                ConnectionLimits::DEFAULT_MAX_CONNECTIONS,
            )?,
            max_connections_per_address: positive(
                "max_connections_per_address",
                self.max_connections_per_address
                    .or(file.max_connections_per_address),
                ConnectionLimits::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            )?,
            handshake_timeout: timeout(
                "tls_handshake_timeout_seconds",
                self.tls_handshake_timeout_seconds
                    .or(file.tls_handshake_timeout_seconds),
                ConnectionLimits::DEFAULT_HANDSHAKE_TIMEOUT,
            )?,
        };
        let read_timeouts = ReadTimeouts {
            header: timeout(
                "http_header_read_timeout_seconds",
                self.http_header_read_timeout_seconds
                    .or(file.http_header_read_timeout_seconds),
                ReadTimeouts::DEFAULT_HEADER,
            )?,
            body: timeout(
                "http_body_read_timeout_seconds",
                self.http_body_read_timeout_seconds
                    .or(file.http_body_read_timeout_seconds),
                ReadTimeouts::DEFAULT_BODY,
            )?,
        };
        let https_listen = self
            .https_listen
            .or(file.https_listen)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 443)));
        Ok(ServeConfig {
            issuing_ca,
            issued_certificate_days: self
                .issued_certificate_days
                .or(file.issued_certificate_days)
                .unwrap_or(ironhub_hub::credentials::DEFAULT_VALIDITY_DAYS)
                .clamp(1, 3650),
            issued_certificate_renewal: self
                .issued_certificate_renewal
                .or(file.issued_certificate_renewal)
                .unwrap_or(true),
            routing_allowances: ironhub_hub::routing::Allowances {
                small_file_batches: self
                    .allow_small_file_batches
                    .or(file.allow_small_file_batches)
                    .unwrap_or(false),
            },
            issuing_cas: checked_issuing_cas(file.issuing_cas)?,
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("ironhub-data")),
            hostnames,
            https_listen,
            mqtt_listen: self
                .mqtt_listen
                .or(file.mqtt_listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8883))),
            amqp_listen: self
                .amqp_listen
                .or(file.amqp_listen)
                .unwrap_or_else(|| default_amqp_listen(https_listen)),
            amqp_plain_listen: crate::amqp_plain::checked_listen(
                self.amqp_plain_listen.or(file.amqp_plain_listen),
                self.amqp_plain_any_address || file.amqp_plain_any_address.unwrap_or(false),
            )?,
            connection_limits,
            read_timeouts,
            health_listen: self.health_listen.or(file.health_listen),
            drain_timeout: timeout(
                "drain_timeout_seconds",
                self.drain_timeout_seconds.or(file.drain_timeout_seconds),
                DEFAULT_DRAIN_TIMEOUT,
            )?,
            tls_cert,
            partitions: self
                .partitions
                .or(file.partitions)
                .unwrap_or(4)
                .clamp(1, 32),
            retention: Retention {
                max_age: chrono_hours(
                    self.retention_hours
                        .or(file.retention_hours)
                        .unwrap_or(24)
                        .clamp(1, MAX_RETENTION_HOURS),
                ),
                max_bytes_per_partition: self
                    .retention_mb_per_partition
                    .or(file.retention_mb_per_partition)
                    .unwrap_or(256)
                    .clamp(1, MAX_RETENTION_MB)
                    * 1024
                    * 1024,
            },
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            trust_ca,
            dps_limits,
            node_id,
            file_upload: self
                .file_upload
                .resolve(file.file_upload.unwrap_or_default())?,
            routing: file.routing,
            nats: self.nats.resolve(file.nats.unwrap_or_default())?,
            store: store_url(self.store.or(file.store))?,
            throttling: file
                .throttling
                .map(|t| t.check().map(|()| t))
                .transpose()
                .map_err(anyhow::Error::msg)?,
            monitoring: self
                .monitoring
                .resolve(file.monitoring.unwrap_or_default())?,
            frame_limits: self
                .frame_limits
                .resolve(file.frame_limits.unwrap_or_default())?,
            auth: self.auth.resolve(file.auth.unwrap_or_default())?,
            network: self.network.resolve(file.network.unwrap_or_default())?,
        })
    }
}

/// The `[[issuing_cas]]` tables, checked: well-formed unique names, validity 1–3650 days.
fn checked_issuing_cas(cas: Vec<IssuingCaConfig>) -> anyhow::Result<Vec<IssuingCaConfig>> {
    use ironhub_hub::issuing_cas::{DEFAULT_CA_NAME, is_ca_name};
    for (i, ca) in cas.iter().enumerate() {
        if !is_ca_name(&ca.name) {
            anyhow::bail!(
                "issuing_cas name {:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                ca.name
            );
        }
        if ca.name == DEFAULT_CA_NAME || cas[..i].iter().any(|c| c.name == ca.name) {
            anyhow::bail!(
                "issuing_cas name {:?} is taken (\"{DEFAULT_CA_NAME}\" is the default CA's)",
                ca.name
            );
        }
        if !(1..=3650).contains(&ca.validity_days) {
            anyhow::bail!("issuing_cas {:?}: validity_days must be 1 to 3650", ca.name);
        }
    }
    Ok(cas)
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid config file", path.display()))
}

/// A cap from the flags or the file (at least 1), or its default.
/// A timeout in seconds, 1 to [`MAX_TIMEOUT_SECONDS`].
fn timeout(key: &str, value: Option<u32>, default: Duration) -> anyhow::Result<Duration> {
    match value {
        None => Ok(default),
        Some(s @ 1..=MAX_TIMEOUT_SECONDS) => Ok(Duration::from_secs(u64::from(s))),
        Some(s) => anyhow::bail!("{key} {s}: use 1 to {MAX_TIMEOUT_SECONDS}"),
    }
}

fn positive(key: &str, value: Option<u32>, default: usize) -> anyhow::Result<usize> {
    match value {
        None => Ok(default),
        Some(0) => anyhow::bail!("{key} 0: use at least 1"),
        Some(n) => Ok(n as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_embedded_or_a_postgres_url() {
        assert!(store_url(None).unwrap().is_none());
        assert!(store_url(Some(" ".into())).unwrap().is_none());
        let pg = store_url(Some("postgres://u:secret@db.example:5432/hub".into()))
            .unwrap()
            .unwrap();
        assert_eq!(pg.database(), Some("hub"));
        let wrong = store_url(Some("mysql://u:secret@db/hub".into())).unwrap_err();
        assert!(wrong.to_string().contains("postgres://"), "{wrong}");
        assert!(!wrong.to_string().contains("secret"));
    }

    #[test]
    fn node_ids_default_to_local_and_are_checked() {
        assert_eq!(ServeArgs::default().resolve().unwrap().node_id, "local");
        let args = ServeArgs {
            node_id: Some("node-2.eu_west".into()),
            ..ServeArgs::default()
        };
        assert_eq!(args.resolve().unwrap().node_id, "node-2.eu_west");
        for bad in ["", "has space", "a/b", &"x".repeat(65)] {
            let args = ServeArgs {
                node_id: Some(bad.to_owned()),
                ..ServeArgs::default()
            };
            assert!(args.resolve().is_err(), "{bad:?} is refused");
        }
    }

    /// The settings of a config file holding `text` (written in `dir`).
    fn from_file(dir: &Path, text: &str) -> anyhow::Result<ServeConfig> {
        let path = dir.join("c.toml");
        std::fs::write(&path, text).unwrap();
        ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .resolve()
    }

    #[test]
    fn issuing_cas_come_from_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = |text: &str| from_file(dir.path(), text);
        let c = config(
            "issued_certificate_renewal = false\n\
             [[issuing_cas]]\nname = \"short\"\ncert = \"/s.pem\"\nkey = \"/s.key\"\nvalidity_days = 7\n\
             [[issuing_cas]]\nname = \"plain\"\ncert = \"/p.pem\"\nkey = \"/p.key\"\nrenewal = false\n",
        )
        .unwrap();
        assert!(!c.issued_certificate_renewal);
        assert_eq!(c.issuing_cas.len(), 2);
        assert_eq!(
            (c.issuing_cas[0].validity_days, c.issuing_cas[0].renewal),
            (7, true)
        );
        assert_eq!(
            (c.issuing_cas[1].validity_days, c.issuing_cas[1].renewal),
            (30, false)
        );
        let ca = |name: &str, extra: &str| {
            format!("[[issuing_cas]]\nname = \"{name}\"\ncert = \"/a\"\nkey = \"/b\"\n{extra}")
        };
        assert!(config(&ca("default", "")).is_err(), "the default's name");
        assert!(config(&ca("bad name", "")).is_err());
        assert!(config(&ca("x", "validity_days = 0\n")).is_err());
        assert!(config(&ca("x", "colour = 1\n")).is_err(), "unknown keys");
        assert!(
            config(&format!("{}{}", ca("x", ""), ca("x", ""))).is_err(),
            "twice"
        );
    }

    #[test]
    fn throttling_comes_from_the_config_file_checked() {
        let dir = tempfile::tempdir().unwrap();
        let config = |text: &str| from_file(dir.path(), text);
        assert!(config("").unwrap().throttling.is_none(), "off by default");
        let c = config(
            "[throttling]\n[throttling.d2c]\ndevice = { rate = 5, burst = 10 }\n\
             [throttling.registry]\nhub = { rate = 1.67 }\n",
        )
        .unwrap();
        let t = c.throttling.unwrap();
        assert_eq!(t.d2c.device.unwrap().burst, Some(10));
        assert!(t.d2c.hub.is_none() && t.c2d.hub.is_none());
        assert!((t.registry.hub.unwrap().rate - 1.67).abs() < 1e-9);
        let refused = config("[throttling.d2c]\nhub = { rate = -1 }\n").unwrap_err();
        assert!(
            refused.to_string().contains("throttling.d2c.hub.rate"),
            "{refused}"
        );
        assert!(
            config("[throttling.d2c]\nhub = { rat = 1 }\n").is_err(),
            "unknown keys"
        );
        assert!(config("[throttling.telemetry]\n").is_err(), "unknown kinds");
    }

    #[test]
    fn defaults_work_for_a_newcomer() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("ironhub-data"));
        assert_eq!(c.hostnames, ["localhost"]);
        assert_eq!(c.https_listen.to_string(), "0.0.0.0:443");
        assert_eq!(c.mqtt_listen.to_string(), "0.0.0.0:8883");
        assert_eq!(c.amqp_listen.to_string(), "0.0.0.0:5671");
        assert_eq!(c.retention, Retention::default());
        assert_eq!(c.retention.max_age, chrono::Duration::hours(24));
        assert_eq!(c.retention.max_bytes_per_partition, 256 * 1024 * 1024);
        assert!(c.trust_ca.is_empty());
        assert_eq!(c.dps_limits.registrations_per_minute, 0);
        assert_eq!(c.dps_limits.polls_per_window, 5);
    }

    #[test]
    fn connection_limits_from_defaults_file_and_flags() {
        assert_eq!(
            ServeArgs::default().resolve().unwrap().connection_limits,
            ConnectionLimits::default()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ironhub.toml");
        std::fs::write(
            &file,
            "max_connections = 500\nmax_connections_per_address = 20\n\
             tls_handshake_timeout_seconds = 3\n",
        )
        .unwrap();
        let c = ServeArgs {
            config: Some(file.clone()),
            max_connections_per_address: Some(7),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            c.connection_limits,
            ConnectionLimits {
                max_connections: 500,
                max_connections_per_address: 7,
                handshake_timeout: Duration::from_secs(3),
            }
        );
        std::fs::write(&file, "max_connections = 0\n").unwrap();
        let zero = ServeArgs {
            config: Some(file.clone()),
            ..ServeArgs::default()
        };
        assert!(zero.resolve().is_err(), "a cap of 0 is refused");
        std::fs::write(&file, "tls_handshake_timeout_seconds = 301\n").unwrap();
        let long = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        assert!(
            long.resolve().is_err(),
            "a handshake timeout over 5 minutes is refused"
        );
    }

    #[test]
    fn read_timeouts_from_defaults_file_and_flags() {
        assert_eq!(
            ServeArgs::default().resolve().unwrap().read_timeouts,
            ReadTimeouts::default()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ironhub.toml");
        std::fs::write(
            &file,
            "http_header_read_timeout_seconds = 4
http_body_read_timeout_seconds = 9
",
        )
        .unwrap();
        let c = ServeArgs {
            config: Some(file.clone()),
            http_body_read_timeout_seconds: Some(5),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            c.read_timeouts,
            ReadTimeouts {
                header: Duration::from_secs(4),
                body: Duration::from_secs(5),
            }
        );
        for bad in [
            "http_header_read_timeout_seconds = 0\n",
            "http_body_read_timeout_seconds = 301\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            let args = ServeArgs {
                config: Some(file.clone()),
                ..ServeArgs::default()
            };
            assert!(args.resolve().is_err(), "{bad}");
        }
    }

    #[test]
    fn dps_settings_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ironhub.toml");
        std::fs::write(
            &file,
            "trust_ca = [\"/etc/a.pem\", \"/etc/b.pem\"]\ndps_registrations_per_minute = 200\n",
        )
        .unwrap();
        let c = ServeArgs {
            config: Some(file.clone()),
            dps_polls_per_device: Some(0),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            c.trust_ca,
            [PathBuf::from("/etc/a.pem"), PathBuf::from("/etc/b.pem")]
        );
        assert_eq!(c.dps_limits.registrations_per_minute, 200);
        assert_eq!(c.dps_limits.polls_per_window, 0);
        let c = ServeArgs {
            config: Some(file),
            trust_ca: vec![PathBuf::from("/x.pem")],
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.trust_ca, [PathBuf::from("/x.pem")]);
    }

    #[test]
    fn routing_from_the_file_in_arm_shape() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ironhub.toml");
        std::fs::write(
            &file,
            "[routing]\n\
             endpoints.eventHubs = [{ name = \"hot\", partitionCount = 2 }]\n\
             routes = [{ name = \"hot\", source = \"DeviceMessages\", condition = \"$body.t > 30\", \
             endpointNames = [\"hot\"], isEnabled = true }]\n\
             fallbackRoute = { name = \"$fallback\", source = \"DeviceMessages\", \
             endpointNames = [\"events\"], isEnabled = false }\n",
        )
        .unwrap();
        let c = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        let routing = c.routing.unwrap();
        assert_eq!(routing.endpoints.event_hubs[0].partition_count, Some(2));
        assert_eq!(routing.routes[0].condition.as_deref(), Some("$body.t > 30"));
        assert!(!routing.fallback().is_enabled);
        assert!(ServeArgs::default().resolve().unwrap().routing.is_none());
    }

    #[test]
    fn small_file_batches_are_off_unless_the_file_or_a_flag_allows_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ironhub.toml");
        std::fs::write(&file, "allow_small_file_batches = true\n").unwrap();
        let from_file = ServeArgs {
            config: Some(file.clone()),
            ..ServeArgs::default()
        };
        assert!(
            from_file
                .resolve()
                .unwrap()
                .routing_allowances
                .small_file_batches
        );
        let flag_wins = ServeArgs {
            config: Some(file),
            allow_small_file_batches: Some(false),
            ..ServeArgs::default()
        };
        assert!(
            !flag_wins
                .resolve()
                .unwrap()
                .routing_allowances
                .small_file_batches
        );
        let default = ServeArgs::default().resolve().unwrap();
        assert!(!default.routing_allowances.small_file_batches);
        assert!(default.routing.is_none());
    }

    #[test]
    fn file_upload_from_the_file_table_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ironhub.toml");
        std::fs::write(
            &file,
            "[file_upload]\nconnection_string = \"UseDevelopmentStorage=true\"\n\
             container = \"uploads\"\nnotifications = true\nsas_ttl_hours = 2\n",
        )
        .unwrap();
        let c = ServeArgs {
            config: Some(file.clone()),
            file_upload: FileUploadArgs {
                file_upload_container: Some("other".into()),
                ..FileUploadArgs::default()
            },
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        let f = c.file_upload.unwrap();
        assert_eq!(f.container, "other");
        assert!(f.notifications);
        assert_eq!(f.sas_ttl, chrono::Duration::hours(2));
        assert!(
            ServeArgs::default()
                .resolve()
                .unwrap()
                .file_upload
                .is_none()
        );
        std::fs::write(&file, "[file_upload]\ncontainer = \"uploads\"\nbogus = 1\n").unwrap();
        let err = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert!(format!("{err:#}").contains("bogus"), "{err:#}");
    }

    #[test]
    fn retention_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ironhub.toml");
        std::fs::write(
            &file,
            "retention_hours = 2\nretention_mb_per_partition = 8\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            ..ServeArgs::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.retention.max_age, chrono::Duration::hours(2));
        assert_eq!(c.retention.max_bytes_per_partition, 8 * 1024 * 1024);
        let args = ServeArgs {
            config: Some(file),
            retention_hours: Some(48),
            ..ServeArgs::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.retention.max_age, chrono::Duration::hours(48));
        assert_eq!(c.retention.max_bytes_per_partition, 8 * 1024 * 1024);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ironhub.toml");
        std::fs::write(
            &file,
            "data_dir = \"/var/lib/ironhub\"\nhostname = [\"hub.example\", \"10.0.0.5\"]\n\
             https_listen = \"127.0.0.1:8443\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            https_listen: Some("127.0.0.2:443".parse().unwrap()),
            ..ServeArgs::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/ironhub"));
        assert_eq!(c.hostnames, ["hub.example", "10.0.0.5"]);
        assert_eq!(c.https_listen.to_string(), "127.0.0.2:443");
        assert_eq!(c.log_format, LogFormat::Json);

        std::fs::write(&file, "hostname = \"one.example\"\nbogus = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let err = args.resolve().unwrap_err();
        assert!(format!("{err:#}").contains("bogus"), "{err:#}");
    }
}

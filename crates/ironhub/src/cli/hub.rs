//! `ironhub hub …`: the command tree, flag names and short aliases of `az iot hub …` (the
//! azure-iot CLI extension), for the commands ironhub supports.

use std::path::PathBuf;

use clap::{ArgAction, Args, Subcommand, ValueEnum};

use super::{
    certificate, consumer_group, device, digital_twin, login, monitor, output, parentage, query,
    renew_key, sas, twin,
};

/// `ironhub hub`
#[derive(Debug, Args)]
pub struct HubArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: HubCommand,
}

/// How every `ironhub hub` command finds and trusts its hub.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Hub login and output")]
pub struct CommonArgs {
    /// The hub's name: its host name or the first label of it. Only checked against the login.
    #[arg(long = "hub-name", short = 'n', global = true)]
    pub hub_name: Option<String>,
    /// A service connection string (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…).
    #[arg(
        long = "login",
        short = 'l',
        env = "IRONHUB_CONNECTION_STRING",
        hide_env_values = true,
        global = true
    )]
    pub login: Option<String>,
    /// On the server's machine: log in from its data directory [default: ./ironhub-data when
    /// no --login is given].
    #[arg(long = "data-dir", env = "IRONHUB_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// A PEM file of extra CA certificates to trust (an ironhub server's is DATA_DIR/tls/ca.pem).
    /// The system's roots are trusted too; SSL_CERT_FILE, when set, replaces them as in OpenSSL.
    #[arg(long = "cafile", global = true)]
    pub cafile: Option<PathBuf>,
    /// Output format.
    #[arg(long = "output", short = 'o', value_enum, default_value_t = output::Format::Json, global = true)]
    pub output: output::Format,
}

/// `ironhub hub <command>`
#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Manage IoT devices.
    #[command(name = "device-identity")]
    DeviceIdentity {
        #[command(subcommand)]
        command: DeviceIdentityCommand,
    },
    /// Manage device twins.
    #[command(name = "device-twin")]
    DeviceTwin {
        #[command(subcommand)]
        command: twin::DeviceTwinCommand,
    },
    /// Manage IoT Plug and Play digital twins.
    #[command(name = "digital-twin")]
    DigitalTwin {
        #[command(subcommand)]
        command: digital_twin::DigitalTwinCommand,
    },
    /// Invoke a direct method on a device and print its answer.
    #[command(name = "invoke-device-method")]
    InvokeDeviceMethod(twin::InvokeMethodArgs),
    /// Monitor device telemetry as it reaches the hub (printed as az prints it).
    #[command(name = "monitor-events")]
    MonitorEvents(monitor::MonitorArgs),
    /// Manage the event endpoint's consumer groups (`--name/-n` is the group; the hub is
    /// `--hub-name`).
    #[command(name = "consumer-group")]
    ConsumerGroup {
        #[command(subcommand)]
        command: consumer_group::ConsumerGroupCommand,
    },
    /// Manage CA certificates for X.509 CA device authentication (`--name/-n` is the
    /// certificate; the hub is `--hub-name`).
    Certificate {
        #[command(subcommand)]
        command: certificate::CertificateCommand,
    },
    /// Query the hub's device twins with IoT Hub's query language (every page, up to --top).
    Query(query::QueryArgs),
    /// Generate a SAS token for a device or for a hub shared access policy.
    #[command(name = "generate-sas-token")]
    GenerateSasToken(SasTokenArgs),
    /// Manage the hub's connection strings.
    #[command(name = "connection-string")]
    ConnectionString {
        #[command(subcommand)]
        command: HubConnectionStringCommand,
    },
}

/// `ironhub hub device-identity <command>`
#[derive(Debug, Subcommand)]
pub enum DeviceIdentityCommand {
    /// Create a device.
    Create(CreateArgs),
    /// Get the details of a device.
    Show(DeviceIdArgs),
    /// List devices.
    List(ListArgs),
    /// Update a device (only what the flags name changes).
    Update(UpdateArgs),
    /// Delete a device.
    Delete(DeleteArgs),
    /// Manage a device's connection string.
    #[command(name = "connection-string")]
    ConnectionString {
        #[command(subcommand)]
        command: DeviceConnectionStringCommand,
    },
    /// Renew the symmetric keys of devices (`-d` several ids, or `*` for all).
    #[command(name = "renew-key")]
    RenewKey(renew_key::RenewKeyArgs),
    /// Manage an IoT Edge device's child devices.
    Children {
        #[command(subcommand)]
        command: parentage::ChildrenCommand,
    },
    /// Manage a device's parent IoT Edge device.
    Parent {
        #[command(subcommand)]
        command: parentage::ParentCommand,
    },
}

/// `ironhub hub device-identity connection-string <command>`
#[derive(Debug, Subcommand)]
pub enum DeviceConnectionStringCommand {
    /// Show a device's connection string.
    Show(DeviceConnectionStringArgs),
}

/// `ironhub hub connection-string <command>`
#[derive(Debug, Subcommand)]
pub enum HubConnectionStringCommand {
    /// Show the hub's connection string for a shared access policy.
    Show(HubConnectionStringArgs),
}

/// How a device authenticates (`--auth-method`), in az's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMethod {
    /// Symmetric keys (IoT Hub's `sas`).
    #[value(name = "shared_private_key")]
    SharedPrivateKey,
    /// Self-signed X.509 certificates, by thumbprint (IoT Hub's `selfSigned`).
    #[value(name = "x509_thumbprint")]
    X509Thumbprint,
    /// X.509 certificates signed by a CA the hub knows (IoT Hub's `certificateAuthority`).
    #[value(name = "x509_ca")]
    X509Ca,
}

impl AuthMethod {
    /// IoT Hub's `authentication.type` value.
    /// The device authentication type this method gives a device.
    pub fn auth_type(self) -> ironhub_wire::hub::AuthType {
        match self {
            AuthMethod::SharedPrivateKey => ironhub_wire::hub::AuthType::Sas,
            AuthMethod::X509Thumbprint => ironhub_wire::hub::AuthType::SelfSigned,
            AuthMethod::X509Ca => ironhub_wire::hub::AuthType::CertificateAuthority,
        }
    }

    /// The wire name of [`AuthMethod::auth_type`].
    pub fn api_type(self) -> &'static str {
        self.auth_type().as_str()
    }
}

/// `--status`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Status {
    Enabled,
    Disabled,
}

impl Status {
    /// The device status this flag sets.
    pub fn wire(self) -> ironhub_wire::hub::DeviceStatus {
        match self {
            Status::Enabled => ironhub_wire::hub::DeviceStatus::Enabled,
            Status::Disabled => ironhub_wire::hub::DeviceStatus::Disabled,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.wire().as_str()
    }
}

/// `--key-type`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum KeyType {
    #[default]
    Primary,
    Secondary,
}

/// `-d/--device-id`
#[derive(Debug, Clone, Args)]
pub struct DeviceIdArgs {
    /// Target device.
    #[arg(long = "device-id", short = 'd')]
    pub device_id: String,
}

/// The credential and status flags `create` and `update` share.
#[derive(Debug, Clone, Args, Default)]
pub struct DeviceFlags {
    /// The authorization method the device uses.
    #[arg(long = "auth-method", visible_alias = "am", value_enum)]
    pub auth_method: Option<AuthMethod>,
    /// The symmetric primary key (base64) [default: generated by the hub].
    #[arg(long = "primary-key", visible_alias = "pk")]
    pub primary_key: Option<String>,
    /// The symmetric secondary key (base64) [default: generated by the hub].
    #[arg(long = "secondary-key", visible_alias = "sk")]
    pub secondary_key: Option<String>,
    /// The primary thumbprint (SHA-1 or SHA-256 hex) of a self-signed certificate.
    #[arg(long = "primary-thumbprint", visible_alias = "ptp")]
    pub primary_thumbprint: Option<String>,
    /// The secondary thumbprint of a self-signed certificate.
    #[arg(long = "secondary-thumbprint", visible_alias = "stp")]
    pub secondary_thumbprint: Option<String>,
    /// Whether the device may connect.
    #[arg(long = "status", visible_alias = "sta", value_enum)]
    pub status: Option<Status>,
    /// Why the device has its status.
    #[arg(long = "status-reason", visible_alias = "star")]
    pub status_reason: Option<String>,
    /// Whether the device is an IoT Edge device (`--ee` alone means true).
    #[arg(
        long = "edge-enabled",
        visible_alias = "ee",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub edge_enabled: Option<bool>,
}

/// `device-identity create`
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub id: DeviceIdArgs,
    #[command(flatten)]
    pub flags: DeviceFlags,
}

/// `device-identity update`
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub id: DeviceIdArgs,
    #[command(flatten)]
    pub flags: DeviceFlags,
    /// The etag the device must still have [default: the one just read].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// `device-identity delete`
#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub id: DeviceIdArgs,
    /// The etag the device must still have [default: any, "*"].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// `device-identity list`
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Maximum number of devices to return (1 to 1000; -1 for the hub's maximum).
    #[arg(long = "top", default_value_t = 1000, allow_negative_numbers = true)]
    pub top: i64,
    /// Only IoT Edge devices (true) or only other devices (false).
    #[arg(
        long = "edge-enabled",
        visible_alias = "ee",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub edge_enabled: Option<bool>,
}

/// `device-identity connection-string show`
#[derive(Debug, Clone, Args)]
pub struct DeviceConnectionStringArgs {
    #[command(flatten)]
    pub id: DeviceIdArgs,
    /// Which key to put in the connection string.
    #[arg(long = "key-type", visible_alias = "kt", value_enum, default_value_t = KeyType::Primary)]
    pub key_type: KeyType,
}

/// `hub connection-string show`
#[derive(Debug, Clone, Args)]
pub struct HubConnectionStringArgs {
    /// The shared access policy [default: iothubowner, or the login's own policy].
    #[arg(long = "policy-name", visible_alias = "pn")]
    pub policy_name: Option<String>,
    /// Which key to put in the connection string.
    #[arg(long = "key-type", visible_alias = "kt", value_enum, default_value_t = KeyType::Primary)]
    pub key_type: KeyType,
}

/// `hub generate-sas-token`
#[derive(Debug, Clone, Args)]
pub struct SasTokenArgs {
    /// A device: sign `{host}/devices/{id}` with its key. Without it, sign the hub with a policy key.
    #[arg(long = "device-id", short = 'd')]
    pub device_id: Option<String>,
    /// Which key signs.
    #[arg(long = "key-type", visible_alias = "kt", value_enum, default_value_t = KeyType::Primary)]
    pub key_type: KeyType,
    /// How long the token is valid, in seconds.
    #[arg(long = "duration", visible_alias = "du", default_value_t = 3600)]
    pub duration: u64,
    /// The shared access policy that signs a hub token [default: iothubowner, or the login's
    /// own policy].
    #[arg(long = "policy-name", visible_alias = "pn")]
    pub policy_name: Option<String>,
    /// Sign directly with this connection string's key (a device or a policy connection
    /// string), without asking the hub.
    #[arg(long = "connection-string", visible_alias = "cs")]
    pub connection_string: Option<String>,
}

/// Runs an `ironhub hub` command.
pub async fn run(args: HubArgs) -> anyhow::Result<()> {
    let common = args.common;
    let format = common.output;
    let result = match args.command {
        HubCommand::DeviceIdentity { command } => {
            let session = login::Session::open(&common).await?;
            match command {
                DeviceIdentityCommand::Create(a) => device::create(&session, &a).await?,
                DeviceIdentityCommand::Show(a) => device::show(&session, &a.device_id).await?,
                DeviceIdentityCommand::List(a) => device::list(&session, &a).await?,
                DeviceIdentityCommand::Update(a) => device::update(&session, &a).await?,
                DeviceIdentityCommand::Delete(a) => {
                    device::delete(&session, &a).await?;
                    return Ok(());
                }
                DeviceIdentityCommand::ConnectionString {
                    command: DeviceConnectionStringCommand::Show(a),
                } => device::connection_string(&session, &a).await?,
                DeviceIdentityCommand::RenewKey(a) => renew_key::run(&session, &a).await?,
                DeviceIdentityCommand::Children { command } => {
                    match parentage::children(&session, &command).await? {
                        Some(v) => v,
                        None => return Ok(()),
                    }
                }
                DeviceIdentityCommand::Parent { command } => {
                    match parentage::parent(&session, &command).await? {
                        Some(v) => v,
                        None => return Ok(()),
                    }
                }
            }
        }
        HubCommand::DeviceTwin { command } => {
            let session = login::Session::open(&common).await?;
            match command {
                twin::DeviceTwinCommand::Show(a) => twin::show(&session, &a.device_id).await?,
                twin::DeviceTwinCommand::Update(a) => twin::update(&session, &a).await?,
                twin::DeviceTwinCommand::Replace(a) => twin::replace(&session, &a).await?,
            }
        }
        HubCommand::DigitalTwin { command } => {
            let session = login::Session::open(&common).await?;
            digital_twin::run(&session, &command).await?
        }
        HubCommand::InvokeDeviceMethod(a) => {
            let session = login::Session::open(&common).await?;
            twin::invoke(&session, &a).await?
        }
        HubCommand::MonitorEvents(a) => {
            let session = login::Session::open(&common).await?;
            return monitor::run(&session, &a, format).await;
        }
        HubCommand::ConsumerGroup { command } => {
            let session = login::Session::open(&common).await?;
            match consumer_group::run(&session, &command).await? {
                Some(v) => v,
                None => return Ok(()),
            }
        }
        HubCommand::Certificate { command } => {
            let session = login::Session::open(&common).await?;
            match certificate::run(session.client()?.certificates(), &command).await? {
                Some(v) => v,
                None => return Ok(()),
            }
        }
        HubCommand::Query(a) => {
            let session = login::Session::open(&common).await?;
            query::run(&session, &a).await?
        }
        HubCommand::GenerateSasToken(a) => match &a.connection_string {
            Some(cs) => sas::from_connection_string(cs, a.duration)?,
            None => {
                let session = login::Session::open(&common).await?;
                sas::generate(&session, &a).await?
            }
        },
        HubCommand::ConnectionString {
            command: HubConnectionStringCommand::Show(a),
        } => {
            let session = login::Session::open(&common).await?;
            sas::hub_connection_string(&session, a.policy_name.as_deref(), a.key_type)?
        }
    };
    output::print(&result, format)
}

//! `ironhub dps …`: the command tree, flag names and short aliases of `az iot dps …` (the
//! azure-iot CLI extension's enrollment, registration, compute-device-key and connection-string
//! commands; azure-cli's certificate and linked-hub commands), for the commands ironhub
//! supports.
//!
//! Everything goes through the DPS service REST API (api-version 2021-10-01), so the
//! enrollment and registration commands work against a real Azure DPS too. Certificates and
//! linked hubs are ARM resources in Azure; ironhub serves them as `/dps/certificates` and
//! `/dps/linkedHubs` on its own host, so those two groups work against ironhub only.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{ArgAction, Args, Subcommand, ValueEnum};
use ironhub_client::{ClientError, EnrollmentKind};
use ironhub_wire::dps::{EnrollmentGroup, IndividualEnrollment};
use serde_json::Value;

use super::certificate::{self, CertificateCommand};
use super::hub::{KeyType, Status};
use super::login::Session;
use super::{enrollment, linked_hub, output, sas};

/// `ironhub dps`
#[derive(Debug, Args)]
pub struct DpsArgs {
    #[command(flatten)]
    pub common: DpsCommonArgs,
    #[command(subcommand)]
    pub command: DpsCommand,
}

/// How every `ironhub dps` command finds and trusts its DPS instance.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "DPS login and output")]
pub struct DpsCommonArgs {
    /// The DPS instance's name or host name. Accepted for az compatibility, not checked: the
    /// login (or, on the server's machine, the data directory) decides which instance answers.
    #[arg(long = "dps-name", short = 'n', global = true)]
    pub dps_name: Option<String>,
    /// The resource group. Accepted for az compatibility and ignored: ironhub has none.
    #[arg(long = "resource-group", short = 'g', global = true)]
    pub resource_group: Option<String>,
    /// A DPS service connection string
    /// (HostName=…;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=…).
    #[arg(
        long = "login",
        short = 'l',
        env = "IRONHUB_DPS_CONNECTION_STRING",
        hide_env_values = true,
        global = true
    )]
    pub login: Option<String>,
    /// On the server's machine: log in from its data directory, with the DPS policy
    /// provisioningserviceowner [default: ./ironhub-data when no --login is given].
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

/// The DPS instance's name in the commands where az takes it only as `--dps-name` (there
/// `-n` is the certificate's name).
#[derive(Debug, Clone, Args)]
pub struct DpsNameArg {
    /// The DPS instance's name. Accepted for az compatibility, not checked.
    #[arg(long = "dps-name", id = "dps_name", value_name = "DPS_NAME")]
    pub dps_name: Option<String>,
}

/// `ironhub dps <command>`
#[derive(Debug, Subcommand)]
pub enum DpsCommand {
    /// Manage individual enrollments.
    Enrollment {
        #[command(subcommand)]
        command: EnrollmentCommand,
    },
    /// Manage enrollment groups.
    #[command(name = "enrollment-group")]
    EnrollmentGroup {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Manage the registrations of an enrollment group's devices (az's deprecated alias of
    /// `enrollment-group registration`).
    Registration {
        #[command(subcommand)]
        command: GroupRegistrationCommand,
    },
    /// Compute a device's key in a symmetric key enrollment group (az's deprecated alias of
    /// `enrollment-group compute-device-key`).
    #[command(name = "compute-device-key")]
    ComputeDeviceKey(ComputeKeyArgs),
    /// Manage CA certificates for X.509 enrollment groups (`--name/-n` is the certificate; the
    /// instance is `--dps-name`). ironhub's `/dps/certificates`: an ARM resource in Azure.
    Certificate {
        #[command(subcommand)]
        command: CertificateCommand<DpsNameArg>,
    },
    /// Manage the IoT hubs devices are assigned to. ironhub's `/dps/linkedHubs`: an ARM
    /// resource in Azure.
    #[command(name = "linked-hub")]
    LinkedHub {
        #[command(subcommand)]
        command: linked_hub::LinkedHubCommand,
    },
    /// Show the DPS instance's service connection strings.
    #[command(name = "connection-string")]
    ConnectionString {
        #[command(subcommand)]
        command: ConnectionStringCommand,
    },
}

/// `ironhub dps enrollment <command>`
#[derive(Debug, Subcommand)]
pub enum EnrollmentCommand {
    /// Create an individual enrollment.
    Create(EnrollmentCreateArgs),
    /// Get an individual enrollment (with --show-keys, its symmetric keys too).
    Show(ShowArgs<EnrollmentIdArg>),
    /// List the individual enrollments.
    List(TopArgs),
    /// Update an individual enrollment (only what the flags name changes).
    Update(EnrollmentUpdateArgs),
    /// Delete an individual enrollment.
    Delete(EtagArgs<EnrollmentIdArg>),
    /// Manage the registration of an individual enrollment's device.
    Registration {
        #[command(subcommand)]
        command: EnrollmentRegistrationCommand,
    },
}

/// `ironhub dps enrollment registration <command>`
#[derive(Debug, Subcommand)]
pub enum EnrollmentRegistrationCommand {
    /// Get the device's registration.
    Show(EnrollmentIdArg),
    /// Delete the device's registration (the device may register again).
    Delete(EtagArgs<EnrollmentIdArg>),
}

/// `ironhub dps enrollment-group <command>`
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create an enrollment group (symmetric key unless a certificate or CA is given).
    Create(GroupCreateArgs),
    /// Get an enrollment group (with --show-keys, its symmetric keys too).
    Show(ShowArgs<GroupIdArg>),
    /// List the enrollment groups.
    List(TopArgs),
    /// Update an enrollment group (only what the flags name changes).
    Update(GroupUpdateArgs),
    /// Delete an enrollment group (its devices' registrations stay).
    Delete(EtagArgs<GroupIdArg>),
    /// Compute a device's key: base64(HMAC-SHA256(group key, registration id)).
    #[command(name = "compute-device-key")]
    ComputeDeviceKey(ComputeKeyArgs),
    /// Manage the registrations of the group's devices.
    Registration {
        #[command(subcommand)]
        command: GroupRegistrationCommand,
    },
}

/// `ironhub dps enrollment-group registration <command>` and `ironhub dps registration
/// <command>`
#[derive(Debug, Subcommand)]
pub enum GroupRegistrationCommand {
    /// List the registrations of the group's devices.
    List(GroupRegistrationListArgs),
    /// Get a device's registration.
    Show(RegistrationIdArg),
    /// Delete a device's registration (the device may register again).
    Delete(EtagArgs<RegistrationIdArg>),
}

/// `ironhub dps connection-string <command>`
#[derive(Debug, Subcommand)]
pub enum ConnectionStringCommand {
    /// Show the connection string of a shared access policy.
    Show(ConnectionStringArgs),
}

/// `--enrollment-id/--eid`: an individual enrollment (its registration id).
#[derive(Debug, Clone, Args)]
pub struct EnrollmentIdArg {
    /// The individual enrollment's id (the device's registration id).
    #[arg(long = "enrollment-id", visible_alias = "eid")]
    pub enrollment_id: String,
}

/// `--enrollment-id/--eid/--group-id/--gid`: an enrollment group.
#[derive(Debug, Clone, Args)]
pub struct GroupIdArg {
    /// The enrollment group's id.
    #[arg(long = "enrollment-id", visible_aliases = ["eid", "group-id", "gid"])]
    pub enrollment_id: String,
}

/// `--registration-id/--rid`
#[derive(Debug, Clone, Args)]
pub struct RegistrationIdArg {
    /// The device's registration id.
    #[arg(long = "registration-id", visible_alias = "rid")]
    pub registration_id: String,
}

/// An id and `--etag`.
#[derive(Debug, Clone, Args)]
pub struct EtagArgs<I: Args> {
    #[command(flatten)]
    pub id: I,
    /// The etag the record must still have [default: any, "*"].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// An id and `--show-keys`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs<I: Args> {
    #[command(flatten)]
    pub id: I,
    /// Include the symmetric keys (read with the attestation mechanism call); `--keys` alone
    /// means true.
    #[arg(
        long = "show-keys",
        visible_alias = "keys",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub show_keys: Option<bool>,
}

/// `--top`
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// The most records to return [default: all].
    #[arg(long = "top", value_parser = clap::value_parser!(u32).range(1..))]
    pub top: Option<u32>,
}

/// `enrollment-group registration list`
#[derive(Debug, Clone, Args)]
pub struct GroupRegistrationListArgs {
    #[command(flatten)]
    pub group: GroupIdArg,
    #[command(flatten)]
    pub top: TopArgs,
}

/// `compute-device-key`
#[derive(Debug, Clone, Args)]
pub struct ComputeKeyArgs {
    /// The device's registration id.
    #[arg(long = "registration-id", visible_alias = "rid")]
    pub registration_id: String,
    /// The enrollment group's symmetric key: computes offline, without a login or any other
    /// flag.
    #[arg(long = "symmetric-key", visible_alias = "key")]
    pub symmetric_key: Option<String>,
    /// The enrollment group whose primary key to read (needs a login).
    #[arg(long = "enrollment-id", visible_aliases = ["eid", "group-id", "gid"])]
    pub enrollment_id: Option<String>,
}

/// `--attestation-type`, in az's words (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttestationType {
    /// A TPM's endorsement key (--endorsement-key).
    Tpm,
    /// The device's X.509 certificate (--certificate-path).
    X509,
    /// Symmetric keys (--primary-key, --secondary-key; generated when left out).
    #[value(name = "symmetricKey")]
    SymmetricKey,
}

/// `--allocation-policy` (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AllocationPolicy {
    /// Evenly weighted distribution over the linked hubs.
    Hashed,
    /// The linked hub with the lowest latency from the DPS.
    #[value(name = "geoLatency")]
    GeoLatency,
    /// The one hub of --iot-hubs.
    Static,
    /// A webhook decides (--webhook-url, --api-version).
    Custom,
}

impl AllocationPolicy {
    /// The policy on the wire.
    pub fn wire(self) -> ironhub_wire::dps::AllocationPolicy {
        match self {
            AllocationPolicy::Hashed => ironhub_wire::dps::AllocationPolicy::Hashed,
            AllocationPolicy::GeoLatency => ironhub_wire::dps::AllocationPolicy::GeoLatency,
            AllocationPolicy::Static => ironhub_wire::dps::AllocationPolicy::Static,
            AllocationPolicy::Custom => ironhub_wire::dps::AllocationPolicy::Custom,
        }
    }
}

/// `--reprovision-policy` (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReprovisionPolicy {
    /// Re-provision to a new hub and move the device's twin there (the default).
    #[value(name = "reprovisionandmigratedata")]
    ReprovisionAndMigrateData,
    /// Re-provision to a new hub with the enrollment's initial twin.
    #[value(name = "reprovisionandresetdata")]
    ReprovisionAndResetData,
    /// Keep the device on the hub it was assigned to.
    Never,
}

/// What individual enrollments and groups share, in `create` and `update`.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Enrollment settings")]
pub struct SettingsFlags {
    /// The primary symmetric key (base64) [default: generated by DPS].
    #[arg(long = "primary-key", visible_alias = "pk")]
    pub primary_key: Option<String>,
    /// The secondary symmetric key (base64) [default: generated by DPS].
    #[arg(long = "secondary-key", visible_alias = "sk")]
    pub secondary_key: Option<String>,
    /// The primary certificate file (PEM, or DER .cer): the device's own for an enrollment,
    /// the signing (root or intermediate) CA for a group.
    #[arg(long = "certificate-path", visible_alias = "cp")]
    pub certificate_path: Option<PathBuf>,
    /// The secondary certificate file.
    #[arg(long = "secondary-certificate-path", visible_alias = "scp")]
    pub secondary_certificate_path: Option<PathBuf>,
    /// The initial twin's tags, as a JSON object (`'{"site": "lab"}'`; az's Python-style
    /// `"{'site': 'lab'}"` works too; "" for none).
    #[arg(long = "initial-twin-tags", visible_alias = "tags")]
    pub initial_twin_tags: Option<String>,
    /// The initial twin's desired properties, as a JSON object ("" for none).
    #[arg(long = "initial-twin-properties", visible_alias = "props")]
    pub initial_twin_properties: Option<String>,
    /// Whether devices may provision.
    #[arg(
        long = "provisioning-status",
        visible_alias = "ps",
        value_enum,
        ignore_case = true
    )]
    pub provisioning_status: Option<Status>,
    /// What happens to a device's data when it registers again [create's default:
    /// reprovisionandmigratedata].
    #[arg(
        long = "reprovision-policy",
        visible_alias = "rp",
        value_enum,
        ignore_case = true
    )]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    /// How DPS picks the hub [default: the service's, evenly weighted].
    #[arg(
        long = "allocation-policy",
        visible_alias = "ap",
        value_enum,
        ignore_case = true
    )]
    pub allocation_policy: Option<AllocationPolicy>,
    /// The linked hubs (host names) the allocation picks from; space-separated or repeated.
    #[arg(long = "iot-hubs", visible_alias = "ih", num_args = 1.., action = ArgAction::Append)]
    pub iot_hubs: Vec<String>,
    /// The one hub of a static allocation (az's deprecated form of `--ap static --ih HOST`).
    #[arg(long = "iot-hub-host-name", visible_alias = "hn")]
    pub iot_hub_host_name: Option<String>,
    /// The webhook of a custom allocation.
    #[arg(long = "webhook-url", visible_alias = "wh")]
    pub webhook_url: Option<String>,
    /// The API version of the enrollment the webhook is sent (custom allocation), e.g.
    /// 2021-10-01.
    #[arg(long = "api-version", visible_alias = "av")]
    pub api_version: Option<String>,
    /// Whether the devices are IoT Edge devices (`--ee` alone means true).
    #[arg(
        long = "edge-enabled",
        visible_alias = "ee",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub edge_enabled: Option<bool>,
    /// The issuing CA that signs the devices' certificates when they register with a CSR
    /// (`clientCertificateIssuancePolicy.certificateAuthorityName`; ironhub's, az has no such
    /// flag); "" on update goes back to the default CA.
    #[arg(long = "certificate-authority-name")]
    pub certificate_authority_name: Option<String>,
}

/// `--remove-certificate` and `--remove-secondary-certificate` (updates of X.509 enrollments).
#[derive(Debug, Clone, Args, Default)]
pub struct RemoveFlags {
    /// Remove the primary certificate.
    #[arg(
        long = "remove-certificate",
        visible_alias = "rc",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub remove_certificate: Option<bool>,
    /// Remove the secondary certificate.
    #[arg(
        long = "remove-secondary-certificate",
        visible_alias = "rsc",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub remove_secondary_certificate: Option<bool>,
}

/// What only individual enrollments have.
#[derive(Debug, Clone, Args, Default)]
pub struct IndividualFlags {
    /// The device id the hub gives the device [default: its registration id].
    #[arg(long = "device-id")]
    pub device_id: Option<String>,
    /// The TPM's endorsement key (base64), for --attestation-type tpm.
    #[arg(long = "endorsement-key", visible_alias = "ek")]
    pub endorsement_key: Option<String>,
    /// Optional device information, as a JSON object.
    #[arg(long = "device-information", visible_alias = "info")]
    pub device_information: Option<String>,
}

/// What only enrollment groups have: references to uploaded CA certificates.
#[derive(Debug, Clone, Args, Default)]
pub struct CaNameFlags {
    /// The name of the primary CA certificate (see `ironhub dps certificate`).
    #[arg(long = "root-ca-name", visible_aliases = ["ca-name", "cn"])]
    pub root_ca_name: Option<String>,
    /// The name of the secondary CA certificate.
    #[arg(
        long = "secondary-root-ca-name",
        visible_aliases = ["secondary-ca-name", "scn"]
    )]
    pub secondary_root_ca_name: Option<String>,
}

/// `enrollment create`
#[derive(Debug, Clone, Args)]
pub struct EnrollmentCreateArgs {
    #[command(flatten)]
    pub id: EnrollmentIdArg,
    /// How the device attests.
    #[arg(
        long = "attestation-type",
        visible_alias = "at",
        value_enum,
        ignore_case = true
    )]
    pub attestation_type: AttestationType,
    #[command(flatten)]
    pub individual: IndividualFlags,
    #[command(flatten)]
    pub settings: SettingsFlags,
}

/// `enrollment update`
#[derive(Debug, Clone, Args)]
pub struct EnrollmentUpdateArgs {
    #[command(flatten)]
    pub id: EnrollmentIdArg,
    #[command(flatten)]
    pub individual: IndividualFlags,
    #[command(flatten)]
    pub settings: SettingsFlags,
    #[command(flatten)]
    pub remove: RemoveFlags,
    /// The etag the enrollment must still have [default: any, "*"].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// `enrollment-group create`
#[derive(Debug, Clone, Args)]
pub struct GroupCreateArgs {
    #[command(flatten)]
    pub id: GroupIdArg,
    #[command(flatten)]
    pub ca: CaNameFlags,
    #[command(flatten)]
    pub settings: SettingsFlags,
}

/// `enrollment-group update`
#[derive(Debug, Clone, Args)]
pub struct GroupUpdateArgs {
    #[command(flatten)]
    pub id: GroupIdArg,
    #[command(flatten)]
    pub ca: CaNameFlags,
    #[command(flatten)]
    pub settings: SettingsFlags,
    #[command(flatten)]
    pub remove: RemoveFlags,
    /// The etag the group must still have [default: any, "*"].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// `connection-string show`
#[derive(Debug, Clone, Args)]
pub struct ConnectionStringArgs {
    /// The shared access policy [default: provisioningserviceowner, or the login's own
    /// policy].
    #[arg(long = "policy-name", visible_alias = "pn")]
    pub policy_name: Option<String>,
    /// Which key to put in the connection string.
    #[arg(long = "key-type", visible_alias = "kt", value_enum, default_value_t = KeyType::Primary)]
    pub key_type: KeyType,
    /// Every policy's connection string, as a list (`--all` alone means true).
    #[arg(
        long = "show-all",
        visible_alias = "all",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub show_all: Option<bool>,
}

/// Runs an `ironhub dps` command.
pub async fn run(args: DpsArgs) -> anyhow::Result<()> {
    let common = args.common;
    let format = common.output;
    // Offline: computing a key from a given group key needs no login.
    if let DpsCommand::ComputeDeviceKey(a)
    | DpsCommand::EnrollmentGroup {
        command: GroupCommand::ComputeDeviceKey(a),
    } = &args.command
        && let Some(key) = &a.symmetric_key
    {
        let key = enrollment::derive_key(key, &a.registration_id)?;
        return output::print(&Value::String(key), format);
    }
    let session = Session::open_dps(&common).await?;
    let result = match execute(&session, args.command).await {
        Ok(Some(v)) => v,
        Ok(None) => return Ok(()),
        Err(e) => return Err(explain(e, &session)),
    };
    output::print(&result, format)
}

/// Runs a command that needs the DPS; `None` when it prints nothing (deletes).
async fn execute(session: &Session, command: DpsCommand) -> anyhow::Result<Option<Value>> {
    let client = session.dps_client()?;
    Ok(match command {
        DpsCommand::Enrollment { command } => match command {
            EnrollmentCommand::Create(a) => Some(enrollment::create_individual(&client, &a).await?),
            EnrollmentCommand::Show(a) => Some(
                enrollment::show(
                    &client,
                    EnrollmentKind::Individual,
                    &a.id.enrollment_id,
                    a.show_keys,
                )
                .await?,
            ),
            EnrollmentCommand::List(a) => Some(serde_json::to_value(
                client
                    .query_enrollments::<IndividualEnrollment>(top(&a))
                    .await?,
            )?),
            EnrollmentCommand::Update(a) => Some(enrollment::update_individual(&client, &a).await?),
            EnrollmentCommand::Delete(a) => {
                client
                    .delete_enrollment(
                        EnrollmentKind::Individual,
                        &a.id.enrollment_id,
                        Some(etag_or_any(a.etag.as_deref())),
                    )
                    .await?;
                None
            }
            EnrollmentCommand::Registration { command } => match command {
                EnrollmentRegistrationCommand::Show(a) => Some(serde_json::to_value(
                    client.get_registration(&a.enrollment_id).await?,
                )?),
                EnrollmentRegistrationCommand::Delete(a) => {
                    client
                        .delete_registration(
                            &a.id.enrollment_id,
                            Some(etag_or_any(a.etag.as_deref())),
                        )
                        .await?;
                    None
                }
            },
        },
        DpsCommand::EnrollmentGroup { command } => match command {
            GroupCommand::Create(a) => Some(enrollment::create_group(&client, &a).await?),
            GroupCommand::Show(a) => Some(
                enrollment::show(
                    &client,
                    EnrollmentKind::Group,
                    &a.id.enrollment_id,
                    a.show_keys,
                )
                .await?,
            ),
            GroupCommand::List(a) => Some(serde_json::to_value(
                client.query_enrollments::<EnrollmentGroup>(top(&a)).await?,
            )?),
            GroupCommand::Update(a) => Some(enrollment::update_group(&client, &a).await?),
            GroupCommand::Delete(a) => {
                client
                    .delete_enrollment(
                        EnrollmentKind::Group,
                        &a.id.enrollment_id,
                        Some(etag_or_any(a.etag.as_deref())),
                    )
                    .await?;
                None
            }
            GroupCommand::ComputeDeviceKey(a) => Some(compute_device_key(&client, &a).await?),
            GroupCommand::Registration { command } => registrations(&client, command).await?,
        },
        DpsCommand::Registration { command } => registrations(&client, command).await?,
        DpsCommand::ComputeDeviceKey(a) => Some(compute_device_key(&client, &a).await?),
        DpsCommand::Certificate { command } => {
            certificate::run(client.certificates(), &command).await?
        }
        DpsCommand::LinkedHub { command } => linked_hub::run(&client, command).await?,
        DpsCommand::ConnectionString {
            command: ConnectionStringCommand::Show(a),
        } => Some(sas::dps_connection_string(session, &a)?),
    })
}

async fn registrations(
    client: &ironhub_client::DpsClient,
    command: GroupRegistrationCommand,
) -> anyhow::Result<Option<Value>> {
    Ok(match command {
        GroupRegistrationCommand::List(a) => Some(serde_json::to_value(
            client
                .query_registrations(&a.group.enrollment_id, top(&a.top))
                .await?,
        )?),
        GroupRegistrationCommand::Show(a) => Some(serde_json::to_value(
            client.get_registration(&a.registration_id).await?,
        )?),
        GroupRegistrationCommand::Delete(a) => {
            client
                .delete_registration(&a.id.registration_id, Some(etag_or_any(a.etag.as_deref())))
                .await?;
            None
        }
    })
}

/// `compute-device-key` with a login: the group's primary key, read with the attestation
/// mechanism call.
async fn compute_device_key(
    client: &ironhub_client::DpsClient,
    args: &ComputeKeyArgs,
) -> anyhow::Result<Value> {
    let Some(group) = &args.enrollment_id else {
        anyhow::bail!(
            "pass the enrollment group's key with --symmetric-key (--key), or the group with \
             --enrollment-id (--gid) to read its key from the DPS"
        );
    };
    let mechanism = client
        .attestation_mechanism(EnrollmentKind::Group, group)
        .await?;
    if mechanism.kind != ironhub_wire::dps::AttestationType::SymmetricKey {
        anyhow::bail!(
            "the enrollment group '{group}' attests by '{}'; compute-device-key needs a \
             symmetric key group",
            mechanism.kind.as_str()
        );
    }
    let key = mechanism
        .symmetric_key
        .as_ref()
        .and_then(|k| k.primary_key.as_deref())
        .with_context(|| format!("the enrollment group '{group}' has no primary key"))?;
    Ok(Value::String(enrollment::derive_key(
        key,
        &args.registration_id,
    )?))
}

fn top(args: &TopArgs) -> Option<usize> {
    args.top.and_then(|n| usize::try_from(n).ok())
}

/// az sends `If-Match: *` when no etag is given.
fn etag_or_any(etag: Option<&str>) -> &str {
    etag.map(str::trim).filter(|e| !e.is_empty()).unwrap_or("*")
}

/// A hub connection string used as a DPS login gets a 401 that does not say why: say it.
fn explain(e: anyhow::Error, session: &Session) -> anyhow::Error {
    let unauthorized = e
        .downcast_ref::<ClientError>()
        .and_then(ClientError::status)
        == Some(401);
    let policy = session
        .login
        .shared_access_key_name
        .as_deref()
        .unwrap_or_default();
    let hub_policies = [
        "iothubowner",
        "service",
        "device",
        "registryRead",
        "registryReadWrite",
    ];
    if unauthorized && hub_policies.iter().any(|p| p.eq_ignore_ascii_case(policy)) {
        return e.context(format!(
            "the login's policy '{policy}' is an IoT hub policy; the dps commands need the DPS's \
             connection string (SharedAccessKeyName=provisioningserviceowner; `ironhub info \
             --json` shows it as dps.serviceConnectionString)"
        ));
    }
    e
}

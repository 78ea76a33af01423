//! `ironhub dps …`: the command tree, flag names and short aliases of `az iot dps …` (the
//! azure-iot CLI extension's enrollment, registration, compute-device-key and connection-string
//! commands; azure-cli's certificate and linked-hub commands), for the commands ironhub
//! supports.
//!
//! Everything goes through the DPS service REST API (api-version 2021-10-01), so the
//! enrollment and registration commands work against a real Azure DPS too. Certificates and
//! linked hubs are ARM resources in Azure; ironhub serves them as `/dps/certificates` and
//! `/dps/linkedHubs` on its own host, so those two groups work against ironhub only.

use clap::{Args, Subcommand};
use ironhub_client::ClientError;
use serde_json::Value;

use crate::cli::certificate::{self, CertificateCommand};
use crate::cli::login::{DpsCommonArgs, Session};
use crate::cli::output;

mod common;
mod compute_device_key;
mod connection_string;
mod enrollment;
mod enrollment_body;
mod enrollment_group;
mod linked_hub;
mod registration;

/// `ironhub dps`
#[derive(Debug, Args)]
pub struct DpsArgs {
    #[command(flatten)]
    pub common: DpsCommonArgs,
    #[command(subcommand)]
    pub command: DpsCommand,
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
        command: enrollment::EnrollmentCommand,
    },
    /// Manage enrollment groups.
    #[command(name = "enrollment-group")]
    EnrollmentGroup {
        #[command(subcommand)]
        command: enrollment_group::GroupCommand,
    },
    /// Manage the registrations of an enrollment group's devices (az's deprecated alias of
    /// `enrollment-group registration`).
    Registration {
        #[command(subcommand)]
        command: registration::GroupRegistrationCommand,
    },
    /// Compute a device's key in a symmetric key enrollment group (az's deprecated alias of
    /// `enrollment-group compute-device-key`).
    #[command(name = "compute-device-key")]
    ComputeDeviceKey(compute_device_key::ComputeKeyArgs),
    /// Manage CA certificates for X.509 enrollment groups (`--name/-n` is the certificate; the
    /// instance is `--dps-name`). ironhub's `/dps/certificates`: an ARM resource in Azure.
    Certificate {
        #[command(subcommand)]
        command: CertificateCommand<DpsNameArg>,
    },
    /// Manage the DPS instance's IP filter rules and public network access.
    #[command(name = "network-rule")]
    NetworkRule {
        #[command(subcommand)]
        command: crate::cli::network_rule::NetworkRuleCommand,
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
        command: connection_string::ConnectionStringCommand,
    },
}

/// Runs an `ironhub dps` command.
pub async fn run(args: DpsArgs) -> anyhow::Result<()> {
    let common = args.common;
    let format = common.output;
    // Offline: computing a key from a given group key needs no login.
    if let DpsCommand::ComputeDeviceKey(a)
    | DpsCommand::EnrollmentGroup {
        command: enrollment_group::GroupCommand::ComputeDeviceKey(a),
    } = &args.command
        && let Some(key) = compute_device_key::offline(a)
    {
        return output::print(&key?, format);
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
        DpsCommand::Enrollment { command } => enrollment::run(&client, command).await?,
        DpsCommand::EnrollmentGroup { command } => enrollment_group::run(&client, command).await?,
        DpsCommand::Registration { command } => registration::run(&client, command).await?,
        DpsCommand::ComputeDeviceKey(a) => Some(compute_device_key::run(&client, &a).await?),
        DpsCommand::Certificate { command } => {
            certificate::run(client.certificates(), &command).await?
        }
        DpsCommand::LinkedHub { command } => linked_hub::run(&client, command).await?,
        DpsCommand::NetworkRule { command } => Some(
            crate::cli::network_rule::run(crate::cli::network_rule::Rules::Dps(&client), &command)
                .await?,
        ),
        DpsCommand::ConnectionString { command } => {
            Some(connection_string::run(session, &command)?)
        }
    })
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

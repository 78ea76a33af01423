//! `ironhub dps enrollment-group registration …` (and its deprecated alias `ironhub dps
//! registration …`): the registrations of an enrollment group's devices.

use clap::{Args, Subcommand};
use ironhub_client::DpsClient;
use serde_json::Value;

use super::common::{EtagArgs, GroupIdArg, TopArgs, etag_or_any, top};

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

/// `--registration-id/--rid`
#[derive(Debug, Clone, Args)]
pub struct RegistrationIdArg {
    /// The device's registration id.
    #[arg(long = "registration-id", visible_alias = "rid")]
    pub registration_id: String,
}

/// `enrollment-group registration list`
#[derive(Debug, Clone, Args)]
pub struct GroupRegistrationListArgs {
    #[command(flatten)]
    pub group: GroupIdArg,
    #[command(flatten)]
    pub top: TopArgs,
}

/// Runs a registration command; `None` when it prints nothing (deletes).
pub async fn run(
    client: &DpsClient,
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

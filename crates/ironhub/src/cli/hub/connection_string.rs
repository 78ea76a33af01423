//! `ironhub hub connection-string show`: the hub's connection string for a shared access
//! policy.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::cli::args::KeyType;
use crate::cli::login::{Service, Session};
use crate::cli::sas;

/// `ironhub hub connection-string <command>`
#[derive(Debug, Subcommand)]
pub enum HubConnectionStringCommand {
    /// Show the hub's connection string for a shared access policy.
    Show(HubConnectionStringArgs),
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

/// Runs an `ironhub hub connection-string` command.
pub fn run(session: &Session, command: &HubConnectionStringCommand) -> anyhow::Result<Value> {
    let HubConnectionStringCommand::Show(args) = command;
    let cs = sas::policy_connection_string(
        session,
        Service::Hub,
        args.policy_name.as_deref(),
        args.key_type,
    )?;
    Ok(json!({ "connectionString": cs.to_string() }))
}

//! `ironhub dps connection-string show`: the DPS instance's service connection strings.

use clap::{ArgAction, Args, Subcommand};
use serde_json::{Value, json};

use crate::cli::args::KeyType;
use crate::cli::login::{Service, Session};
use crate::cli::sas;

/// `ironhub dps connection-string <command>`
#[derive(Debug, Subcommand)]
pub enum ConnectionStringCommand {
    /// Show the connection string of a shared access policy.
    Show(ConnectionStringArgs),
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

/// Runs an `ironhub dps connection-string` command.
pub fn run(session: &Session, command: &ConnectionStringCommand) -> anyhow::Result<Value> {
    let ConnectionStringCommand::Show(args) = command;
    show(session, args)
}

/// `dps connection-string show`: `{"connectionString": "HostName=…;SharedAccessKeyName=…;
/// SharedAccessKey=…"}` as az prints it; with `--show-all`, every policy's, as a list.
fn show(session: &Session, args: &ConnectionStringArgs) -> anyhow::Result<Value> {
    if args.show_all != Some(true) {
        let cs = sas::policy_connection_string(
            session,
            Service::Dps,
            args.policy_name.as_deref(),
            args.key_type,
        )?;
        return Ok(json!({ "connectionString": cs.to_string() }));
    }
    let names: Vec<String> = match session.identity.as_ref().and_then(|i| i.dps.as_ref()) {
        Some(dps) => dps.policies.iter().map(|p| p.key_name.clone()).collect(),
        None => vec![
            session
                .login
                .shared_access_key_name
                .clone()
                .unwrap_or_default(),
        ],
    };
    let all = names
        .iter()
        .map(|name| {
            sas::policy_connection_string(session, Service::Dps, Some(name), args.key_type)
                .map(|cs| Value::String(cs.to_string()))
        })
        .collect::<anyhow::Result<Vec<Value>>>()?;
    Ok(json!({ "connectionString": all }))
}

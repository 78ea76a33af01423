//! `ironhub hub consumer-group …`: the consumer groups of the hub's built-in event endpoint.
//!
//! As in `az iot hub consumer-group`, `--name/-n` names the consumer group here; the hub is
//! named with `--hub-name` only.

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::cli::login::Session;

/// The only event endpoint a hub has (IoT Hub's built-in endpoint).
const BUILT_IN_ENDPOINT: &str = "events";

/// `ironhub hub consumer-group <command>`
#[derive(Debug, Subcommand)]
pub enum ConsumerGroupCommand {
    /// Create a consumer group (an existing one is left as it is).
    Create(GroupArgs),
    /// List the consumer groups.
    List(EndpointArgs),
    /// Get a consumer group, with its checkpoint in every partition.
    Show(GroupArgs),
    /// Delete a consumer group and its checkpoints.
    Delete(GroupArgs),
}

/// `--event-hub-name` (and the hub's name, which az takes only as `--hub-name` here).
#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// The hub's name: its host name or the first label of it. Only checked against the login.
    #[arg(long = "hub-name", id = "hub_name", value_name = "HUB_NAME")]
    pub hub_name: Option<String>,
    /// The event endpoint: only IoT Hub's built-in `events`.
    #[arg(long = "event-hub-name", visible_alias = "ehn", default_value = BUILT_IN_ENDPOINT)]
    pub event_hub_name: String,
}

/// A consumer group's name.
#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    /// The consumer group's name.
    #[arg(long = "name", short = 'n', visible_alias = "consumer-group-name")]
    pub name: String,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

fn check_endpoint(endpoint: &EndpointArgs) -> anyhow::Result<()> {
    if endpoint.event_hub_name != BUILT_IN_ENDPOINT {
        bail!(
            "--event-hub-name '{}': a hub has only the built-in endpoint '{BUILT_IN_ENDPOINT}'",
            endpoint.event_hub_name
        );
    }
    Ok(())
}

/// Runs a `consumer-group` command; `None` when it prints nothing (delete).
pub async fn run(
    session: &Session,
    command: &ConsumerGroupCommand,
) -> anyhow::Result<Option<Value>> {
    let client = session.client()?;
    Ok(match command {
        ConsumerGroupCommand::Create(a) => {
            check_endpoint(&a.endpoint)?;
            Some(serde_json::to_value(
                client.create_consumer_group(&a.name).await?,
            )?)
        }
        ConsumerGroupCommand::List(e) => {
            check_endpoint(e)?;
            Some(serde_json::to_value(client.list_consumer_groups().await?)?)
        }
        ConsumerGroupCommand::Show(a) => {
            check_endpoint(&a.endpoint)?;
            Some(serde_json::to_value(
                client.get_consumer_group(&a.name).await?,
            )?)
        }
        ConsumerGroupCommand::Delete(a) => {
            check_endpoint(&a.endpoint)?;
            client.delete_consumer_group(&a.name).await?;
            None
        }
    })
}

//! `ironhub hub message-endpoint …`: the hub's custom routing endpoints, with the flag names
//! of `az iot hub message-endpoint` / `routing-endpoint` (`--endpoint-name`,
//! `--endpoint-type`). ironhub's own kind here is `eventhub`: an event stream of this server
//! with its own partitions and consumer groups, read like the built-in `events` (REST
//! `?endpoint=NAME`, AMQP entity `NAME`). Endpoints of other kinds are listed, shown and
//! deleted here; they are created through the routing document. `health` answers ARM's
//! `routingEndpointsHealth` (az has no command for it; the name is ARM's `GetEndpointHealth`).

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use ironhub_wire::hub::StreamEndpoint;
use serde_json::{Value, json};

use super::message_route::{HubName, edit};
use crate::cli::login::Session;

/// `ironhub hub message-endpoint <command>`
#[derive(Debug, Subcommand)]
pub enum MessageEndpointCommand {
    /// Add an endpoint.
    Create(CreateArgs),
    /// List the endpoints, by kind.
    List(ListArgs),
    /// Show an endpoint.
    Show(NameArgs),
    /// Delete an endpoint (refused while a route or an enrichment names it).
    Delete(NameArgs),
    /// The health of the file, webhook and NATS endpoints (ARM's `routingEndpointsHealth`).
    Health(HealthArgs),
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Only this endpoint.
    #[arg(long = "endpoint-name", visible_alias = "en")]
    pub endpoint_name: Option<String>,
    #[command(flatten)]
    pub hub: HubName,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long = "endpoint-name", visible_alias = "en")]
    pub endpoint_name: String,
    /// `eventhub` (an event stream of this server).
    #[arg(
        long = "endpoint-type",
        visible_alias = "type",
        short = 't',
        default_value = "eventhub"
    )]
    pub endpoint_type: String,
    /// Partitions of the stream (1–32) [default: 4].
    #[arg(long = "partition-count")]
    pub partition_count: Option<u32>,
    #[command(flatten)]
    pub hub: HubName,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long = "endpoint-type", visible_alias = "type", short = 't')]
    pub endpoint_type: Option<String>,
    #[command(flatten)]
    pub hub: HubName,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    #[arg(long = "endpoint-name", visible_alias = "en")]
    pub endpoint_name: String,
    #[command(flatten)]
    pub hub: HubName,
}

/// The document's endpoint lists by az's `--endpoint-type` names.
const KINDS: &[(&str, &str)] = &[
    ("eventhub", "eventHubs"),
    ("azurestoragecontainer", "storageContainers"),
    ("webhook", "webhooks"),
    ("nats", "natsSubjects"),
];

/// Runs a `message-endpoint` command; `None` when it prints nothing (delete).
pub async fn run(
    session: &Session,
    command: &MessageEndpointCommand,
) -> anyhow::Result<Option<Value>> {
    let client = session.client()?;
    match command {
        MessageEndpointCommand::Create(a) => {
            if !a.endpoint_type.eq_ignore_ascii_case("eventhub") {
                bail!(
                    "--endpoint-type '{}': this command creates 'eventhub' endpoints (event streams); other kinds go in the routing document",
                    a.endpoint_type
                );
            }
            let config = edit(&client, |c| {
                c.endpoints.event_hubs.push(StreamEndpoint {
                    name: a.endpoint_name.clone(),
                    partition_count: a.partition_count,
                    other: serde_json::Map::new(),
                });
                Ok(())
            })
            .await?;
            let created = config
                .endpoints
                .event_hubs
                .iter()
                .find(|e| e.name == a.endpoint_name)
                .context("the server did not keep the endpoint")?;
            Ok(Some(serde_json::to_value(created)?))
        }
        MessageEndpointCommand::List(a) => {
            let (config, _) = client.get_routing().await?;
            let all = serde_json::to_value(&config.endpoints)?;
            match &a.endpoint_type {
                None => Ok(Some(all)),
                Some(t) => {
                    let (_, field) = KINDS
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(t))
                        .with_context(|| format!("--endpoint-type '{t}' is not known"))?;
                    Ok(Some(all.get(*field).cloned().unwrap_or_else(|| json!([]))))
                }
            }
        }
        MessageEndpointCommand::Show(a) => {
            let (config, _) = client.get_routing().await?;
            let all = serde_json::to_value(&config.endpoints)?;
            all.as_object()
                .into_iter()
                .flat_map(|kinds| kinds.values())
                .filter_map(Value::as_array)
                .flatten()
                .find(|e| {
                    e.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(&a.endpoint_name))
                })
                .cloned()
                .map(Some)
                .with_context(|| format!("there is no endpoint named '{}'", a.endpoint_name))
        }
        MessageEndpointCommand::Health(a) => {
            let mut list = client.endpoint_health().await?;
            let Some(name) = &a.endpoint_name else {
                return Ok(Some(serde_json::to_value(list.value)?));
            };
            list.value
                .retain(|h| h.endpoint_id.eq_ignore_ascii_case(name));
            let one = list.value.pop().with_context(|| {
                format!("there is no file, webhook or NATS endpoint named '{name}'")
            })?;
            Ok(Some(serde_json::to_value(one)?))
        }
        MessageEndpointCommand::Delete(a) => {
            edit(&client, |c| {
                let name = &a.endpoint_name;
                let is = |n: Option<&str>| n.is_some_and(|n| n.eq_ignore_ascii_case(name));
                let before = c.endpoints.event_hubs.len()
                    + c.endpoints.storage_containers.len()
                    + c.endpoints.webhooks.len()
                    + c.endpoints.nats_subjects.len();
                c.endpoints.event_hubs.retain(|e| !is(Some(&e.name)));
                for list in [
                    &mut c.endpoints.storage_containers,
                    &mut c.endpoints.webhooks,
                    &mut c.endpoints.nats_subjects,
                ] {
                    list.retain(|e| !is(e.get("name").and_then(Value::as_str)));
                }
                let after = c.endpoints.event_hubs.len()
                    + c.endpoints.storage_containers.len()
                    + c.endpoints.webhooks.len()
                    + c.endpoints.nats_subjects.len();
                if after == before {
                    bail!("there is no endpoint named '{name}'");
                }
                Ok(())
            })
            .await?;
            Ok(None)
        }
    }
}

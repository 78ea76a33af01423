//! `ironhub dps linked-hub …`: the hubs DPS assigns devices to, with the flags of
//! `az iot dps linked-hub …` (azure-cli). In Azure linked hubs are part of the DPS's ARM
//! resource; ironhub serves them as `/dps/linkedHubs`, so these commands work against ironhub
//! only. A hub is named by its host name; the answers never show its key
//! (`SharedAccessKey=****`).

use anyhow::bail;
use clap::{ArgAction, Args, Subcommand};
use ironhub_client::DpsClient;
use ironhub_dps::hubs::linked_hub_name;
use ironhub_wire::dps::{LinkedHubSpec, LinkedHubView};
use serde_json::Value;

/// `ironhub dps linked-hub <command>`
#[derive(Debug, Subcommand)]
pub enum LinkedHubCommand {
    /// Link a hub by an owner-level connection string of it.
    Create(CreateArgs),
    /// List the linked hubs.
    List,
    /// Show a linked hub.
    Show(HubArg),
    /// Change a link: its allocation weight, whether the allocation policy applies, its
    /// location or its connection string (what the flags name changes).
    Update(UpdateArgs),
    /// Unlink a hub (devices already assigned to it stay there).
    Delete(HubArg),
}

/// `--linked-hub`
#[derive(Debug, Clone, Args)]
pub struct HubArg {
    /// The linked hub's host name (e.g. myhub.azure-devices.net).
    #[arg(long = "linked-hub")]
    pub linked_hub: String,
}

/// The settings of a link.
#[derive(Debug, Clone, Args, Default)]
pub struct LinkFlags {
    /// The hub's weight in evenly weighted (hashed) allocation [default: 1].
    #[arg(long = "allocation-weight")]
    pub allocation_weight: Option<u32>,
    /// Whether allocation policies may pick this hub for enrollments that do not name their
    /// hubs (`--apply-allocation-policy` alone means true) [default: true].
    #[arg(
        long = "apply-allocation-policy",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub apply_allocation_policy: Option<bool>,
    /// Where the hub is (informational).
    #[arg(long = "location")]
    pub location: Option<String>,
}

/// `linked-hub create`
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The hub's connection string, of a policy with registry write and service connect rights
    /// (iothubowner): HostName=…;SharedAccessKeyName=iothubowner;SharedAccessKey=….
    #[arg(long = "connection-string", visible_alias = "cs")]
    pub connection_string: String,
    #[command(flatten)]
    pub link: LinkFlags,
}

/// `linked-hub update`
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub hub: HubArg,
    /// A new connection string for the hub (e.g. after a key rotation) [default: keep].
    #[arg(long = "connection-string", visible_alias = "cs")]
    pub connection_string: Option<String>,
    #[command(flatten)]
    pub link: LinkFlags,
}

/// Runs a `linked-hub` command; `None` when it prints nothing (delete).
pub async fn run(client: &DpsClient, command: LinkedHubCommand) -> anyhow::Result<Option<Value>> {
    let shown = match command {
        LinkedHubCommand::Create(a) => {
            let name = hub_name(&a.connection_string)?;
            let body = LinkedHubSpec {
                connection_string: Some(a.connection_string),
                ..link_body(None, &a.link)
            };
            let linked = client.put_linked_hub(&name, &body, None).await?;
            warn_if_unreached(&linked, &name);
            serde_json::to_value(linked)?
        }
        LinkedHubCommand::List => serde_json::to_value(client.list_linked_hubs().await?)?,
        LinkedHubCommand::Show(a) => {
            serde_json::to_value(client.get_linked_hub(&a.linked_hub).await?)?
        }
        LinkedHubCommand::Update(a) => {
            let current = client.get_linked_hub(&a.hub.linked_hub).await?;
            let mut body = link_body(Some(&current), &a.link);
            if let Some(cs) = a.connection_string {
                let name = hub_name(&cs)?;
                if !name.eq_ignore_ascii_case(a.hub.linked_hub.trim()) {
                    bail!(
                        "the connection string is for '{name}', not for the linked hub '{}'",
                        a.hub.linked_hub
                    );
                }
                body.connection_string = Some(cs);
            }
            // Compare-and-swap on what was read; the name is the one the DPS links it by.
            let name = match current.hub.name.as_str() {
                "" => a.hub.linked_hub.as_str(),
                name => name,
            };
            let etag = current.hub.etag.as_deref().unwrap_or("*");
            let linked = client.put_linked_hub(name, &body, Some(etag)).await?;
            warn_if_unreached(&linked, name);
            serde_json::to_value(linked)?
        }
        LinkedHubCommand::Delete(a) => {
            client.delete_linked_hub(&a.linked_hub, None).await?;
            return Ok(None);
        }
    };
    Ok(Some(shown))
}

/// The link's settings: the flags' where given, else `current`'s (a `PUT` replaces them all).
fn link_body(current: Option<&LinkedHubView>, flags: &LinkFlags) -> LinkedHubSpec {
    LinkedHubSpec {
        connection_string: None,
        allocation_weight: flags
            .allocation_weight
            .or_else(|| current.and_then(|c| c.hub.allocation_weight)),
        apply_allocation_policy: flags
            .apply_allocation_policy
            .or_else(|| current.and_then(|c| c.hub.apply_allocation_policy)),
        location: flags
            .location
            .clone()
            .or_else(|| current.and_then(|c| c.hub.location.clone())),
    }
}

/// The name a hub is linked by: its connection string's host name, without a port (the
/// DPS's own rule, so a string the server would refuse is refused before any call).
fn hub_name(connection_string: &str) -> anyhow::Result<String> {
    linked_hub_name(connection_string).map_err(|e| anyhow::anyhow!("--connection-string: {e}"))
}

/// ironhub answers a link with the round trip it just measured (`latencyMs`); without one the
/// hub did not answer (a hub it could not trust, or that refused the key, is refused outright).
fn warn_if_unreached(linked: &LinkedHubView, name: &str) {
    if linked.latency_ms.is_none() {
        eprintln!(
            "warning: the server could not reach the hub '{name}' just now (its log says why); \
             it is linked, but devices cannot be assigned to it until it answers"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hubs_are_named_by_their_host_without_port() {
        assert_eq!(
            hub_name(
                "HostName=hub2.example:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5"
            )
            .unwrap(),
            "hub2.example"
        );
        assert!(hub_name("HostName=h;DeviceId=d;SharedAccessKey=a2V5").is_err());
        assert!(hub_name("HostName=h;SharedAccessKeyName=iothubowner").is_err());
    }

    #[test]
    fn updates_keep_the_settings_they_do_not_name() {
        let current: LinkedHubView = serde_json::from_value(
            json!({"name": "h", "allocationWeight": 3, "applyAllocationPolicy": false,
                   "location": null, "connectionString": "HostName=h;SharedAccessKey=****"}),
        )
        .unwrap();
        let flags = LinkFlags {
            location: Some("lab".into()),
            ..LinkFlags::default()
        };
        assert_eq!(
            serde_json::to_value(link_body(Some(&current), &flags)).unwrap(),
            json!({"allocationWeight": 3, "applyAllocationPolicy": false, "location": "lab"})
        );
    }
}

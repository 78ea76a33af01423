//! `ironhub dps linked-hub …`: the hubs DPS assigns devices to, with the flags of
//! `az iot dps linked-hub …` (azure-cli). In Azure linked hubs are part of the DPS's ARM
//! resource; ironhub serves them as `/dps/linkedHubs`, so these commands work against ironhub
//! only. A hub is named by its host name; the answers never show its key
//! (`SharedAccessKey=****`).

use anyhow::{Context as _, bail};
use clap::{ArgAction, Args, Subcommand};
use ironhub_auth::ConnectionString;
use ironhub_client::{DpsClient, host_without_port};
use serde_json::{Map, Value};

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
    Ok(match command {
        LinkedHubCommand::Create(a) => {
            let name = hub_name(&a.connection_string)?;
            let mut body = link_body(&Map::new(), &a.link);
            body.insert("connectionString".into(), a.connection_string.into());
            let linked = client
                .put_linked_hub(&name, &Value::Object(body), None)
                .await?;
            warn_if_unreached(&linked, &name);
            Some(linked)
        }
        LinkedHubCommand::List => Some(Value::Array(client.list_linked_hubs().await?)),
        LinkedHubCommand::Show(a) => Some(client.get_linked_hub(&a.linked_hub).await?),
        LinkedHubCommand::Update(a) => {
            let current = client.get_linked_hub(&a.hub.linked_hub).await?;
            let Some(current) = current.as_object() else {
                bail!("the DPS answered with a linked hub that is not a JSON object");
            };
            let mut body = link_body(current, &a.link);
            if let Some(cs) = a.connection_string {
                let name = hub_name(&cs)?;
                if !name.eq_ignore_ascii_case(a.hub.linked_hub.trim()) {
                    bail!(
                        "the connection string is for '{name}', not for the linked hub '{}'",
                        a.hub.linked_hub
                    );
                }
                body.insert("connectionString".into(), cs.into());
            }
            // Compare-and-swap on what was read; the name is the one the DPS links it by.
            let name = current
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&a.hub.linked_hub)
                .to_owned();
            let etag = current.get("etag").and_then(Value::as_str).unwrap_or("*");
            let linked = client
                .put_linked_hub(&name, &Value::Object(body), Some(etag))
                .await?;
            warn_if_unreached(&linked, &name);
            Some(linked)
        }
        LinkedHubCommand::Delete(a) => {
            client.delete_linked_hub(&a.linked_hub, None).await?;
            None
        }
    })
}

/// The link's settings: the flags' where given, else `current`'s (a `PUT` replaces them all).
fn link_body(current: &Map<String, Value>, flags: &LinkFlags) -> Map<String, Value> {
    let mut body = Map::new();
    let keep = |key: &str| current.get(key).filter(|v| !v.is_null()).cloned();
    let weight = flags
        .allocation_weight
        .map(Value::from)
        .or_else(|| keep("allocationWeight"));
    let apply = flags
        .apply_allocation_policy
        .map(Value::from)
        .or_else(|| keep("applyAllocationPolicy"));
    let location = flags
        .location
        .clone()
        .map(Value::from)
        .or_else(|| keep("location"));
    for (key, value) in [
        ("allocationWeight", weight),
        ("applyAllocationPolicy", apply),
        ("location", location),
    ] {
        if let Some(v) = value {
            body.insert(key.into(), v);
        }
    }
    body
}

/// The name a hub is linked by: its connection string's host name, without a port.
fn hub_name(connection_string: &str) -> anyhow::Result<String> {
    let cs = ConnectionString::parse(connection_string)
        .context("--connection-string is not a connection string")?;
    if cs.device_id.is_some() {
        bail!(
            "--connection-string is a device connection string; linking a hub needs an \
             owner-level policy's (HostName=…;SharedAccessKeyName=iothubowner;SharedAccessKey=…)"
        );
    }
    if cs
        .shared_access_key_name
        .as_deref()
        .is_none_or(str::is_empty)
        || cs.shared_access_key.as_deref().is_none_or(str::is_empty)
    {
        bail!("--connection-string needs SharedAccessKeyName and SharedAccessKey");
    }
    let host = host_without_port(cs.host_name.trim());
    if host.is_empty() {
        bail!("--connection-string has no HostName");
    }
    Ok(host.to_owned())
}

/// ironhub answers a link with the round trip it just measured (`latencyMs`); without one the
/// hub did not answer (a hub it could not trust, or that refused the key, is refused outright).
fn warn_if_unreached(linked: &Value, name: &str) {
    if linked.get("connectionString").is_some() && linked.get("latencyMs").is_none() {
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
        let current = json!({"name": "h", "allocationWeight": 3, "applyAllocationPolicy": false,
                             "location": null, "connectionString": "HostName=h;SharedAccessKey=****"});
        let flags = LinkFlags {
            location: Some("lab".into()),
            ..LinkFlags::default()
        };
        assert_eq!(
            Value::Object(link_body(current.as_object().unwrap(), &flags)),
            json!({"allocationWeight": 3, "applyAllocationPolicy": false, "location": "lab"})
        );
    }
}

//! `ironhub hub device-identity children add|list|remove` and `parent show|set`: IoT Edge
//! parent and child devices, with the semantics and flags of az's commands. A child that is
//! an Edge device names its parent in `parentScopes`; any other child sets its `deviceScope`
//! to the parent's (the hub derives `parentScopes` from it).

use anyhow::{Context as _, bail};
use clap::{ArgAction, Args, Subcommand};
use ironhub_client::HubClient;
use ironhub_hub::scopes::scope_device_id;
use ironhub_wire::hub::{Device, DeviceSpec};
use serde_json::Value;

use crate::cli::login::Session;

/// `ironhub hub device-identity children <command>`
#[derive(Debug, Subcommand)]
pub enum ChildrenCommand {
    /// Make devices children of an Edge device.
    Add(ChildrenAddArgs),
    /// List the ids of an Edge device's children.
    List(EdgeArgs),
    /// Remove children from an Edge device.
    Remove(ChildrenRemoveArgs),
}

/// `ironhub hub device-identity parent <command>`
#[derive(Debug, Subcommand)]
pub enum ParentCommand {
    /// Show a device's parent device.
    Show(ChildArgs),
    /// Set a device's parent device.
    Set(ParentSetArgs),
}

/// `-d`: the Edge device.
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// Id of the Edge device.
    #[arg(long = "device-id", short = 'd')]
    pub device_id: String,
}

/// `-d`: the child device.
#[derive(Debug, Clone, Args)]
pub struct ChildArgs {
    /// Id of the device.
    #[arg(long = "device-id", short = 'd')]
    pub device_id: String,
}

/// `children add`
#[derive(Debug, Clone, Args)]
pub struct ChildrenAddArgs {
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// Child device ids (space separated).
    #[arg(long = "child-list", visible_alias = "cl", num_args = 1.., required = true, action = ArgAction::Append)]
    pub child_list: Vec<String>,
    /// Overwrite a child's existing parent.
    #[arg(long = "force", short = 'f')]
    pub force: bool,
}

/// `children remove`
#[derive(Debug, Clone, Args)]
pub struct ChildrenRemoveArgs {
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// Child device ids (space separated).
    #[arg(long = "child-list", visible_alias = "cl", num_args = 1.., action = ArgAction::Append)]
    pub child_list: Vec<String>,
    /// Remove every child.
    #[arg(long = "remove-all", short = 'a')]
    pub remove_all: bool,
}

/// `parent set`
#[derive(Debug, Clone, Args)]
pub struct ParentSetArgs {
    #[command(flatten)]
    pub child: ChildArgs,
    /// Id of the Edge device to be the parent.
    #[arg(long = "parent-device-id", visible_alias = "pd")]
    pub parent_id: String,
    /// Overwrite the device's existing parent.
    #[arg(long = "force", short = 'f')]
    pub force: bool,
}

/// Runs `children …`; `None` when there is nothing to print.
pub async fn children(
    session: &Session,
    command: &ChildrenCommand,
) -> anyhow::Result<Option<Value>> {
    let client = session.client()?;
    match command {
        ChildrenCommand::Add(a) => {
            let edge = edge_device(&client, &a.edge.device_id).await?;
            let mut children = Vec::new();
            for id in &a.child_list {
                let child = client.get_device(id.trim()).await?;
                check_no_parent(&child, a.force)?;
                children.push(child);
            }
            for child in children {
                set_parent(&client, &child, Some(scope_of(&edge)?)).await?;
            }
            Ok(None)
        }
        ChildrenCommand::List(a) => {
            let ids = list_children(&client, &a.device_id)
                .await?
                .into_iter()
                .map(|d| Value::String(d.device_id))
                .collect();
            Ok(Some(Value::Array(ids)))
        }
        ChildrenCommand::Remove(a) => {
            let children = if a.remove_all {
                let children = list_children(&client, &a.edge.device_id).await?;
                if children.is_empty() {
                    bail!(
                        "No registered child devices found for \"{}\" edge device.",
                        a.edge.device_id
                    );
                }
                children
            } else if !a.child_list.is_empty() {
                let edge = edge_device(&client, &a.edge.device_id).await?;
                let scope = scope_of(&edge)?;
                let mut children = Vec::new();
                for id in &a.child_list {
                    let child = client.get_device(id.trim()).await?;
                    let parents = parent_scopes(&child);
                    if parents.is_empty() {
                        bail!("Device \"{}\" doesn't have any parent device.", id.trim());
                    }
                    if parents != [scope] {
                        bail!(
                            "The entered child device \"{}\" isn't assigned as a child of edge device \"{}\"",
                            id.trim(),
                            a.edge.device_id
                        );
                    }
                    children.push(child);
                }
                children
            } else {
                bail!("Please specify child list or use --remove-all to remove all children.");
            };
            for child in children {
                set_parent(&client, &child, None).await?;
            }
            Ok(None)
        }
    }
}

/// Runs `parent …`; `None` when there is nothing to print.
pub async fn parent(session: &Session, command: &ParentCommand) -> anyhow::Result<Option<Value>> {
    let client = session.client()?;
    match command {
        ParentCommand::Show(a) => {
            let child = client.get_device(&a.device_id).await?;
            let parents = parent_scopes(&child);
            let Some(scope) = parents.first() else {
                bail!("Device \"{}\" doesn't have any parent device.", a.device_id);
            };
            let id = scope_device_id(scope)
                .with_context(|| format!("the parent scope '{scope}' does not name a device"))?;
            Ok(Some(serde_json::to_value(client.get_device(id).await?)?))
        }
        ParentCommand::Set(a) => {
            let edge = edge_device(&client, &a.parent_id).await?;
            let child = client.get_device(&a.child.device_id).await?;
            check_no_parent(&child, a.force)?;
            set_parent(&client, &child, Some(scope_of(&edge)?)).await?;
            Ok(None)
        }
    }
}

/// The device, which must be an Edge device.
async fn edge_device(client: &HubClient, id: &str) -> anyhow::Result<Device> {
    let device = client.get_device(id).await?;
    if !device.capabilities.iot_edge {
        bail!("The device \"{id}\" should be an edge device.");
    }
    Ok(device)
}

fn scope_of(edge: &Device) -> anyhow::Result<&str> {
    edge.device_scope
        .as_deref()
        .filter(|s| !s.is_empty())
        .context("the edge device has no deviceScope")
}

fn parent_scopes(device: &Device) -> Vec<&str> {
    device.parent_scopes.iter().map(String::as_str).collect()
}

fn check_no_parent(child: &Device, force: bool) -> anyhow::Result<()> {
    if !parent_scopes(child).is_empty() && !force {
        bail!(
            "The entered device \"{}\" already has a parent device, please use '--force' to overwrite",
            child.device_id
        );
    }
    Ok(())
}

/// What replaces `child` to give it the parent whose scope is `scope` (or none): the device
/// as read, with its scopes changed.
fn with_parent(child: &Device, scope: Option<&str>) -> DeviceSpec {
    let mut body = DeviceSpec::from(child);
    if child.capabilities.iot_edge {
        body.parent_scopes = Some(scope.into_iter().map(str::to_owned).collect());
    } else {
        // As az: only deviceScope changes; the hub derives parentScopes from it.
        body.device_scope = Some(scope.unwrap_or_default().to_owned());
    }
    body
}

/// Gives `child` the parent whose scope is `scope` (or none), written under its etag.
async fn set_parent(client: &HubClient, child: &Device, scope: Option<&str>) -> anyhow::Result<()> {
    if child.device_id.is_empty() {
        bail!("the hub's device has no deviceId");
    }
    let etag = Some(child.etag.as_str()).filter(|e| !e.is_empty());
    client
        .update_device(&child.device_id, &with_parent(child, scope), etag)
        .await?;
    Ok(())
}

/// The hub's devices whose parent is the Edge device `id`.
async fn list_children(client: &HubClient, id: &str) -> anyhow::Result<Vec<Device>> {
    let edge = edge_device(client, id).await?;
    let scope = scope_of(&edge)?.to_owned();
    let devices = client.list_devices(None).await?;
    Ok(devices
        .into_iter()
        .filter(|d| parent_scopes(d).contains(&scope.as_str()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn device(v: Value) -> Device {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_second_parent_needs_force() {
        let orphan = device(json!({"deviceId": "c", "parentScopes": []}));
        check_no_parent(&orphan, false).unwrap();
        let child = device(json!({"deviceId": "c", "parentScopes": ["ms-azure-iot-edge://e-1"]}));
        assert!(check_no_parent(&child, false).is_err());
        check_no_parent(&child, true).unwrap();
    }

    #[test]
    fn an_edge_child_names_its_parent_in_parent_scopes_any_other_in_device_scope() {
        let edge = device(json!({"deviceId": "e2", "capabilities": {"iotEdge": true},
            "deviceScope": "ms-azure-iot-edge://e2-1", "parentScopes": []}));
        let body = with_parent(&edge, Some("ms-azure-iot-edge://e-1"));
        assert_eq!(
            body.device_scope.as_deref(),
            Some("ms-azure-iot-edge://e2-1")
        );
        assert_eq!(
            body.parent_scopes,
            Some(vec!["ms-azure-iot-edge://e-1".to_owned()])
        );
        let leaf = device(
            json!({"deviceId": "c", "parentScopes": ["ms-azure-iot-edge://e-1"],
            "deviceScope": "ms-azure-iot-edge://e-1"}),
        );
        let body = with_parent(&leaf, None);
        assert_eq!(body.device_scope.as_deref(), Some(""));
    }
}

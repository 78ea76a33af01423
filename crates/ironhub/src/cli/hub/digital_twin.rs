//! `ironhub hub digital-twin …`: IoT Plug and Play digital twins, with the flags of
//! `az iot hub digital-twin`.

use anyhow::bail;
use clap::{Args, Subcommand};
use ironhub_client::Command;
use serde_json::Value;

use crate::cli::args::{DeviceIdArgs, json_arg};
use crate::cli::login::Session;

/// `ironhub hub digital-twin <command>`
#[derive(Debug, Subcommand)]
pub enum DigitalTwinCommand {
    /// Show a device's digital twin.
    Show(DeviceIdArgs),
    /// Update a digital twin's writable properties with a JSON Patch, then show it.
    Update(UpdateArgs),
    /// Invoke a root-level or a component's command on a device and print its answer.
    #[command(name = "invoke-command")]
    InvokeCommand(InvokeArgs),
}

/// `digital-twin update`
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub id: DeviceIdArgs,
    /// The JSON Patch (an operation or a list of them): JSON, or a file holding it.
    #[arg(long = "json-patch", visible_alias = "patch")]
    pub json_patch: String,
    /// The etag the twin must still have [default: any].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// `digital-twin invoke-command`
#[derive(Debug, Clone, Args)]
pub struct InvokeArgs {
    #[command(flatten)]
    pub id: DeviceIdArgs,
    /// The command's name.
    #[arg(long = "command-name", visible_alias = "cn")]
    pub command_name: String,
    /// The component the command belongs to [default: the root].
    #[arg(long = "component-path")]
    pub component_path: Option<String>,
    /// The command's payload: JSON, or a file holding it.
    #[arg(long = "payload", default_value = "{}")]
    pub payload: String,
    /// Seconds to wait for the device to connect (0 to 300).
    #[arg(long = "connect-timeout", visible_alias = "cto")]
    pub connect_timeout: Option<u64>,
    /// Seconds to wait for the device's answer (5 to 300).
    #[arg(long = "response-timeout", visible_alias = "rto")]
    pub response_timeout: Option<u64>,
}

/// Runs a `digital-twin` command.
pub async fn run(session: &Session, command: &DigitalTwinCommand) -> anyhow::Result<Value> {
    let client = session.client()?;
    match command {
        DigitalTwinCommand::Show(a) => Ok(client.get_digital_twin(&a.device_id).await?),
        DigitalTwinCommand::Update(a) => {
            let patch = match json_arg("--json-patch", &a.json_patch)? {
                Value::Array(ops) => Value::Array(ops),
                op @ Value::Object(_) => Value::Array(vec![op]),
                _ => bail!("--json-patch must be a JSON Patch operation or a list of them"),
            };
            client
                .update_digital_twin(&a.id.device_id, &patch, a.etag.as_deref())
                .await?;
            Ok(client.get_digital_twin(&a.id.device_id).await?)
        }
        DigitalTwinCommand::InvokeCommand(a) => {
            let command = Command {
                component: a.component_path.as_deref(),
                name: &a.command_name,
                payload: json_arg("--payload", &a.payload)?,
                connect_timeout: a.connect_timeout,
                response_timeout: a.response_timeout,
            };
            Ok(client.invoke_command(&a.id.device_id, &command).await?)
        }
    }
}

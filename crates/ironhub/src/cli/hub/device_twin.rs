//! `ironhub hub device-twin …`: show, update (merge) and replace a device twin.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use ironhub_wire::hub::{TwinPatch, TwinPatchProperties};
use serde_json::{Map, Value};

use crate::cli::args::{DeviceIdArgs, json_arg};
use crate::cli::login::Session;

/// `ironhub hub device-twin <command>`
#[derive(Debug, Subcommand)]
pub enum DeviceTwinCommand {
    /// Get a device twin.
    Show(DeviceIdArgs),
    /// Update a device twin's desired properties and tags (merged; `null` removes).
    Update(TwinUpdateArgs),
    /// Replace a device twin's desired properties and tags.
    Replace(TwinReplaceArgs),
}

/// `device-twin update`
#[derive(Debug, Clone, Args)]
pub struct TwinUpdateArgs {
    #[command(flatten)]
    pub id: DeviceIdArgs,
    /// Desired properties to merge: JSON, or a file holding it.
    #[arg(long = "desired")]
    pub desired: Option<String>,
    /// Tags to merge: JSON, or a file holding it.
    #[arg(long = "tags")]
    pub tags: Option<String>,
    /// The etag the twin must still have [default: any, "*"].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// `device-twin replace`
#[derive(Debug, Clone, Args)]
pub struct TwinReplaceArgs {
    #[command(flatten)]
    pub id: DeviceIdArgs,
    /// The new twin (`tags` and `properties.desired`): JSON, or a file holding it.
    #[arg(long = "json", short = 'j')]
    pub json: String,
    /// The etag the twin must still have [default: any, "*"].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// Runs an `ironhub hub device-twin` command.
pub async fn run(session: &Session, command: &DeviceTwinCommand) -> anyhow::Result<Value> {
    match command {
        DeviceTwinCommand::Show(a) => show(session, &a.device_id).await,
        DeviceTwinCommand::Update(a) => update(session, a).await,
        DeviceTwinCommand::Replace(a) => replace(session, a).await,
    }
}

/// `device-twin show`
async fn show(session: &Session, id: &str) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(session.client()?.get_twin(id).await?)?)
}

/// `device-twin update`: `PATCH /twins/{id}`.
async fn update(session: &Session, args: &TwinUpdateArgs) -> anyhow::Result<Value> {
    let patch = twin_patch(args.tags.as_deref(), args.desired.as_deref())?;
    let client = session.client()?;
    let twin = client
        .update_twin(&args.id.device_id, &patch, args.etag.as_deref(), false)
        .await?;
    Ok(serde_json::to_value(twin)?)
}

/// The twin patch of `--tags` and `--desired` (device and module twins alike).
pub(super) fn twin_patch(tags: Option<&str>, desired: Option<&str>) -> anyhow::Result<TwinPatch> {
    if desired.is_none() && tags.is_none() {
        bail!("nothing to update: give --desired and/or --tags");
    }
    Ok(TwinPatch {
        tags: tags.map(|t| object_arg("--tags", t)).transpose()?,
        properties: desired
            .map(|d| {
                Ok::<_, anyhow::Error>(TwinPatchProperties {
                    desired: Some(object_arg("--desired", d)?),
                })
            })
            .transpose()?,
    })
}

/// A JSON argument that must be an object (tags, desired properties).
fn object_arg(name: &str, text: &str) -> anyhow::Result<Map<String, Value>> {
    match json_arg(name, text)? {
        Value::Object(map) => Ok(map),
        _ => bail!("{name} must be a JSON object"),
    }
}

/// `device-twin replace`: `PUT /twins/{id}`.
async fn replace(session: &Session, args: &TwinReplaceArgs) -> anyhow::Result<Value> {
    let twin: TwinPatch = serde_json::from_value(json_arg("--json", &args.json)?)
        .context("--json must be a twin: {\"tags\": {…}, \"properties\": {\"desired\": {…}}}")?;
    let client = session.client()?;
    let twin = client
        .update_twin(&args.id.device_id, &twin, args.etag.as_deref(), true)
        .await?;
    Ok(serde_json::to_value(twin)?)
}

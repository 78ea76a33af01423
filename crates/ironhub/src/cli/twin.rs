//! `ironhub hub device-twin …` and `ironhub hub invoke-device-method`.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use ironhub_wire::hub::{MethodRequest, TwinPatch, TwinPatchProperties};
use serde_json::{Map, Value};

use super::hub::DeviceIdArgs;
use super::login::Session;

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

/// `invoke-device-method`
#[derive(Debug, Clone, Args)]
pub struct InvokeMethodArgs {
    #[command(flatten)]
    pub id: DeviceIdArgs,
    /// The method's name.
    #[arg(long = "method-name", visible_alias = "mn")]
    pub method_name: String,
    /// The method's payload: JSON, or a file holding it.
    #[arg(long = "method-payload", visible_alias = "mp", default_value = "{}")]
    pub method_payload: String,
    /// Seconds to wait for the device's answer (5 to 300).
    #[arg(long = "timeout", visible_aliases = ["to", "method-response-timeout", "mrt"], default_value_t = 30)]
    pub timeout: u64,
    /// Seconds to wait for the device to connect (0 to 300).
    #[arg(
        long = "method-connect-timeout",
        visible_alias = "mct",
        default_value_t = 0
    )]
    pub connect_timeout: u64,
}

/// A JSON argument, given inline or as the path of a file that holds it (as az takes them).
pub(crate) fn json_arg(name: &str, text: &str) -> anyhow::Result<Value> {
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let path = std::path::Path::new(text);
    if path.is_file() {
        let content =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {text}"))?;
        return serde_json::from_str(&content)
            .with_context(|| format!("{text} does not hold valid JSON for {name}"));
    }
    bail!("{name} must be JSON or the path of a file that holds JSON")
}

/// `device-twin show`
pub async fn show(session: &Session, id: &str) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(session.client()?.get_twin(id).await?)?)
}

/// `device-twin update`: `PATCH /twins/{id}`.
pub async fn update(session: &Session, args: &TwinUpdateArgs) -> anyhow::Result<Value> {
    if args.desired.is_none() && args.tags.is_none() {
        bail!("nothing to update: give --desired and/or --tags");
    }
    let patch = TwinPatch {
        tags: args
            .tags
            .as_deref()
            .map(|t| object_arg("--tags", t))
            .transpose()?,
        properties: args
            .desired
            .as_deref()
            .map(|d| {
                Ok::<_, anyhow::Error>(TwinPatchProperties {
                    desired: Some(object_arg("--desired", d)?),
                })
            })
            .transpose()?,
    };
    let client = session.client()?;
    let twin = client
        .update_twin(&args.id.device_id, &patch, args.etag.as_deref(), false)
        .await?;
    Ok(serde_json::to_value(twin)?)
}

/// A JSON argument that must be an object (tags, desired properties).
fn object_arg(name: &str, text: &str) -> anyhow::Result<Map<String, Value>> {
    match json_arg(name, text)? {
        Value::Object(map) => Ok(map),
        _ => bail!("{name} must be a JSON object"),
    }
}

/// `device-twin replace`: `PUT /twins/{id}`.
pub async fn replace(session: &Session, args: &TwinReplaceArgs) -> anyhow::Result<Value> {
    let twin: TwinPatch = serde_json::from_value(json_arg("--json", &args.json)?)
        .context("--json must be a twin: {\"tags\": {…}, \"properties\": {\"desired\": {…}}}")?;
    let client = session.client()?;
    let twin = client
        .update_twin(&args.id.device_id, &twin, args.etag.as_deref(), true)
        .await?;
    Ok(serde_json::to_value(twin)?)
}

/// `invoke-device-method`: `POST /twins/{id}/methods`, printing `{"payload": …, "status": …}`.
pub async fn invoke(session: &Session, args: &InvokeMethodArgs) -> anyhow::Result<Value> {
    let call = MethodRequest {
        method_name: Some(args.method_name.clone()),
        payload: json_arg("--method-payload", &args.method_payload)?,
        response_timeout_in_seconds: Some(i64::try_from(args.timeout)?),
        connect_timeout_in_seconds: Some(i64::try_from(args.connect_timeout)?),
    };
    let result = session
        .client()?
        .invoke_method(&args.id.device_id, &call)
        .await?;
    Ok(serde_json::to_value(result)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_arguments_inline_or_from_a_file() {
        assert_eq!(json_arg("x", r#"{"a":1}"#).unwrap(), json!({"a": 1}));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.json");
        std::fs::write(&file, r#"{"b":2}"#).unwrap();
        assert_eq!(
            json_arg("x", file.to_str().unwrap()).unwrap(),
            json!({"b": 2})
        );
        assert!(json_arg("--desired", "{oops").is_err());
    }
}

//! `ironhub hub module-twin …`: show, update (merge) and replace a module twin, and
//! `ironhub hub invoke-module-method`.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use http::Method;
use ironhub_client::{NO_BODY, twin_path};
use ironhub_wire::hub::{MethodRequest, MethodResult, Twin, TwinPatch};
use serde_json::Value;

use crate::cli::args::{ModuleIdArgs, json_arg};
use crate::cli::hub::device_twin::twin_patch;
use crate::cli::login::Session;

/// `ironhub hub module-twin <command>`
#[derive(Debug, Subcommand)]
pub enum ModuleTwinCommand {
    /// Get a module twin.
    Show(ModuleIdArgs),
    /// Update a module twin's desired properties and tags (merged; `null` removes).
    Update(UpdateArgs),
    /// Replace a module twin's desired properties and tags.
    Replace(ReplaceArgs),
}

/// `module-twin update`
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub id: ModuleIdArgs,
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

/// `module-twin replace`
#[derive(Debug, Clone, Args)]
pub struct ReplaceArgs {
    #[command(flatten)]
    pub id: ModuleIdArgs,
    /// The new twin (`tags` and `properties.desired`): JSON, or a file holding it.
    #[arg(long = "json", short = 'j')]
    pub json: String,
    /// The etag the twin must still have [default: any, "*"].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// `invoke-module-method`
#[derive(Debug, Clone, Args)]
pub struct InvokeModuleMethodArgs {
    #[command(flatten)]
    pub id: ModuleIdArgs,
    /// The method's name.
    #[arg(long = "method-name", visible_alias = "mn")]
    pub method_name: String,
    /// The method's payload: JSON, or a file holding it.
    #[arg(long = "method-payload", visible_alias = "mp", default_value = "{}")]
    pub method_payload: String,
    /// Seconds to wait for the module's answer (5 to 300).
    #[arg(long = "timeout", visible_aliases = ["to", "method-response-timeout", "mrt"], default_value_t = 30)]
    pub timeout: u64,
}

/// `/twins/{id}/modules/{mid}`, each id percent-encoded.
fn module_twin_path(id: &ModuleIdArgs) -> String {
    let module = twin_path(&id.module_id);
    format!(
        "{}/modules/{}",
        twin_path(&id.device_id),
        &module["/twins/".len()..]
    )
}

/// Runs an `ironhub hub module-twin` command.
pub async fn run(session: &Session, command: &ModuleTwinCommand) -> anyhow::Result<Value> {
    let (id, patch, etag, method) = match command {
        ModuleTwinCommand::Show(id) => {
            let twin: Twin = session
                .client()?
                .request(Method::GET, &module_twin_path(id), &[], NO_BODY, None)
                .await?;
            return Ok(serde_json::to_value(twin)?);
        }
        ModuleTwinCommand::Update(a) => {
            let patch = twin_patch(a.tags.as_deref(), a.desired.as_deref())?;
            (&a.id, patch, &a.etag, Method::PATCH)
        }
        ModuleTwinCommand::Replace(a) => {
            let twin: TwinPatch = serde_json::from_value(json_arg("--json", &a.json)?).context(
                "--json must be a twin: {\"tags\": {…}, \"properties\": {\"desired\": {…}}}",
            )?;
            (&a.id, twin, &a.etag, Method::PUT)
        }
    };
    let twin: Twin = session
        .client()?
        .request(
            method,
            &module_twin_path(id),
            &[],
            Some(&patch),
            Some(etag.as_deref().unwrap_or("*")),
        )
        .await?;
    Ok(serde_json::to_value(twin)?)
}

/// Runs `invoke-module-method`: `POST /twins/{id}/modules/{mid}/methods`, printing
/// `{"payload": …, "status": …}`.
pub async fn invoke(session: &Session, args: &InvokeModuleMethodArgs) -> anyhow::Result<Value> {
    let call = MethodRequest {
        method_name: Some(args.method_name.clone()),
        payload: json_arg("--method-payload", &args.method_payload)?,
        response_timeout_in_seconds: Some(i64::try_from(args.timeout)?),
        connect_timeout_in_seconds: Some(0),
    };
    let path = format!("{}/methods", module_twin_path(&args.id));
    let result: MethodResult = session
        .client()?
        .request_within(
            Method::POST,
            &path,
            &[],
            Some(&call),
            None,
            std::time::Duration::from_secs(args.timeout + 15),
        )
        .await?;
    Ok(serde_json::to_value(result)?)
}

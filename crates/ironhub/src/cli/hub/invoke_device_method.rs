//! `ironhub hub invoke-device-method`: call a device's direct method through the hub.

use clap::Args;
use ironhub_wire::hub::MethodRequest;
use serde_json::Value;

use crate::cli::args::{DeviceIdArgs, json_arg};
use crate::cli::login::Session;

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

/// Runs `invoke-device-method`: `POST /twins/{id}/methods`, printing `{"payload": …, "status": …}`.
pub async fn run(session: &Session, args: &InvokeMethodArgs) -> anyhow::Result<Value> {
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

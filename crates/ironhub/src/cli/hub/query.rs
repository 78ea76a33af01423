//! `ironhub hub query`: an IoT Hub query (`POST /devices/query`), as `az iot hub query` runs
//! it: every page, following `x-ms-continuation`, until the answer ends or `--top` items
//! are read; printed as one JSON list.

use anyhow::bail;
use clap::Args;
use serde_json::Value;

use crate::cli::login::Session;

/// `ironhub hub query`
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The query, in IoT Hub's query language (e.g. "SELECT * FROM devices WHERE
    /// properties.reported.powerState = '0'").
    #[arg(long = "query-command", short = 'q')]
    pub query: String,
    /// Maximum number of items to return [default: no cap; -1 also means no cap].
    #[arg(long = "top", allow_negative_numbers = true)]
    pub top: Option<i64>,
}

/// Runs the query and returns every item it answered.
pub async fn run(session: &Session, args: &QueryArgs) -> anyhow::Result<Value> {
    let top = match args.top {
        None | Some(-1) => None,
        Some(n) if n > 0 => usize::try_from(n).ok(),
        Some(n) => bail!("--top must be a positive number, or -1 for no cap (got {n})"),
    };
    let items = session.client()?.query_twins(&args.query, top).await?;
    Ok(Value::Array(items))
}

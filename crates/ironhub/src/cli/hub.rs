//! `ironhub hub …` (mirrors `az iot hub …`). Being written.

use clap::Args;

/// `ironhub hub`
#[derive(Debug, Args)]
pub struct HubArgs {}

/// Runs an `ironhub hub` command.
pub async fn run(_args: HubArgs) -> anyhow::Result<()> {
    anyhow::bail!("the hub commands are not built yet")
}

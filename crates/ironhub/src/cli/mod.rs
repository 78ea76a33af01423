//! The az-style CLI. It talks to a hub (and a DPS instance) only through the Azure-compatible
//! REST API, so it works against a real Azure IoT Hub (and DPS) too.
//!
//! Each command group is one module that owns its flags (clap) and its handler: `hub`,
//! `device` and `dps` (each composing its own groups in the same way), `info`, `migrate`, `simulate` (the engine is `ironhub_simulate`'s), and `serve`
//! (flags in [`crate::config`], handler in [`crate::serve`]). [`Cli`] composes them. The
//! helpers they share (`args`, `login`, `output`, `sas`, and `certificate`, the certificate
//! group both `hub` and `dps` mount) import no command module.

use clap::{Parser, Subcommand};

use crate::{config, serve};

mod args;
mod certificate;
mod configuration;
pub mod device;
pub mod dps;
pub mod hub;
pub mod info;
mod login;
pub mod migrate;
mod network_rule;
mod output;
mod sas;
pub mod simulate;

/// `ironhub`: the server and its CLI, as one command tree.
#[derive(Debug, Parser)]
#[command(
    name = "ironhub",
    version,
    about = "A self-hosted, wire-compatible Azure IoT Hub and Device Provisioning Service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `ironhub <command>`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<config::ServeArgs>),
    /// Print the hub's host name, connection string and CA certificate path.
    Info(info::InfoArgs),
    /// Apply a cluster's PostgreSQL schema migrations (`--store`) without starting a server; with
    /// `--from DATA_DIR`, move a stopped single-machine hub into the (empty) cluster.
    Migrate(migrate::MigrateArgs),
    /// IoT Hub commands, as `az iot hub`.
    Hub(hub::HubArgs),
    /// Device commands, as `az iot device` (cloud-to-device messages, file upload).
    Device(device::DeviceArgs),
    /// IoT Edge commands, as `az iot edge` (set-modules, deployments).
    Edge(configuration::EdgeArgs),
    /// Device Provisioning Service commands, as `az iot dps`.
    Dps(dps::DpsArgs),
    /// A fleet of simulated devices against a hub (or any MQTT broker), with a load report.
    Simulate(simulate::SimulateArgs),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Info(args) => info::run(&args).await,
        Command::Migrate(args) => migrate::run(&args).await,
        Command::Hub(args) => hub::run(args).await,
        Command::Device(args) => device::run(args).await,
        Command::Edge(args) => configuration::run_edge(args).await,
        Command::Dps(args) => dps::run(args).await,
        Command::Simulate(args) => simulate::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}

//! `ironhub hub …`: the command tree, flag names and short aliases of `az iot hub …` (the
//! azure-iot CLI extension), for the commands ironhub supports. Each command group is a
//! module that owns its flags and its handler; this one composes them.

use clap::{Args, Subcommand};

use crate::cli::certificate;
use crate::cli::login::{CommonArgs, Session};
use crate::cli::output;

mod connection_string;
mod consumer_group;
mod device_identity;
mod device_twin;
mod digital_twin;
mod generate_sas_token;
mod invoke_device_method;
mod job;
mod message_endpoint;
mod message_route;
mod module_identity;
mod module_twin;
mod monitor_events;
mod query;

/// `ironhub hub`
#[derive(Debug, Args)]
pub struct HubArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: HubCommand,
}

/// `ironhub hub <command>`
#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Manage IoT devices.
    #[command(name = "device-identity")]
    DeviceIdentity {
        #[command(subcommand)]
        command: device_identity::DeviceIdentityCommand,
    },
    /// Manage device twins.
    #[command(name = "device-twin")]
    DeviceTwin {
        #[command(subcommand)]
        command: device_twin::DeviceTwinCommand,
    },
    /// Manage IoT Plug and Play digital twins.
    #[command(name = "digital-twin")]
    DigitalTwin {
        #[command(subcommand)]
        command: digital_twin::DigitalTwinCommand,
    },
    /// Manage the modules of devices.
    #[command(name = "module-identity")]
    ModuleIdentity {
        #[command(subcommand)]
        command: module_identity::ModuleIdentityCommand,
    },
    /// Manage automatic device management configurations.
    Configuration {
        #[command(subcommand)]
        command: crate::cli::configuration::ConfigurationCommand,
    },
    /// Manage scheduled jobs (twin updates and direct methods on many devices).
    Job {
        #[command(subcommand)]
        command: job::JobCommand,
    },
    /// Manage module twins.
    #[command(name = "module-twin")]
    ModuleTwin {
        #[command(subcommand)]
        command: module_twin::ModuleTwinCommand,
    },
    /// Invoke a direct method on a module and print its answer.
    #[command(name = "invoke-module-method")]
    InvokeModuleMethod(module_twin::InvokeModuleMethodArgs),
    /// Invoke a direct method on a device and print its answer.
    #[command(name = "invoke-device-method")]
    InvokeDeviceMethod(invoke_device_method::InvokeMethodArgs),
    /// Monitor device telemetry as it reaches the hub (printed as az prints it).
    #[command(name = "monitor-events")]
    MonitorEvents(monitor_events::MonitorArgs),
    /// Manage the event endpoint's consumer groups (`--name/-n` is the group; the hub is
    /// `--hub-name`).
    #[command(name = "consumer-group")]
    ConsumerGroup {
        #[command(subcommand)]
        command: consumer_group::ConsumerGroupCommand,
    },
    /// Manage CA certificates for X.509 CA device authentication (`--name/-n` is the
    /// certificate; the hub is `--hub-name`).
    Certificate {
        #[command(subcommand)]
        command: certificate::CertificateCommand,
    },
    /// Manage message routes, the fallback route, and test routes against a sample message.
    #[command(name = "message-route")]
    MessageRoute {
        #[command(subcommand)]
        command: message_route::MessageRouteCommand,
    },
    /// Manage custom routing endpoints (event streams of this server).
    #[command(name = "message-endpoint")]
    MessageEndpoint {
        #[command(subcommand)]
        command: message_endpoint::MessageEndpointCommand,
    },
    /// Manage the hub's IP filter rules and public network access.
    #[command(name = "network-rule")]
    NetworkRule {
        #[command(subcommand)]
        command: crate::cli::network_rule::NetworkRuleCommand,
    },
    /// Manage message enrichments (application properties stamped per endpoint).
    #[command(name = "message-enrichment")]
    MessageEnrichment {
        #[command(subcommand)]
        command: message_route::MessageEnrichmentCommand,
    },
    /// Query the hub's device twins with IoT Hub's query language (every page, up to --top).
    Query(query::QueryArgs),
    /// Generate a SAS token for a device or for a hub shared access policy.
    #[command(name = "generate-sas-token")]
    GenerateSasToken(generate_sas_token::SasTokenArgs),
    /// Manage the hub's connection strings.
    #[command(name = "connection-string")]
    ConnectionString {
        #[command(subcommand)]
        command: connection_string::HubConnectionStringCommand,
    },
}

/// Runs an `ironhub hub` command.
pub async fn run(args: HubArgs) -> anyhow::Result<()> {
    let common = args.common;
    let format = common.output;
    let login = || Session::open(&common);
    let result = match args.command {
        HubCommand::DeviceIdentity { command } => {
            device_identity::run(&login().await?, &command).await?
        }
        HubCommand::DeviceTwin { command } => {
            Some(device_twin::run(&login().await?, &command).await?)
        }
        HubCommand::DigitalTwin { command } => {
            Some(digital_twin::run(&login().await?, &command).await?)
        }
        HubCommand::ModuleIdentity { command } => {
            module_identity::run(&login().await?, &command).await?
        }
        HubCommand::Configuration { command } => {
            crate::cli::configuration::run_configuration(&login().await?, command).await?
        }
        HubCommand::Job { command } => Some(job::run(&login().await?, &command).await?),
        HubCommand::ModuleTwin { command } => {
            Some(module_twin::run(&login().await?, &command).await?)
        }
        HubCommand::InvokeModuleMethod(a) => Some(module_twin::invoke(&login().await?, &a).await?),
        HubCommand::InvokeDeviceMethod(a) => {
            Some(invoke_device_method::run(&login().await?, &a).await?)
        }
        HubCommand::MonitorEvents(a) => {
            return monitor_events::run(&login().await?, &a, format).await;
        }
        HubCommand::ConsumerGroup { command } => {
            consumer_group::run(&login().await?, &command).await?
        }
        HubCommand::Certificate { command } => {
            certificate::run(login().await?.client()?.certificates(), &command).await?
        }
        HubCommand::MessageRoute { command } => {
            message_route::run(&login().await?, &command).await?
        }
        HubCommand::NetworkRule { command } => {
            let client = login().await?.client()?;
            let rules = crate::cli::network_rule::Rules::Hub(&client);
            Some(crate::cli::network_rule::run(rules, &command).await?)
        }
        HubCommand::MessageEndpoint { command } => {
            message_endpoint::run(&login().await?, &command).await?
        }
        HubCommand::MessageEnrichment { command } => {
            message_route::run_enrichment(&login().await?, &command).await?
        }
        HubCommand::Query(a) => Some(query::run(&login().await?, &a).await?),
        HubCommand::GenerateSasToken(a) => Some(generate_sas_token::run(&common, &a).await?),
        HubCommand::ConnectionString { command } => {
            Some(connection_string::run(&login().await?, &command)?)
        }
    };
    match result {
        Some(v) => output::print(&v, format),
        // Deletes print nothing.
        None => Ok(()),
    }
}

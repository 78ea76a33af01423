//! `ironhub`: the server (`ironhub serve`) and its az-style CLI in one binary.

use ironhub::{cli, config, identity, serve};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ironhub",
    version,
    about = "A self-hosted, wire-compatible Azure IoT Hub and Device Provisioning Service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(config::ServeArgs),
    /// Print the hub's host name, connection string and CA certificate path.
    Info {
        /// The server's data directory.
        #[arg(long, env = "IRONHUB_DATA_DIR", default_value = "ironhub-data")]
        data_dir: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// IoT Hub commands, as `az iot hub`.
    Hub(cli::hub::HubArgs),
    /// Device commands, as `az iot device` (cloud-to-device messages, file upload).
    Device(cli::c2d::DeviceArgs),
    /// Device Provisioning Service commands, as `az iot dps`.
    Dps(cli::dps::DpsArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Info { data_dir, json } => info(&data_dir, json).await,
        Command::Hub(args) => cli::hub::run(args).await,
        Command::Device(args) => cli::c2d::run(args).await,
        Command::Dps(args) => cli::dps::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
async fn info(data_dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let id = identity::Identity::load(data_dir).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&id.info_json()?)?);
    } else {
        println!("IoT Hub host name:  {}", id.endpoint.host_name);
        println!("Also answers to:    {}", id.endpoint.host_names.join(", "));
        println!("HTTPS port:         {}", id.endpoint.https_port);
        println!("MQTT port:          {}", id.endpoint.mqtt_port);
        println!(
            "Connection string:  {}",
            id.connection_string("iothubowner", false)?
        );
        if let Some(eh) = id.event_hub_compatible() {
            println!(
                "Event Hubs-compatible endpoint: {} (entity {})",
                eh.endpoint, eh.entity_path
            );
            println!("Event Hubs connection string:   {}", eh.connection_string);
        }
        if let Some(dps) = &id.dps {
            println!("DPS ID scope:       {}", dps.id_scope);
            println!(
                "DPS connection:     {}",
                id.dps_connection_string("provisioningserviceowner", false)?
            );
        }
        match id.own_certificate() {
            Some(cert) => println!(
                "TLS certificate:    {} (--tls-cert; trust the CA that issued it)",
                cert.display()
            ),
            None => println!("CA certificate:     {}", id.ca_certificate.display()),
        }
    }
    Ok(())
}

//! `ironhub info`: the hub's host name, connection strings (its own and its Event
//! Hubs-compatible endpoint's) and CA certificate path, read from the server's data directory
//! or, for a cluster, from its shared store (`--store`).

use std::path::PathBuf;

use clap::Args;

use crate::identity::Identity;

/// `ironhub info`
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The server's data directory.
    #[arg(long, env = "IRONHUB_DATA_DIR", default_value = "ironhub-data")]
    pub data_dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Read the hub of a cluster from its shared store (the `postgres://` URL of `serve
    /// --store`); the CA certificate is then written to `DATA_DIR/tls/ca.pem` if absent.
    #[arg(long = "store", env = "IRONHUB_STORE", hide_env_values = true)]
    pub store: Option<String>,
}

/// Runs `ironhub info`.
#[allow(clippy::print_stdout)]
pub async fn run(args: &InfoArgs) -> anyhow::Result<()> {
    let id = match crate::config::store_url(args.store.clone())? {
        Some(options) => Identity::load_shared(&options, &args.data_dir).await?,
        None => Identity::load(&args.data_dir).await?,
    };
    if args.json {
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

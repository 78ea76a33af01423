//! `ironhub hub generate-sas-token`: a device token signed with the device's key, or a hub
//! token signed with a shared access policy's key (or with a given connection string's key,
//! offline).

use anyhow::bail;
use clap::Args;
use serde_json::{Value, json};

use crate::cli::args::KeyType;
use crate::cli::login::{CommonArgs, Service, Session};
use crate::cli::sas;

/// `hub generate-sas-token`
#[derive(Debug, Clone, Args)]
pub struct SasTokenArgs {
    /// A device: sign `{host}/devices/{id}` with its key. Without it, sign the hub with a policy key.
    #[arg(long = "device-id", short = 'd')]
    pub device_id: Option<String>,
    /// Which key signs.
    #[arg(long = "key-type", visible_alias = "kt", value_enum, default_value_t = KeyType::Primary)]
    pub key_type: KeyType,
    /// How long the token is valid, in seconds.
    #[arg(long = "duration", visible_alias = "du", default_value_t = 3600)]
    pub duration: u64,
    /// The shared access policy that signs a hub token [default: iothubowner, or the login's
    /// own policy].
    #[arg(long = "policy-name", visible_alias = "pn")]
    pub policy_name: Option<String>,
    /// Sign directly with this connection string's key (a device or a policy connection
    /// string), without asking the hub.
    #[arg(long = "connection-string", visible_alias = "cs")]
    pub connection_string: Option<String>,
}

/// Runs `generate-sas-token`; logs in only when it needs the hub.
pub async fn run(common: &CommonArgs, args: &SasTokenArgs) -> anyhow::Result<Value> {
    match &args.connection_string {
        Some(cs) => sas::from_connection_string(cs, args.duration),
        None => generate(&Session::open(common).await?, args).await,
    }
}

/// `generate-sas-token`: with `-d`, a device token signed with the device's key (read from the
/// hub); without, a hub token signed with a shared access policy's key.
async fn generate(session: &Session, args: &SasTokenArgs) -> anyhow::Result<Value> {
    let expiry = sas::expiry(args.duration)?;
    let token = match &args.device_id {
        Some(id) => {
            if args.policy_name.is_some() {
                bail!(
                    "--policy-name signs hub tokens; a device token (-d) is signed with the device's key"
                );
            }
            let device = session.client()?.get_device(id).await?;
            let key = sas::device_key(&device, args.key_type)?;
            sas::device_token(session.host(), id, &key, expiry)?
        }
        None => {
            let policy = sas::policy_connection_string(
                session,
                Service::Hub,
                args.policy_name.as_deref(),
                args.key_type,
            )?;
            sas::hub_token(&policy, expiry)?
        }
    };
    Ok(json!({ "sas": token }))
}

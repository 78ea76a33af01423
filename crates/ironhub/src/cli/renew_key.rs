//! `ironhub hub device-identity renew-key`: new symmetric keys for devices, as
//! `az iot hub device-identity renew-key` makes them (IoT Hub's `POST /devices/keys/regenerate`
//! in batches of 100; `swap` exchanges one device's keys with an update).

use anyhow::{Context as _, bail};
use clap::{ArgAction, Args, ValueEnum};
use serde_json::{Value, json};

use super::login::Session;

/// How many devices one request names (az's batch size, IoT Hub's limit).
const BATCH: usize = 100;

/// `--key-type`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenewKeyType {
    Primary,
    Secondary,
    Both,
    /// Exchange the primary and secondary keys (one device only).
    Swap,
}

impl RenewKeyType {
    /// IoT Hub's `policyKey`.
    fn policy_key(self) -> &'static str {
        match self {
            RenewKeyType::Primary => "primaryKey",
            RenewKeyType::Secondary => "secondaryKey",
            RenewKeyType::Both | RenewKeyType::Swap => "both",
        }
    }
}

/// `device-identity renew-key`
#[derive(Debug, Clone, Args)]
pub struct RenewKeyArgs {
    /// Target devices (space separated); `*` for every device that uses symmetric keys.
    #[arg(long = "device-id", short = 'd', num_args = 1.., required = true, action = ArgAction::Append)]
    pub device_ids: Vec<String>,
    /// Which key to regenerate.
    #[arg(long = "key-type", visible_alias = "kt", value_enum)]
    pub key_type: RenewKeyType,
    /// Include the devices' modules (ironhub has no module identities, so this adds none).
    #[arg(
        long = "include-modules",
        visible_alias = "im",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub include_modules: Option<bool>,
    /// The etag the device must still have, for `swap` [default: "*"].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
    /// Hide the progress bar (there is none; accepted as az accepts it).
    #[arg(
        long = "no-progress",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub no_progress: Option<bool>,
}

/// Runs `renew-key`. One named device prints the device as it now is; several, or `*`, print
/// the combined result (`policyKey`, `rotatedKeys`, `errors`), as az does.
pub async fn run(session: &Session, args: &RenewKeyArgs) -> anyhow::Result<Value> {
    let client = session.client()?;
    let all = args.device_ids.iter().any(|d| d == "*");
    if args.key_type == RenewKeyType::Swap {
        let [id] = args.device_ids.as_slice() else {
            bail!("--key-type swap takes exactly one device: bulk key swap is not supported");
        };
        if all {
            bail!("--key-type swap takes exactly one device: bulk key swap is not supported");
        }
        let mut device = client.get_device(id).await?;
        swap_keys(&mut device)?;
        let etag = args.etag.as_deref().unwrap_or("*");
        return Ok(client.update_device(id, &device, Some(etag)).await?);
    }
    let ids: Vec<String> = if all {
        let devices = client.list_devices(None).await?;
        devices
            .as_array()
            .context("the hub answered GET /devices with something other than a JSON array")?
            .iter()
            .filter(|d| d["authentication"]["type"] == "sas")
            .filter_map(|d| d["deviceId"].as_str().map(str::to_owned))
            .collect()
    } else {
        args.device_ids.clone()
    };
    let mut combined = json!({
        "policyKey": args.key_type.policy_key(),
        "errors": [],
        "rotatedKeys": [],
    });
    for batch in ids.chunks(BATCH) {
        let devices: Vec<Value> = batch.iter().map(|id| json!({ "id": id })).collect();
        let body = json!({ "policyKey": args.key_type.policy_key(), "devices": devices });
        let result = client.regenerate_keys(&body).await?;
        for field in ["errors", "rotatedKeys"] {
            if let (Some(all), Some(more)) = (
                combined[field].as_array_mut(),
                result[field].as_array().cloned(),
            ) {
                all.extend(more);
            }
        }
    }
    if let [id] = args.device_ids.as_slice()
        && !all
    {
        if let Some(error) = combined["errors"].as_array().and_then(|e| e.first()) {
            bail!(
                "{}: {}",
                error["errorCode"].as_str().unwrap_or("error"),
                error["errorStatus"]
                    .as_str()
                    .unwrap_or("the key was not renewed")
            );
        }
        return Ok(client.get_device(id).await?);
    }
    Ok(combined)
}

/// Exchanges a key device's primary and secondary keys.
fn swap_keys(device: &mut Value) -> anyhow::Result<()> {
    let id = device["deviceId"]
        .as_str()
        .unwrap_or("the device")
        .to_owned();
    if device["authentication"]["type"] != "sas" {
        bail!("device '{id}' does not authenticate with symmetric keys (sas)");
    }
    let keys = &mut device["authentication"]["symmetricKey"];
    let primary = keys["primaryKey"].take();
    keys["primaryKey"] = keys["secondaryKey"].take();
    keys["secondaryKey"] = primary;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_exchanges_the_keys_of_sas_devices_only() {
        let mut d = json!({"deviceId": "d", "authentication": {"type": "sas",
            "symmetricKey": {"primaryKey": "cA==", "secondaryKey": "cw=="}}});
        swap_keys(&mut d).unwrap();
        assert_eq!(d["authentication"]["symmetricKey"]["primaryKey"], "cw==");
        assert_eq!(d["authentication"]["symmetricKey"]["secondaryKey"], "cA==");
        let mut x = json!({"deviceId": "x", "authentication": {"type": "selfSigned"}});
        assert!(swap_keys(&mut x).is_err());
    }

    #[test]
    fn key_types_name_iot_hubs_policy_keys() {
        assert_eq!(RenewKeyType::Primary.policy_key(), "primaryKey");
        assert_eq!(RenewKeyType::Secondary.policy_key(), "secondaryKey");
        assert_eq!(RenewKeyType::Both.policy_key(), "both");
    }
}

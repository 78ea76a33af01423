//! `ironhub hub device-identity renew-key`: new symmetric keys for devices, as
//! `az iot hub device-identity renew-key` makes them (IoT Hub's `POST /devices/keys/regenerate`
//! in batches of 100; `swap` exchanges one device's keys with an update).

use anyhow::bail;
use clap::{ArgAction, Args, ValueEnum};
use ironhub_wire::hub::{
    AuthType, Device, DeviceSpec, RegenerateRequest, RegenerateResult, RegenerateTarget,
};
use serde_json::Value;

use crate::cli::login::Session;

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
        let written = client
            .update_device(id, &DeviceSpec::from(&device), Some(etag))
            .await?;
        return Ok(serde_json::to_value(written)?);
    }
    let ids: Vec<String> = if all {
        let devices = client.list_devices(None).await?;
        devices
            .into_iter()
            .filter(|d| d.authentication.kind == AuthType::Sas)
            .map(|d| d.device_id)
            .collect()
    } else {
        args.device_ids.clone()
    };
    let policy_key = args.key_type.policy_key();
    let mut combined = RegenerateResult {
        policy_key: policy_key.to_owned(),
        ..RegenerateResult::default()
    };
    for batch in ids.chunks(BATCH) {
        let body = RegenerateRequest {
            policy_key: Some(policy_key.to_owned()),
            devices: Some(
                batch
                    .iter()
                    .map(|id| RegenerateTarget::device(id))
                    .collect(),
            ),
        };
        let result = client.regenerate_keys(&body).await?;
        combined.errors.extend(result.errors);
        combined.rotated_keys.extend(result.rotated_keys);
    }
    if let [id] = args.device_ids.as_slice()
        && !all
    {
        if let Some(error) = combined.errors.first() {
            bail!("{}: {}", error.error_code, error.error_status);
        }
        return Ok(serde_json::to_value(client.get_device(id).await?)?);
    }
    Ok(serde_json::to_value(combined)?)
}

/// Exchanges a key device's primary and secondary keys.
fn swap_keys(device: &mut Device) -> anyhow::Result<()> {
    if device.authentication.kind != AuthType::Sas {
        let id = match device.device_id.as_str() {
            "" => "the device",
            id => id,
        };
        bail!("device '{id}' does not authenticate with symmetric keys (sas)");
    }
    let keys = &mut device.authentication.symmetric_key;
    std::mem::swap(&mut keys.primary_key, &mut keys.secondary_key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn swap_exchanges_the_keys_of_sas_devices_only() {
        let device = |v: Value| -> Device { serde_json::from_value(v).unwrap() };
        let mut d = device(json!({"deviceId": "d", "authentication": {"type": "sas",
            "symmetricKey": {"primaryKey": "cA==", "secondaryKey": "cw=="}}}));
        swap_keys(&mut d).unwrap();
        let keys = &d.authentication.symmetric_key;
        assert_eq!(keys.primary_key.as_deref(), Some("cw=="));
        assert_eq!(keys.secondary_key.as_deref(), Some("cA=="));
        let mut x = device(json!({"deviceId": "x", "authentication": {"type": "selfSigned"}}));
        assert!(swap_keys(&mut x).is_err());
    }

    #[test]
    fn key_types_name_iot_hubs_policy_keys() {
        assert_eq!(RenewKeyType::Primary.policy_key(), "primaryKey");
        assert_eq!(RenewKeyType::Secondary.policy_key(), "secondaryKey");
        assert_eq!(RenewKeyType::Both.policy_key(), "both");
    }
}

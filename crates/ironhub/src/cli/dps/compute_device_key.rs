//! `ironhub dps enrollment-group compute-device-key` (and its deprecated alias `ironhub dps
//! compute-device-key`): a device's key in a symmetric key enrollment group.

use anyhow::{Context as _, bail};
use clap::Args;
use ironhub_client::{DpsClient, EnrollmentKind};
use serde_json::Value;

/// `compute-device-key`
#[derive(Debug, Clone, Args)]
pub struct ComputeKeyArgs {
    /// The device's registration id.
    #[arg(long = "registration-id", visible_alias = "rid")]
    pub registration_id: String,
    /// The enrollment group's symmetric key: computes offline, without a login or any other
    /// flag.
    #[arg(long = "symmetric-key", visible_alias = "key")]
    pub symmetric_key: Option<String>,
    /// The enrollment group whose primary key to read (needs a login).
    #[arg(long = "enrollment-id", visible_aliases = ["eid", "group-id", "gid"])]
    pub enrollment_id: Option<String>,
}

/// `compute-device-key`: `base64(HMAC-SHA256(base64decode(group key), registration id))`.
fn derive_key(group_key: &str, registration_id: &str) -> anyhow::Result<String> {
    if registration_id.trim().is_empty() {
        bail!("--registration-id is empty");
    }
    ironhub_auth::derive_device_key(group_key, registration_id)
        .map_err(|e| anyhow::anyhow!("the enrollment group key is not usable: {e}"))
}

/// The key computed offline from `--symmetric-key`, when given (no login needed).
pub fn offline(args: &ComputeKeyArgs) -> Option<anyhow::Result<Value>> {
    let key = args.symmetric_key.as_ref()?;
    Some(derive_key(key, &args.registration_id).map(Value::String))
}

/// `compute-device-key` with a login: the group's primary key, read with the attestation
/// mechanism call.
pub async fn run(client: &DpsClient, args: &ComputeKeyArgs) -> anyhow::Result<Value> {
    let Some(group) = &args.enrollment_id else {
        bail!(
            "pass the enrollment group's key with --symmetric-key (--key), or the group with \
             --enrollment-id (--gid) to read its key from the DPS"
        );
    };
    let mechanism = client
        .attestation_mechanism(EnrollmentKind::Group, group)
        .await?;
    if mechanism.kind != ironhub_wire::dps::AttestationType::SymmetricKey {
        bail!(
            "the enrollment group '{group}' attests by '{}'; compute-device-key needs a \
             symmetric key group",
            mechanism.kind.as_str()
        );
    }
    let key = mechanism
        .symmetric_key
        .as_ref()
        .and_then(|k| k.primary_key.as_deref())
        .with_context(|| format!("the enrollment group '{group}' has no primary key"))?;
    Ok(Value::String(derive_key(key, &args.registration_id)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_keys_are_derived_from_the_group_key() {
        // base64(HMAC-SHA256(b"key", b"dev1")), as Python's hmac computes it.
        assert_eq!(
            derive_key("a2V5", "dev1").unwrap(),
            "zyV7ZMEdEY/cs3bF16RUv8h6hYG/+VDerN/fOgkF2x4="
        );
        assert!(derive_key("!!", "dev1").is_err());
        assert!(derive_key("a2V5", " ").is_err());
    }
}

//! Bulk key regeneration (`POST /devices/keys/regenerate`, what `az iot hub device-identity
//! renew-key` calls): new symmetric keys for up to [`MAX_REGENERATE_DEVICES`] devices at once.

use std::collections::HashSet;

use ironhub_auth::generate_key;
use ironhub_store::{AuthType, DeviceWrite};
pub use ironhub_wire::hub::{
    RegenerateError, RegenerateRequest, RegenerateResult, RegenerateTarget, RotatedKeys,
};

use crate::{Hub, HubError};

/// Most devices one request may name (the Azure CLI sends batches of this size).
pub const MAX_REGENERATE_DEVICES: usize = 100;

/// Which keys to regenerate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Primary,
    Secondary,
    Both,
}

impl Which {
    fn parse(text: Option<&str>) -> Result<Self, HubError> {
        let t = text.unwrap_or_default();
        [
            ("primaryKey", Which::Primary),
            ("secondaryKey", Which::Secondary),
            ("both", Which::Both),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(t))
        .map(|(_, w)| w)
        .ok_or_else(|| {
            HubError::ArgumentInvalid(format!(
                "The policyKey '{t}' is not valid; use primaryKey, secondaryKey or both."
            ))
        })
    }

    fn wire_name(self) -> &'static str {
        match self {
            Which::Primary => "primaryKey",
            Which::Secondary => "secondaryKey",
            Which::Both => "both",
        }
    }
}

fn entry_error(target: &RegenerateTarget, e: &HubError) -> RegenerateError {
    RegenerateError {
        id: target.id.clone().unwrap_or_default(),
        module_id: target.module_id.clone(),
        error_code: e.name().to_owned(),
        error_status: e.to_string(),
    }
}

impl Hub {
    /// `POST /devices/keys/regenerate`: new keys (32 random bytes, as on creation) for every
    /// named device that authenticates with symmetric keys. Devices that cannot be re-keyed
    /// (unknown, not `sas`, modules, named twice) are reported in `errors`; the others are
    /// re-keyed together, in one write, and their connections closed as for any change of
    /// credentials. `Err` is for a request that is malformed as a whole.
    pub async fn regenerate_keys(
        &self,
        request: &RegenerateRequest,
    ) -> Result<RegenerateResult, HubError> {
        let which = Which::parse(request.policy_key.as_deref())?;
        let targets = request.devices.as_deref().unwrap_or_default();
        if targets.is_empty() {
            return Err(HubError::ArgumentNull(
                "The request names no devices.".into(),
            ));
        }
        if targets.len() > MAX_REGENERATE_DEVICES {
            return Err(HubError::ArgumentInvalid(format!(
                "A key regeneration takes at most {MAX_REGENERATE_DEVICES} devices, not {}.",
                targets.len()
            )));
        }
        // Compare-and-swap on what was read; a device changed meanwhile is read again.
        for _ in 0..5 {
            let mut errors = Vec::new();
            let mut writes = Vec::new();
            let mut seen = HashSet::new();
            for target in targets {
                match self.rekeyed(target, which, &mut seen).await {
                    Ok(w) => writes.push(w),
                    Err(e) => errors.push(entry_error(target, &e)),
                }
            }
            if writes.is_empty() || self.store.write_devices(writes.clone()).await?.is_ok() {
                let mut rotated = Vec::new();
                for w in writes {
                    if let DeviceWrite::Replace { record, .. } = w {
                        self.revoke(&record.device_id).await;
                        let keys = record.authentication.symmetric_key;
                        rotated.push(RotatedKeys {
                            id: record.device_id,
                            module_id: None,
                            primary_key: keys.primary_key.unwrap_or_default(),
                            secondary_key: keys.secondary_key.unwrap_or_default(),
                        });
                    }
                }
                return Ok(RegenerateResult {
                    policy_key: which.wire_name().to_owned(),
                    rotated_keys: rotated,
                    errors,
                });
            }
        }
        Err(HubError::ServerError(
            "The devices are being changed too often; try again.".into(),
        ))
    }

    /// The write that gives one device its new keys.
    async fn rekeyed(
        &self,
        target: &RegenerateTarget,
        which: Which,
        seen: &mut HashSet<String>,
    ) -> Result<DeviceWrite, HubError> {
        let id = target.id.as_deref().unwrap_or_default();
        if id.is_empty() {
            return Err(HubError::ArgumentNull("An entry has no device id.".into()));
        }
        if let Some(module) = &target.module_id {
            return Err(HubError::ArgumentInvalid(format!(
                "The module '{id}/{module}' cannot be re-keyed: ironhub has no module identities."
            )));
        }
        if !seen.insert(id.to_owned()) {
            return Err(HubError::DeviceDefinedMultipleTimes(format!(
                "The device '{id}' appears more than once in the request."
            )));
        }
        let mut record = self.device_record(id).await?;
        if record.authentication.kind != AuthType::Sas {
            return Err(HubError::ArgumentInvalid(format!(
                "The device '{id}' does not authenticate with symmetric keys."
            )));
        }
        let keys = &mut record.authentication.symmetric_key;
        if matches!(which, Which::Primary | Which::Both) {
            keys.primary_key = Some(generate_key(32));
        }
        if matches!(which, Which::Secondary | Which::Both) {
            keys.secondary_key = Some(generate_key(32));
        }
        let if_match = Some(record.etag.clone());
        Ok(DeviceWrite::Replace { record, if_match })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_keys() {
        assert_eq!(Which::parse(Some("primaryKey")).unwrap(), Which::Primary);
        assert_eq!(
            Which::parse(Some("SECONDARYKEY")).unwrap(),
            Which::Secondary
        );
        assert_eq!(Which::parse(Some("both")).unwrap(), Which::Both);
        for bad in [
            None,
            Some(""),
            Some("primary"),
            Some("Unknown"),
            Some("swap"),
        ] {
            assert_eq!(Which::parse(bad).unwrap_err().code(), 400_004, "{bad:?}");
        }
    }
}

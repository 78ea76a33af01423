//! The DPS instance's IP filter rules and public network access: kept and checked by the
//! hub domain's network rules (`ironhub_hub::network`, scope `Dps`), answered in DPS's errors.

use ironhub_hub::HubError;
use ironhub_hub::network;
use ironhub_store::NetworkScope;
use ironhub_wire::network::NetworkRules;

use crate::{Dps, DpsError};

/// A network rules error in DPS's words.
fn dps_error(e: HubError) -> DpsError {
    match e.status() {
        400 => DpsError::BadRequest(e.to_string()),
        412 => DpsError::PreconditionFailed(e.to_string()),
        _ => DpsError::ServerError(e.to_string()),
    }
}

impl Dps {
    /// The rules as written, with their etag (`None` before any were).
    pub async fn network_rules(&self) -> Result<(NetworkRules, Option<String>), DpsError> {
        network::load(self.store().as_ref(), NetworkScope::Dps)
            .await
            .map_err(dps_error)
    }

    /// Replaces the rules, compare-and-swap on `if_match`; bad rules change nothing (400).
    pub async fn set_network_rules(
        &self,
        rules: NetworkRules,
        if_match: Option<&str>,
    ) -> Result<(NetworkRules, String), DpsError> {
        let etag = network::save(self.store().as_ref(), NetworkScope::Dps, &rules, if_match)
            .await
            .map_err(dps_error)?;
        Ok((rules, etag))
    }
}

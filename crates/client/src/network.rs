//! Network rules: ironhub's `/networkRules` (the hub's) and `/dps/networkRules` (the DPS
//! instance's) paths, the IP filters and public network access with their etag, as
//! `ironhub hub network-rule …` and `ironhub dps network-rule …` use them.

use ironhub_wire::network::NetworkRules;

use crate::{ClientError, DpsClient, HubClient};

/// The hub's rules.
const HUB_PATH: &str = "/networkRules";
/// The DPS instance's rules.
const DPS_PATH: &str = "/dps/networkRules";

impl HubClient {
    /// `GET /networkRules`: the hub's rules and their etag (none before any were written).
    pub async fn get_network_rules(&self) -> Result<(NetworkRules, Option<String>), ClientError> {
        self.get_document(HUB_PATH).await
    }

    /// `PUT /networkRules`: replaces the hub's rules, compare-and-swap on `if_match`.
    pub async fn put_network_rules(
        &self,
        rules: &NetworkRules,
        if_match: Option<&str>,
    ) -> Result<NetworkRules, ClientError> {
        self.put_document(HUB_PATH, rules, if_match).await
    }
}

impl DpsClient {
    /// `GET /dps/networkRules`: the DPS instance's rules and their etag.
    pub async fn get_network_rules(&self) -> Result<(NetworkRules, Option<String>), ClientError> {
        self.http().get_document(DPS_PATH).await
    }

    /// `PUT /dps/networkRules`: replaces the DPS instance's rules, compare-and-swap on
    /// `if_match`.
    pub async fn put_network_rules(
        &self,
        rules: &NetworkRules,
        if_match: Option<&str>,
    ) -> Result<NetworkRules, ClientError> {
        self.http().put_document(DPS_PATH, rules, if_match).await
    }
}

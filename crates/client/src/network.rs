//! Network rules: ironhub's `/networkRules` (the hub's) and `/dps/networkRules` (the DPS
//! instance's) paths, the IP filters and public network access with their etag, as
//! `ironhub hub network-rule …` and `ironhub dps network-rule …` use them.

use bytes::Bytes;
use http::{HeaderValue, Method, header};
use ironhub_wire::network::NetworkRules;

use crate::{ClientError, DpsClient, HubClient, REQUEST_TIMEOUT, header_value, quote_etag};

/// The hub's rules.
const HUB_PATH: &str = "/networkRules";
/// The DPS instance's rules.
const DPS_PATH: &str = "/dps/networkRules";

impl HubClient {
    /// `GET /networkRules`: the hub's rules and their etag (none before any were written).
    pub async fn get_network_rules(&self) -> Result<(NetworkRules, Option<String>), ClientError> {
        self.network_rules_at(HUB_PATH).await
    }

    /// `PUT /networkRules`: replaces the hub's rules, compare-and-swap on `if_match`.
    pub async fn put_network_rules(
        &self,
        rules: &NetworkRules,
        if_match: Option<&str>,
    ) -> Result<NetworkRules, ClientError> {
        self.put_network_rules_at(HUB_PATH, rules, if_match).await
    }

    async fn network_rules_at(
        &self,
        path: &str,
    ) -> Result<(NetworkRules, Option<String>), ClientError> {
        let response = self
            .request_raw(
                Method::GET,
                path,
                &[],
                vec![],
                Bytes::new(),
                REQUEST_TIMEOUT,
            )
            .await?;
        let etag = response
            .header("etag")
            .map(|e| e.trim_matches('"').to_owned());
        Ok((response.json()?, etag))
    }

    async fn put_network_rules_at(
        &self,
        path: &str,
        rules: &NetworkRules,
        if_match: Option<&str>,
    ) -> Result<NetworkRules, ClientError> {
        let mut headers = vec![(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )];
        if let Some(etag) = if_match {
            headers.push((header::IF_MATCH, header_value(&quote_etag(etag))?));
        }
        let body = serde_json::to_vec(rules).map_err(|e| ClientError::Transport {
            host: self.host_name().to_owned(),
            detail: format!("cannot encode the request body: {e}"),
        })?;
        self.request_raw(
            Method::PUT,
            path,
            &[],
            headers,
            Bytes::from(body),
            REQUEST_TIMEOUT,
        )
        .await?
        .json()
    }
}

impl DpsClient {
    /// `GET /dps/networkRules`: the DPS instance's rules and their etag.
    pub async fn get_network_rules(&self) -> Result<(NetworkRules, Option<String>), ClientError> {
        self.http().network_rules_at(DPS_PATH).await
    }

    /// `PUT /dps/networkRules`: replaces the DPS instance's rules, compare-and-swap on
    /// `if_match`.
    pub async fn put_network_rules(
        &self,
        rules: &NetworkRules,
        if_match: Option<&str>,
    ) -> Result<NetworkRules, ClientError> {
        self.http()
            .put_network_rules_at(DPS_PATH, rules, if_match)
            .await
    }
}

//! Network access rules in the shape of the ARM resource properties of IoT Hub and DPS:
//! `publicNetworkAccess`, the ordered `ipFilterRules` and IoT Hub's newer `networkRuleSets`.
//! ironhub serves one such document for the hub and one for the DPS instance.

use serde::{Deserialize, Serialize};

/// `publicNetworkAccess`: whether connections from public networks are let in at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublicNetworkAccess {
    #[default]
    Enabled,
    Disabled,
}

/// What an `ipFilterRules` entry does with a matching address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpFilterAction {
    Accept,
    Reject,
}

/// Which endpoints a DPS `ipFilterRules` entry applies to (DPS's `target`; IoT Hub has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IpFilterTarget {
    All,
    ServiceApi,
    DeviceApi,
}

/// One entry of `ipFilterRules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpFilterRule {
    /// Unique in the list, compared case-insensitively.
    pub filter_name: String,
    pub action: IpFilterAction,
    /// One address or a CIDR block, IPv4 or IPv6.
    pub ip_mask: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<IpFilterTarget>,
}

/// `networkRuleSets.defaultAction`: what an address no `ipRules` entry allows gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DefaultAction {
    #[default]
    Deny,
    Allow,
}

/// `networkRuleSets.ipRules[].action`: IoT Hub knows only `Allow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkRuleAction {
    #[default]
    Allow,
}

/// One entry of `networkRuleSets.ipRules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRuleSetIpRule {
    pub filter_name: String,
    #[serde(default)]
    pub action: NetworkRuleAction,
    pub ip_mask: String,
}

/// IoT Hub's `networkRuleSets`: an allow list, a default action, and whether the built-in
/// Event Hubs-compatible endpoint is filtered too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRuleSetProperties {
    #[serde(default)]
    pub default_action: DefaultAction,
    #[serde(default)]
    pub apply_to_built_in_event_hub_endpoint: bool,
    #[serde(default)]
    pub ip_rules: Vec<NetworkRuleSetIpRule>,
}

/// The network rules of the hub or of the DPS instance (`GET/PUT /networkRules`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRules {
    #[serde(default)]
    pub public_network_access: PublicNetworkAccess,
    #[serde(default)]
    pub ip_filter_rules: Vec<IpFilterRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_rule_sets: Option<NetworkRuleSetProperties>,
}

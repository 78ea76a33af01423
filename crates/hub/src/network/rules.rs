//! The rules of one scope (the hub or the DPS instance) checked and compiled, and the decision
//! for one peer at one endpoint. Precedence, as IoT Hub and DPS document it:
//!
//! 1. a connection through a private endpoint is let in (IP filters apply to public traffic);
//! 2. with `publicNetworkAccess` `Disabled`, nothing else is, except this host's own
//!    loopback address (`127.0.0.1`, `::1`);
//! 3. with `networkRuleSets` (IoT Hub's newer filter): the first `ipRules` entry that
//!    matches allows, else `defaultAction` decides; the built-in Event Hubs-compatible
//!    endpoint only when `applyToBuiltInEventHubEndpoint`;
//! 4. else `ipFilterRules` in order: the first rule that matches (and, for DPS, whose
//!    `target` covers the endpoint) accepts or rejects; no match accepts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ironhub_wire::network::{
    DefaultAction, IpFilterAction, IpFilterTarget, NetworkRules, PublicNetworkAccess,
};

use super::cidr::Cidr;
use crate::HubError;

/// The most rules a list may hold (IoT Hub and DPS both stop at 100).
pub const MAX_RULES: usize = 100;

/// The longest rule name.
const MAX_NAME: usize = 128;

/// The characters a rule name may use besides ASCII letters and digits.
const NAME_SYMBOLS: &str = "-:/\\.+%_#*?!(),=@;'";

/// What a connection or request is for: which rules apply and which endpoint kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkEndpoint {
    /// The hub's device endpoints: MQTT, AMQP and HTTPS device routes, WebSocket.
    HubDevice,
    /// The hub's service REST routes (and AMQP service links).
    HubService,
    /// The built-in Event Hubs-compatible endpoint (AMQP `messages/events`, the REST stream).
    HubEventHub,
    /// The DPS device API (MQTT and HTTPS registrations).
    DpsDevice,
    /// The DPS service API.
    DpsService,
}

impl NetworkEndpoint {
    /// Every kind, for a listener that serves all of them.
    pub const ALL: [NetworkEndpoint; 5] = [
        NetworkEndpoint::HubDevice,
        NetworkEndpoint::HubService,
        NetworkEndpoint::HubEventHub,
        NetworkEndpoint::DpsDevice,
        NetworkEndpoint::DpsService,
    ];

    /// Whether the DPS instance's rules apply (else the hub's).
    pub fn is_dps(self) -> bool {
        matches!(
            self,
            NetworkEndpoint::DpsDevice | NetworkEndpoint::DpsService
        )
    }
}

/// Where a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The remote address.
    pub ip: IpAddr,
    /// Whether it arrived on a listener the configuration names a private endpoint.
    pub private_endpoint: bool,
}

impl Peer {
    /// A peer on a public listener.
    pub fn public(ip: IpAddr) -> Self {
        Peer {
            ip,
            private_endpoint: false,
        }
    }
}

/// One scope's rules, checked and with their masks parsed.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: NetworkRules,
    filters: Vec<(Cidr, IpFilterAction, Option<IpFilterTarget>)>,
    allows: Vec<Cidr>,
}

impl Policy {
    /// Checks `rules` as IoT Hub does (names unique, case-insensitive, at most 128 allowed
    /// characters; masks that parse; at most [`MAX_RULES`] a list) and compiles them. Errors
    /// are `400 ArgumentInvalid`, naming the mistake.
    pub fn new(rules: NetworkRules) -> Result<Self, HubError> {
        let filters = checked(
            "ipFilterRules",
            rules
                .ip_filter_rules
                .iter()
                .map(|r| (r.filter_name.as_str(), r.ip_mask.as_str())),
        )?;
        let filters = filters
            .into_iter()
            .zip(&rules.ip_filter_rules)
            .map(|(cidr, r)| (cidr, r.action, r.target))
            .collect();
        let allows = match &rules.network_rule_sets {
            Some(sets) => checked(
                "networkRuleSets.ipRules",
                sets.ip_rules
                    .iter()
                    .map(|r| (r.filter_name.as_str(), r.ip_mask.as_str())),
            )?,
            None => Vec::new(),
        };
        Ok(Policy {
            rules,
            filters,
            allows,
        })
    }

    /// The rules as written.
    pub fn rules(&self) -> &NetworkRules {
        &self.rules
    }

    /// Whether `peer` may reach `endpoint` under these rules (see the module's precedence).
    pub fn admits(&self, peer: &Peer, endpoint: NetworkEndpoint) -> bool {
        if peer.private_endpoint {
            return true;
        }
        if self.rules.public_network_access == PublicNetworkAccess::Disabled {
            return is_host_loopback(peer.ip);
        }
        if let Some(sets) = &self.rules.network_rule_sets {
            if endpoint == NetworkEndpoint::HubEventHub
                && !sets.apply_to_built_in_event_hub_endpoint
            {
                return true;
            }
            return self.allows.iter().any(|c| c.contains(peer.ip))
                || sets.default_action == DefaultAction::Allow;
        }
        self.filters
            .iter()
            .find(|(cidr, _, target)| covers(*target, endpoint) && cidr.contains(peer.ip))
            .is_none_or(|(_, action, _)| *action == IpFilterAction::Accept)
    }
}

/// Whether a rule with `target` applies at `endpoint` (no target: everywhere).
fn covers(target: Option<IpFilterTarget>, endpoint: NetworkEndpoint) -> bool {
    match target {
        None | Some(IpFilterTarget::All) => true,
        Some(IpFilterTarget::DeviceApi) => endpoint == NetworkEndpoint::DpsDevice,
        Some(IpFilterTarget::ServiceApi) => endpoint == NetworkEndpoint::DpsService,
    }
}

/// This host's own loopback address, which `publicNetworkAccess: Disabled` still lets in.
fn is_host_loopback(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
}

/// Checks one list's names and masks; the masks parsed, in order.
fn checked<'a>(
    list: &str,
    rules: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<Cidr>, HubError> {
    if rules.len() > MAX_RULES {
        return Err(HubError::ArgumentInvalid(format!(
            "{list} has {} rules; at most {MAX_RULES} are allowed.",
            rules.len()
        )));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut masks = Vec::new();
    for (name, mask) in rules {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || NAME_SYMBOLS.contains(c));
        if !valid {
            return Err(HubError::ArgumentInvalid(format!(
                "The {list} filter name '{name}' is not valid: 1 to {MAX_NAME} ASCII letters, digits or {NAME_SYMBOLS}."
            )));
        }
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(HubError::ArgumentInvalid(format!(
                "The {list} filter name '{name}' is used more than once (names are case-insensitive)."
            )));
        }
        seen.push(lower);
        masks.push(Cidr::parse(mask).map_err(|e| {
            HubError::ArgumentInvalid(format!("The {list} rule '{name}' has a bad ipMask: {e}."))
        })?);
    }
    Ok(masks)
}

#[cfg(test)]
mod tests {
    use ironhub_wire::network::{
        IpFilterRule, NetworkRuleAction, NetworkRuleSetIpRule, NetworkRuleSetProperties,
    };

    use super::*;

    fn rule(name: &str, action: IpFilterAction, mask: &str) -> IpFilterRule {
        IpFilterRule {
            filter_name: name.into(),
            action,
            ip_mask: mask.into(),
            target: None,
        }
    }

    fn peer(ip: &str) -> Peer {
        Peer::public(ip.parse().unwrap())
    }

    fn policy(filters: Vec<IpFilterRule>) -> Policy {
        Policy::new(NetworkRules {
            ip_filter_rules: filters,
            ..NetworkRules::default()
        })
        .unwrap()
    }

    #[test]
    fn the_first_matching_rule_wins_and_no_match_accepts() {
        use IpFilterAction::*;
        let device = NetworkEndpoint::HubDevice;
        let p = policy(vec![
            rule("one", Accept, "192.168.100.0/22"),
            rule("rest", Reject, "0.0.0.0/0"),
        ]);
        assert!(p.admits(&peer("192.168.101.1"), device));
        assert!(!p.admits(&peer("10.0.0.1"), device));
        assert!(p.admits(&peer("::1"), device), "no IPv6 rule: accepted");
        // Reordered, the reject-all rule comes first and wins.
        let p = policy(vec![
            rule("rest", Reject, "0.0.0.0/0"),
            rule("one", Accept, "192.168.100.0/22"),
        ]);
        assert!(!p.admits(&peer("192.168.101.1"), device));
        assert!(Policy::default().admits(&peer("8.8.8.8"), device));
    }

    #[test]
    fn dps_targets_narrow_a_rule_to_device_or_service_apis() {
        let mut r = rule("devices", IpFilterAction::Reject, "10.0.0.0/8");
        r.target = Some(IpFilterTarget::DeviceApi);
        let p = policy(vec![r]);
        assert!(!p.admits(&peer("10.1.1.1"), NetworkEndpoint::DpsDevice));
        assert!(p.admits(&peer("10.1.1.1"), NetworkEndpoint::DpsService));
    }

    #[test]
    fn network_rule_sets_allow_list_default_action_and_the_event_hub_endpoint() {
        let sets = |apply| NetworkRuleSetProperties {
            default_action: DefaultAction::Deny,
            apply_to_built_in_event_hub_endpoint: apply,
            ip_rules: vec![NetworkRuleSetIpRule {
                filter_name: "office".into(),
                action: NetworkRuleAction::Allow,
                ip_mask: "10.0.0.0/8".into(),
            }],
        };
        let p = Policy::new(NetworkRules {
            network_rule_sets: Some(sets(false)),
            // Ignored while networkRuleSets is there.
            ip_filter_rules: vec![rule("all", IpFilterAction::Accept, "0.0.0.0/0")],
            ..NetworkRules::default()
        })
        .unwrap();
        assert!(p.admits(&peer("10.2.3.4"), NetworkEndpoint::HubService));
        assert!(!p.admits(&peer("11.2.3.4"), NetworkEndpoint::HubService));
        assert!(p.admits(&peer("11.2.3.4"), NetworkEndpoint::HubEventHub));
        let p = Policy::new(NetworkRules {
            network_rule_sets: Some(sets(true)),
            ..NetworkRules::default()
        })
        .unwrap();
        assert!(!p.admits(&peer("11.2.3.4"), NetworkEndpoint::HubEventHub));
    }

    #[test]
    fn public_access_disabled_leaves_the_host_loopback_and_private_endpoints() {
        let p = Policy::new(NetworkRules {
            public_network_access: PublicNetworkAccess::Disabled,
            ip_filter_rules: vec![rule("all", IpFilterAction::Accept, "0.0.0.0/0")],
            ..NetworkRules::default()
        })
        .unwrap();
        let device = NetworkEndpoint::HubDevice;
        assert!(p.admits(&peer("127.0.0.1"), device));
        assert!(p.admits(&peer("::1"), device));
        assert!(!p.admits(&peer("127.0.26.212"), device));
        let private = Peer {
            ip: "10.9.9.9".parse().unwrap(),
            private_endpoint: true,
        };
        assert!(p.admits(&private, device));
    }

    #[test]
    fn bad_rules_are_refused_with_argument_invalid() {
        use IpFilterAction::*;
        let bad = |rules: Vec<IpFilterRule>| {
            let e = Policy::new(NetworkRules {
                ip_filter_rules: rules,
                ..NetworkRules::default()
            })
            .unwrap_err();
            assert_eq!(e.code(), 400_004, "{e}");
            e.to_string()
        };
        assert!(bad(vec![rule("a", Accept, "10.0.0.0/40")]).contains("ipMask"));
        assert!(
            bad(vec![
                rule("a", Accept, "1.2.3.4"),
                rule("A", Reject, "1.2.3.5")
            ])
            .contains("more than once")
        );
        assert!(bad(vec![rule("a b", Accept, "1.2.3.4")]).contains("not valid"));
        assert!(bad(vec![rule("", Accept, "1.2.3.4")]).contains("not valid"));
        let many = (0..=MAX_RULES)
            .map(|i| rule(&format!("r{i}"), Accept, "1.2.3.4"))
            .collect();
        assert!(bad(many).contains("at most 100"));
        let limit = (0..MAX_RULES)
            .map(|i| rule(&format!("r{i}"), Accept, "1.2.3.4"))
            .collect();
        assert!(
            Policy::new(NetworkRules {
                ip_filter_rules: limit,
                ..NetworkRules::default()
            })
            .is_ok()
        );
    }
}

//! IP filters and public network access through the domain API, on a real (temporary) store.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use ironhub_hub::network::{NetworkEndpoint, Peer, refused};
use ironhub_store::NetworkScope;
use ironhub_wire::network::{IpFilterAction, IpFilterRule, NetworkRules};

fn rules(list: &[(&str, IpFilterAction, &str)]) -> NetworkRules {
    NetworkRules {
        ip_filter_rules: list
            .iter()
            .map(|(name, action, mask)| IpFilterRule {
                filter_name: (*name).into(),
                action: *action,
                ip_mask: (*mask).into(),
                target: None,
            })
            .collect(),
        ..NetworkRules::default()
    }
}

fn peer(ip: &str) -> Peer {
    Peer::public(ip.parse().unwrap())
}

#[tokio::test]
async fn rules_are_stored_per_scope_and_applied_in_order() {
    use IpFilterAction::*;
    let (hub, _dir) = common::temp_hub().await;
    let device = NetworkEndpoint::HubDevice;
    assert!(hub.network_admits(&peer("10.0.0.1"), device).await);
    let (_, etag) = hub
        .set_network_rules(
            NetworkScope::Hub,
            rules(&[("bad", Reject, "10.0.0.1"), ("rest", Accept, "0.0.0.0/0")]),
            None,
        )
        .await
        .unwrap();
    let e = hub
        .check_network(&peer("10.0.0.1"), device)
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (401, 401_002));
    assert!(
        !e.to_string().contains("rule"),
        "the answer does not name the rule"
    );
    assert!(hub.network_admits(&peer("10.0.0.2"), device).await);
    // The DPS instance has its own rules.
    assert!(
        hub.network_admits(&peer("10.0.0.1"), NetworkEndpoint::DpsDevice)
            .await
    );

    // Reordered: the accept-all rule wins first.
    let stale = hub
        .set_network_rules(
            NetworkScope::Hub,
            rules(&[("rest", Accept, "0.0.0.0/0"), ("bad", Reject, "10.0.0.1")]),
            Some(&etag),
        )
        .await
        .unwrap();
    assert!(hub.network_admits(&peer("10.0.0.1"), device).await);
    let e = hub
        .set_network_rules(NetworkScope::Hub, NetworkRules::default(), Some(&etag))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 412);
    assert_eq!(
        hub.network_rules(NetworkScope::Hub).await.unwrap().1,
        Some(stale.1)
    );
}

#[tokio::test]
async fn bad_rules_change_nothing() {
    let (hub, _dir) = common::temp_hub().await;
    for bad in [
        rules(&[("a", IpFilterAction::Reject, "300.0.0.1")]),
        rules(&[
            ("dup", IpFilterAction::Reject, "1.2.3.4"),
            ("DUP", IpFilterAction::Reject, "1.2.3.5"),
        ]),
    ] {
        let e = hub
            .set_network_rules(NetworkScope::Dps, bad, None)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.name()), (400, "ArgumentInvalid"));
    }
    assert_eq!(
        hub.network_rules(NetworkScope::Dps).await.unwrap(),
        (NetworkRules::default(), None)
    );
}

#[tokio::test]
async fn an_open_connection_hears_of_a_rule_that_refuses_it() {
    let (hub, _dir) = common::temp_hub().await;
    let device = NetworkEndpoint::HubDevice;
    assert!(hub.network_admits(&peer("10.0.0.9"), device).await);
    let watching = tokio::spawn(refused(
        hub.clone(),
        peer("10.0.0.9"),
        &[NetworkEndpoint::HubDevice],
    ));
    // A rule for someone else leaves it open.
    hub.set_network_rules(
        NetworkScope::Hub,
        rules(&[("other", IpFilterAction::Reject, "10.0.0.8")]),
        None,
    )
    .await
    .unwrap();
    tokio::task::yield_now().await;
    assert!(!watching.is_finished());
    hub.set_network_rules(
        NetworkScope::Hub,
        rules(&[("me", IpFilterAction::Reject, "10.0.0.0/24")]),
        Some("*"),
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), watching)
        .await
        .expect("the connection is told to close")
        .unwrap();
}

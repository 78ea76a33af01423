//! Cases of the routing port's endpoint leases (one pump owner per endpoint across nodes)
//! and endpoint health.

use std::sync::Arc;

use chrono::TimeDelta;

use super::{NODE, OTHER_NODE};
use crate::{Clock, EndpointHealth, EndpointHealthStatus, ManualClock, Store};

const LEASE: TimeDelta = TimeDelta::seconds(10);

/// Two nodes asking for a free lease together: exactly one gets it, and only it renews it.
pub async fn an_endpoint_lease_has_one_holder(store: Arc<dyn Store>, clock: Arc<ManualClock>) {
    let now = clock.now();
    for round in 0..20 {
        let endpoint = format!("hook-{round}");
        let (a, b) = tokio::join!(
            store.lease_endpoint(&endpoint, NODE, now, now + LEASE),
            store.lease_endpoint(&endpoint, OTHER_NODE, now, now + LEASE),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a ^ b, "round {round}: {a} {b}");
        let (holder, other) = if a {
            (NODE, OTHER_NODE)
        } else {
            (OTHER_NODE, NODE)
        };
        let later = now + TimeDelta::seconds(5);
        assert!(
            store
                .lease_endpoint(&endpoint, holder, later, later + LEASE)
                .await
                .unwrap()
        );
        // Names are case-insensitive: the same lease.
        let upper = endpoint.to_ascii_uppercase();
        assert!(
            !store
                .lease_endpoint(&upper, other, later, later + LEASE)
                .await
                .unwrap()
        );
    }
}

/// A lease that ran out is taken over; a released one at once; releasing another's does
/// nothing.
pub async fn an_expired_or_released_lease_is_taken_over(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    let now = clock.now();
    assert!(
        store
            .lease_endpoint("cold", NODE, now, now + LEASE)
            .await
            .unwrap()
    );
    let before_expiry = now + LEASE - TimeDelta::milliseconds(1);
    assert!(
        !store
            .lease_endpoint("cold", OTHER_NODE, before_expiry, before_expiry + LEASE)
            .await
            .unwrap()
    );
    let expired = now + LEASE;
    assert!(
        store
            .lease_endpoint("cold", OTHER_NODE, expired, expired + LEASE)
            .await
            .unwrap()
    );
    // The old holder comes back too late: refused.
    assert!(
        !store
            .lease_endpoint("cold", NODE, expired, expired + LEASE)
            .await
            .unwrap()
    );
    // Releasing a lease one does not hold changes nothing.
    store.release_endpoint("cold", NODE).await.unwrap();
    assert!(
        !store
            .lease_endpoint("cold", NODE, expired, expired + LEASE)
            .await
            .unwrap()
    );
    store.release_endpoint("COLD", OTHER_NODE).await.unwrap();
    assert!(
        store
            .lease_endpoint("cold", NODE, expired, expired + LEASE)
            .await
            .unwrap()
    );
}

/// Health is kept per endpoint (case-insensitive), the last write winning, listed by name.
pub async fn endpoint_health_is_kept_per_endpoint(store: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    assert!(store.endpoint_health().await.unwrap().is_empty());
    let health = |id: &str, status| EndpointHealth {
        endpoint_id: id.into(),
        health_status: status,
        last_known_error: Some("refused".into()),
        ..EndpointHealth::default()
    };
    store
        .put_endpoint_health(health("hook", EndpointHealthStatus::Unhealthy))
        .await
        .unwrap();
    store
        .put_endpoint_health(health("Cold", EndpointHealthStatus::Healthy))
        .await
        .unwrap();
    store
        .put_endpoint_health(health("HOOK", EndpointHealthStatus::Dead))
        .await
        .unwrap();
    let all = store.endpoint_health().await.unwrap();
    assert_eq!(
        all,
        vec![
            health("Cold", EndpointHealthStatus::Healthy),
            health("HOOK", EndpointHealthStatus::Dead),
        ]
    );
}

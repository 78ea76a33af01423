//! IP filters and public network access, for the hub and for the DPS instance, as IoT Hub
//! and DPS document them (see [`rules`] for the precedence). Each scope's rules are one
//! document in the store (`NetworkRulesStore`), so every node applies the same ones; a node
//! reads them at most every [`REFRESH`] and keeps its compiled copy meanwhile.
//!
//! Adapters ask one question, [`Hub::network_admits`] (or [`Hub::check_network`] for an
//! answer to render), with the peer and the endpoint kind: at accept time with
//! [`Hub::network_admits_any`] for the kinds a listener serves (before the TLS handshake),
//! then once the protocol says which endpoint it is. Open connections follow
//! [`Hub::network_changes`] and ask again when the rules change, closing when refused.

mod cidr;
mod rules;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironhub_store::{NetworkScope, Store, WriteConflict};
use ironhub_wire::network::NetworkRules;
use tokio::sync::watch;

pub use cidr::Cidr;
pub use rules::{MAX_RULES, NetworkEndpoint, Peer, Policy};

use crate::{Hub, HubError};

/// How long a node uses the rules it read before reading them again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Both scopes' rules compiled, with the etags they were read at.
#[derive(Debug, Default)]
struct Policies {
    hub: (Policy, Option<String>),
    dps: (Policy, Option<String>),
}

impl Policies {
    fn of(&self, endpoint: NetworkEndpoint) -> &Policy {
        if endpoint.is_dps() {
            &self.dps.0
        } else {
            &self.hub.0
        }
    }
}

/// This node's copy of the network rules, and the signal open connections wait on.
#[derive(Debug)]
pub struct NetworkCache {
    slot: Mutex<Option<(Instant, Arc<Policies>)>>,
    /// Bumped whenever the rules this node applies change.
    changes: watch::Sender<u64>,
}

impl Default for NetworkCache {
    fn default() -> Self {
        NetworkCache {
            slot: Mutex::new(None),
            changes: watch::channel(0).0,
        }
    }
}

impl NetworkCache {
    /// The rules while fresh. Once aged, the first caller gets `None` (and reads the store)
    /// while the others keep the old copy until it is replaced, as the routing cache does.
    fn fresh(&self) -> Option<Arc<Policies>> {
        let mut slot = self.slot.lock().ok()?;
        let (read, policies) = slot.as_mut()?;
        if read.elapsed() < REFRESH {
            return Some(policies.clone());
        }
        *read = Instant::now();
        None
    }

    fn stale(&self) -> Option<Arc<Policies>> {
        let slot = self.slot.lock().ok()?;
        slot.as_ref().map(|(_, p)| p.clone())
    }

    /// Keeps `policies`, telling open connections when their etags differ from the last.
    fn put(&self, policies: Arc<Policies>) {
        let Ok(mut slot) = self.slot.lock() else {
            return;
        };
        let changed = slot
            .as_ref()
            .is_none_or(|(_, old)| old.hub.1 != policies.hub.1 || old.dps.1 != policies.dps.1);
        *slot = Some((Instant::now(), policies));
        drop(slot);
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }
}

fn scope_of(endpoint: NetworkEndpoint) -> NetworkScope {
    if endpoint.is_dps() {
        NetworkScope::Dps
    } else {
        NetworkScope::Hub
    }
}

/// The rules of `scope` in `store` as written, with their etag (`None` before any were:
/// everything is let in). The DPS domain reads its own scope with it.
pub async fn load(
    store: &dyn Store,
    scope: NetworkScope,
) -> Result<(NetworkRules, Option<String>), HubError> {
    Ok(match store.network_rules(scope).await? {
        Some(record) => (
            serde_json::from_value(record.doc).map_err(|e| {
                HubError::ServerError(format!("the stored network rules are unreadable: {e}"))
            })?,
            Some(record.etag),
        ),
        None => (NetworkRules::default(), None),
    })
}

/// Replaces the rules of `scope` in `store`, compare-and-swap on `if_match` (`*` or the etag
/// read). Rules that fail validation change nothing (`400 ArgumentInvalid`); every node
/// applies them within [`REFRESH`]. Returns the new etag.
pub async fn save(
    store: &dyn Store,
    scope: NetworkScope,
    rules: &NetworkRules,
    if_match: Option<&str>,
) -> Result<String, HubError> {
    crate::nul::reject_nul_in(rules, "the network rules")?;
    Policy::new(rules.clone())?;
    let doc = serde_json::to_value(rules).map_err(|e| HubError::ServerError(e.to_string()))?;
    let if_match = if_match.map(crate::registry::normalize_if_match);
    match store
        .put_network_rules(scope, doc, if_match.clone())
        .await?
    {
        Ok(record) => {
            tracing::info!(target: "ServiceOperations", scope = scope.as_str(), "network rules updated");
            Ok(record.etag)
        }
        Err(WriteConflict::EtagMismatch | WriteConflict::NotFound) => {
            Err(HubError::PreconditionFailed(if_match.unwrap_or_default()))
        }
        Err(WriteConflict::AlreadyExists) => Err(HubError::ServerError(
            "the network rules write conflicted".into(),
        )),
    }
}

impl Hub {
    /// The rules of `scope` as written, with their etag (see [`load`]).
    pub async fn network_rules(
        &self,
        scope: NetworkScope,
    ) -> Result<(NetworkRules, Option<String>), HubError> {
        load(self.store.as_ref(), scope).await
    }

    /// Replaces the rules of `scope` (see [`save`]); this node applies them at once.
    pub async fn set_network_rules(
        &self,
        scope: NetworkScope,
        rules: NetworkRules,
        if_match: Option<&str>,
    ) -> Result<(NetworkRules, String), HubError> {
        let etag = save(self.store.as_ref(), scope, &rules, if_match).await?;
        self.refresh_network().await?;
        Ok((rules, etag))
    }

    /// Reads both scopes' rules from the store again and applies them on this node at once
    /// (after a write made without [`Hub::set_network_rules`], such as the DPS domain's).
    pub async fn reload_network_rules(&self) -> Result<(), HubError> {
        self.refresh_network().await.map(|_| ())
    }

    /// Reads both scopes' rules from the store and applies them on this node.
    async fn refresh_network(&self) -> Result<Arc<Policies>, HubError> {
        let mut policies = Policies::default();
        for (scope, slot) in [
            (NetworkScope::Hub, &mut policies.hub),
            (NetworkScope::Dps, &mut policies.dps),
        ] {
            let (rules, etag) = self.network_rules(scope).await?;
            *slot = (Policy::new(rules)?, etag);
        }
        let policies = Arc::new(policies);
        self.network.put(policies.clone());
        Ok(policies)
    }

    /// The rules as this node applies them now (read again once [`REFRESH`] passed). When the
    /// store cannot be read the last rules read stay; with none ever read, `None`.
    async fn network_policies(&self) -> Option<Arc<Policies>> {
        if let Some(p) = self.network.fresh() {
            return Some(p);
        }
        match self.refresh_network().await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the network rules; keeping the last ones");
                self.network.stale()
            }
        }
    }

    /// Whether `peer` may reach `endpoint`. With rules never read (the store down since the
    /// start) nothing is let in.
    pub async fn network_admits(&self, peer: &Peer, endpoint: NetworkEndpoint) -> bool {
        self.network_policies()
            .await
            .is_some_and(|p| p.of(endpoint).admits(peer, endpoint))
    }

    /// Whether `peer` may reach any of `endpoints` (what a listener serving them asks at
    /// accept time, before the protocol says which one).
    pub async fn network_admits_any(&self, peer: &Peer, endpoints: &[NetworkEndpoint]) -> bool {
        let Some(p) = self.network_policies().await else {
            return false;
        };
        endpoints.iter().any(|e| p.of(*e).admits(peer, *e))
    }

    /// [`Hub::network_admits`] as an answer: IoT Hub and DPS refuse a filtered address with
    /// `401` and a message that does not mention the IP rule.
    pub async fn check_network(
        &self,
        peer: &Peer,
        endpoint: NetworkEndpoint,
    ) -> Result<(), HubError> {
        if self.network_admits(peer, endpoint).await {
            return Ok(());
        }
        tracing::info!(peer = %peer.ip, ?endpoint, scope = scope_of(endpoint).as_str(), "refused by the network rules");
        Err(HubError::Unauthorized("Unauthorized".into()))
    }

    /// Changes each time the rules this node applies change; an open connection waits on it
    /// and asks [`Hub::network_admits`] again.
    pub fn network_changes(&self) -> watch::Receiver<u64> {
        self.network.changes.subscribe()
    }

    /// Re-reads the rules every [`REFRESH`] until `stop`, so that open connections hear of a
    /// change written through another node.
    pub async fn watch_network_rules_until(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.refresh_network().await {
                tracing::debug!(error = %e, "cannot read the network rules");
            }
        }
    }
}

/// Waits until the rules change so that `peer` may reach none of `endpoints` any more (never,
/// when they keep admitting it): what an open connection selects on to close. It listens from
/// the call on, so a change made before its first poll is not missed.
pub fn refused(
    hub: Hub,
    peer: Peer,
    endpoints: &'static [NetworkEndpoint],
) -> impl Future<Output = ()> + Send + 'static {
    let mut changes = hub.network_changes();
    async move {
        loop {
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
            // Boxed: every open connection holds this future while it waits.
            if !Box::pin(hub.network_admits_any(&peer, endpoints)).await {
                tracing::info!(peer = %peer.ip, ?endpoints, "closing a connection the network rules now refuse");
                return;
            }
        }
    }
}

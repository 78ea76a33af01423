//! The hub's overview: its name, the signed-in policy's connection string, device counts.

use axum::extract::Query;
use ironhub_auth::access::Operation;
use maud::{Markup, html};
use serde::Deserialize;

use crate::access::Signed;
use crate::layout::{page, signed_in_as};

/// `?reveal=key` shows the key.
#[derive(Debug, Default, Deserialize)]
pub struct Reveal {
    #[serde(default)]
    reveal: String,
}

impl Reveal {
    /// Whether the page shows the key.
    pub fn shows_key(&self) -> bool {
        self.reveal == "key"
    }
}

/// `GET /console`.
pub async fn show(signed: Signed, Query(q): Query<Reveal>) -> Markup {
    let hub = &signed.hub;
    let registry = match signed.may(Operation::RegistryStatistics).await {
        Ok(()) => hub.registry_statistics().await.ok(),
        Err(_) => None,
    };
    let connected = match signed.may(Operation::ServiceStatistics).await {
        Ok(()) => hub
            .service_statistics()
            .await
            .ok()
            .map(|s| s.connected_device_count),
        Err(_) => None,
    };
    let count = |n: Option<u64>| n.map_or_else(|| "—".to_owned(), |n| n.to_string());
    let reveal = q.shows_key();
    page(
        &signed,
        "Overview",
        html! {
            section {
                h2 { "Hub" }
                p { "Host name: " code #host-name { (hub.host_name()) } }
                (signed_in_as(&signed.principal, hub.host_name(), ("shared access policy", "Connection string"), "/console", reveal))
                (crate::ca::section(&signed))
            }
            div.stats {
                div { b #total-devices { (count(registry.as_ref().map(|r| r.total_device_count))) } "devices" }
                div { b #enabled-devices { (count(registry.as_ref().map(|r| r.enabled_device_count))) } "enabled" }
                div { b #disabled-devices { (count(registry.as_ref().map(|r| r.disabled_device_count))) } "disabled" }
                div { b #connected-devices { (count(connected)) } "connected" }
            }
            p { a href="/console/devices" { "Devices →" } }
        },
    )
}

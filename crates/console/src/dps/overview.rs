//! The DPS overview: the ID scope and the endpoints devices and services use, the signed-in
//! policy's service connection string (key hidden until asked), and the linked hubs with
//! their allocation weights and the latency last measured to each.

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use ironhub_auth::access::Operation;
use maud::html;

use super::access::SignedDps;
use super::layout::page;
use crate::layout::secret;
use crate::overview::Reveal;

/// `GET /console/dps`.
pub async fn show(signed: SignedDps, Query(q): Query<Reveal>) -> Response {
    let dps = &signed.dps;
    let host = dps.host_name();
    let reveal = q.shows_key();
    let hubs = match signed.may(Operation::LinkedHubsRead).await {
        Ok(()) => Some(dps.list_linked_hubs().await),
        Err(_) => None,
    };
    let body = html! {
        section {
            h2 { "Device Provisioning Service" }
            p { "ID scope: " code #id-scope { (dps.id_scope()) } }
            p { "Global device endpoint: " code #device-endpoint { (host) }
                " (MQTT on 8883, HTTPS on 443, AMQP on 5671; ironhub serves it on its own host, where Azure has "
                code { "global.azure-devices-provisioning.net" } ")" }
            p { "Service endpoint: " code #service-endpoint { "https://" (host) } }
            p { "Signed in as the DPS policy " b { (signed.policy) } "." }
            p {
                "Service connection string: "
                @if reveal {
                    code.secret #connection-string { (signed.connection_string()) }
                    " " a href="/console/dps" { "Hide" }
                } @else {
                    code { "HostName=" (host) ";SharedAccessKeyName=" (signed.policy) ";SharedAccessKey=" }
                    (secret("", false))
                    " " a href="/console/dps?reveal=key" { "Show" }
                }
            }
            p { "A device provisions with the ID scope, the endpoint and its registration id; the SDKs name them "
                code { "id_scope" } ", " code { "provisioning_host" } " and " code { "registration_id" } "." }
        }
        section {
            h2 { "Linked hubs" }
            @match &hubs {
                None => p { "This policy may not read the linked hubs (they need ServiceConfig)." },
                Some(Err(e)) => p.notice.error { (e.to_string()) },
                Some(Ok(list)) if list.is_empty() => p { "No linked hubs." },
                Some(Ok(list)) => div.scroll { table #linked-hubs {
                    thead { tr { th { "Hub" } th { "Allocation weight" } th { "Applies allocation policy" } th { "Location" } th { "Latency" } } }
                    tbody { @for h in list {
                        tr {
                            td { (h.name) }
                            td { (h.allocation_weight.map_or_else(|| "—".to_owned(), |w| w.to_string())) }
                            td { (if h.apply_allocation_policy.unwrap_or(true) { "yes" } else { "no" }) }
                            td { (h.location.as_deref().unwrap_or("—")) }
                            td { (dps.latency_of(&h.name).map_or_else(|| "not measured yet".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))) }
                        }
                    } }
                } },
            }
        }
    };
    page(&signed, "DPS overview", body).into_response()
}

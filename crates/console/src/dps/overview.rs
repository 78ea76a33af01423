//! The DPS overview: the ID scope and the endpoints devices and services use, the signed-in
//! policy's service connection string (key hidden until asked), and the linked hubs with
//! their allocation weights (editable with LinkedHubsWrite, on the condition of the ETag
//! shown) and the latency last measured to each.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ironhub_auth::access::Operation;
use ironhub_dps::DpsError;
use ironhub_dps::model::LinkedHub;
use maud::html;
use serde::Deserialize;

use super::access::{PostedDps, SignedDps};
use super::layout::{csrf, page, refused, status_of};
use crate::layout::{Notice, notice, segment, signed_in_as};
use crate::overview::Reveal;

/// `GET /console/dps`.
pub async fn show(signed: SignedDps, Query(q): Query<Reveal>) -> Response {
    render(&signed, q.shows_key(), None).await
}

async fn render(
    signed: &SignedDps,
    reveal: bool,
    outcome: Option<Result<String, DpsError>>,
) -> Response {
    let dps = &signed.dps;
    let host = dps.host_name();
    let can_link = signed.can(Operation::LinkedHubsWrite).await;
    let (status, message) = match &outcome {
        None => (StatusCode::OK, None),
        Some(Ok(text)) => (StatusCode::OK, Some(Notice::ok(text.clone()))),
        Some(Err(e)) => (status_of(e), Some(refused(e))),
    };
    let hubs = match signed.may(Operation::LinkedHubsRead).await {
        Ok(()) => Some(dps.list_linked_hubs().await),
        Err(_) => None,
    };
    let body = html! {
        (notice(message.as_ref()))
        section {
            h2 { "Device Provisioning Service" }
            p { "ID scope: " code #id-scope { (dps.id_scope()) } }
            p { "Global device endpoint: " code #device-endpoint { (host) }
                " (MQTT on 8883, HTTPS on 443, AMQP on 5671; ironhub serves it on its own host, where Azure has "
                code { "global.azure-devices-provisioning.net" } ")" }
            p { "Service endpoint: " code #service-endpoint { "https://" (host) } }
            (signed_in_as(&signed.principal, host, ("DPS policy", "Service connection string"), "/console/dps", reveal))
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
                            @if can_link {
                                td colspan="2" {
                                    form.inline.linked-hub-form method="post" action={ "/console/dps/linked-hubs/" (segment(&h.name)) } {
                                        (csrf(signed))
                                        input type="hidden" name="etag" value=(h.etag.as_deref().unwrap_or(""));
                                        input.weight type="number" name="allocation_weight" min="0" aria-label="Allocation weight"
                                            value=(h.allocation_weight.map(|w| w.to_string()).unwrap_or_default());
                                        label.check { input type="checkbox" name="apply_allocation_policy" checked[h.apply_allocation_policy.unwrap_or(true)]; " applies" }
                                        button type="submit" { "Save" }
                                    }
                                }
                            } @else {
                                td { (h.allocation_weight.map_or_else(|| "—".to_owned(), |w| w.to_string())) }
                                td { (if h.apply_allocation_policy.unwrap_or(true) { "yes" } else { "no" }) }
                            }
                            td { (h.location.as_deref().unwrap_or("—")) }
                            td { (dps.latency_of(&h.name).map_or_else(|| "not measured yet".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))) }
                        }
                    } }
                } },
            }
        }
    };
    (status, page(signed, "DPS overview", body)).into_response()
}

/// What a linked hub's form posts: its allocation weight, whether the allocation policy
/// applies to it, and the ETag the page showed.
#[derive(Debug, Deserialize)]
pub struct Weight {
    #[serde(default)]
    allocation_weight: String,
    #[serde(default)]
    apply_allocation_policy: Option<String>,
    #[serde(default)]
    etag: String,
}

/// `POST /console/dps/linked-hubs/{name}`: changes a linked hub's allocation weight (the link
/// keeps its connection string, as a REST update without one does).
pub async fn set_weight(
    Path(name): Path<String>,
    PostedDps(signed, form): PostedDps<Weight>,
) -> Response {
    let result = async {
        signed.may(Operation::LinkedHubsWrite).await?;
        let weight = match form.allocation_weight.trim() {
            "" => None,
            w => Some(w.parse::<u32>().map_err(|_| {
                DpsError::BadRequest(format!(
                    "The allocation weight '{w}' is not a whole number of 0 or more."
                ))
            })?),
        };
        let current = signed.dps.get_linked_hub(&name).await?;
        let if_match = Some(form.etag.as_str()).filter(|t| !t.is_empty()).unwrap_or("*");
        let hub = LinkedHub {
            allocation_weight: weight,
            apply_allocation_policy: Some(form.apply_allocation_policy.is_some()),
            etag: None,
            ..current
        };
        signed.dps.put_linked_hub(hub, Some(if_match)).await?;
        tracing::info!(target: "ServiceOperations", hub = %name, policy = %signed.policy, "linked hub updated from the console");
        Ok(format!("The link to {name} is saved."))
    }
    .await;
    render(&signed, false, Some(result)).await
}

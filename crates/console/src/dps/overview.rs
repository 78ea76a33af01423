//! The DPS overview: the ID scope and the endpoints devices and services use, the signed-in
//! policy's service connection string (key hidden until asked), and the linked hubs with
//! their allocation weights (editable with LinkedHubsWrite, on the condition of the ETag
//! shown) and the latency last measured to each; with LinkedHubsWrite, the form that links a
//! hub and each link's way to its removal ([`super::linked_hubs`]).

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::access::Operation;
use ironhub_dps::DpsError;
use ironhub_dps::model::LinkedHub;
use maud::html;
use serde::Deserialize;

use super::access::{PostedDps, SignedDps};
use super::form::FieldError;
use super::layout::{csrf, page, refused, status_of};
use super::linked_hubs::{self, LinkForm, Unlink, parse_weight};
use crate::layout::{Notice, notice, segment, signed_in_as};
use crate::overview::Reveal;

/// `GET /console/dps`.
pub async fn show(signed: SignedDps, Query(q): Query<Reveal>) -> Response {
    let outcome = if q.shows_key() {
        Outcome::Revealed
    } else {
        Outcome::Shown
    };
    render(&signed, outcome).await
}

/// What the overview shows besides its content: the key, a change's outcome, or a refused link
/// form with its draft.
pub enum Outcome {
    /// The page as it is.
    Shown,
    /// The page with the policy's key shown.
    Revealed,
    /// A change was made; the text says which.
    Done(String),
    /// A change was refused; the notice says why.
    Refused(DpsError),
    /// The link form was refused: its draft, with the refusal beside its field.
    Draft(LinkForm, FieldError),
}

/// The overview page, after `outcome`.
pub async fn render(signed: &SignedDps, outcome: Outcome) -> Response {
    let dps = &signed.dps;
    let host = dps.host_name();
    let can_link = signed.can(Operation::LinkedHubsWrite).await;
    let reveal = matches!(outcome, Outcome::Revealed);
    let (status, message, draft) = match &outcome {
        Outcome::Shown | Outcome::Revealed => (StatusCode::OK, None, None),
        Outcome::Done(text) => (StatusCode::OK, Some(Notice::ok(text.clone())), None),
        Outcome::Refused(e) => (status_of(e), Some(refused(e)), None),
        Outcome::Draft(form, e) => (status_of(&e.error), None, Some((form, e))),
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
                Some(Ok(list)) => div.scroll { table #linked-hubs.wide {
                    thead { tr { th { "Hub" } th { "Allocation weight" } th { "Applies allocation policy" } th { "Location" } th { "Latency" } @if can_link { th {} } } }
                    tbody { @for h in list {
                        tr {
                            td.nowrap { (h.name) }
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
                            td.location { (h.location.as_deref().unwrap_or("—")) }
                            td.latency { (dps.latency_of(&h.name).map_or_else(|| "not measured yet".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))) }
                            @if can_link {
                                td.nowrap { a.unlink href={ "/console/dps/linked-hubs/" (segment(&h.name)) "/delete" } { "Unlink…" } }
                            }
                        }
                    } }
                } },
            }
            @if can_link && hubs.is_some() {
                (linked_hubs::add_form(signed, draft))
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
        let weight = parse_weight(&form.allocation_weight)?;
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
    let outcome = match result {
        Ok(text) => Outcome::Done(text),
        Err(e) => Outcome::Refused(e),
    };
    render(&signed, outcome).await
}

/// `POST /console/dps/linked-hubs`: links a hub by its connection string; a refusal shows
/// beside its field, with the form as it was (but the connection string).
pub async fn link(PostedDps(signed, form): PostedDps<LinkForm>) -> Response {
    let outcome = match linked_hubs::link(&signed, &form).await {
        Ok(text) => Outcome::Done(text),
        Err(e) if e.field.is_empty() => Outcome::Refused(e.error),
        Err(e) => Outcome::Draft(form, e),
    };
    render(&signed, outcome).await
}

/// `POST /console/dps/linked-hubs/{name}/delete`: unlinks a hub after its confirmation page;
/// back to the overview.
pub async fn unlink(
    Path(name): Path<String>,
    PostedDps(signed, form): PostedDps<Unlink>,
) -> Response {
    match linked_hubs::unlink(&signed, &name, &form).await {
        Ok(()) => Redirect::to("/console/dps").into_response(),
        Err(e) => render(&signed, Outcome::Refused(e)).await,
    }
}

//! The device list: a page of the query language's answer at a time (the store pages it, so a
//! hub of 100,000 devices costs one page), a filter box, and the create form.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::access::Operation;
use ironhub_hub::HubError;
use ironhub_wire::hub::{AuthenticationSpec, DeviceSpec, ThumbprintSpec};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::access::{Posted, Signed};
use crate::layout::{Notice, csrf, notice, page, segment};

/// Devices a page shows.
const PAGE_SIZE: usize = 50;

/// `?q=` (a query, or the condition of one) and `?c=` (where the page starts).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    c: String,
}

/// The query a filter box's text stands for: all devices, a whole `SELECT`, or the condition
/// of `SELECT * FROM devices WHERE …`.
fn query_text(filter: &str) -> String {
    let filter = filter.trim();
    if filter.is_empty() {
        "SELECT * FROM devices".to_owned()
    } else if filter
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("select "))
    {
        filter.to_owned()
    } else {
        format!("SELECT * FROM devices WHERE {filter}")
    }
}

/// `GET /console/devices`.
pub async fn list(signed: Signed, Query(q): Query<ListQuery>) -> Response {
    render(&signed, &q, None, None).await.into_response()
}

async fn render(
    signed: &Signed,
    q: &ListQuery,
    created: Option<Notice>,
    field_error: Option<(&str, String)>,
) -> Markup {
    let hub = &signed.hub;
    let continuation = (!q.c.is_empty()).then_some(q.c.as_str());
    let answer = match signed.may(Operation::Query).await {
        Ok(()) => {
            hub.query_twins(&query_text(&q.q), continuation, Some(PAGE_SIZE))
                .await
        }
        Err(e) => Err(e),
    };
    let can_create = signed.can(Operation::DeviceWrite).await;
    let (field_value, field_message) = field_error.unzip();
    page(
        signed,
        "Devices",
        html! {
            (notice(created.as_ref()))
            @if can_create {
                section {
                    h2 { "New device" }
                    form #create-device method="post" action="/console/devices" {
                        (csrf(signed))
                        label for="device_id" { "Device id" }
                        input #device_id type="text" name="device_id" required value=(field_value.unwrap_or_default())
                            aria-describedby="device_id-error";
                        @if let Some(m) = field_message { span #device_id-error.field-error role="alert" { (m) } }
                        label for="auth" { "Authentication" }
                        select #auth name="auth" {
                            option value="sas" selected { "Symmetric keys (generated)" }
                            option value="selfSigned" { "X.509 self-signed (thumbprints)" }
                            option value="certificateAuthority" { "X.509 CA-signed" }
                        }
                        label for="primary_thumbprint" { "Primary thumbprint (self-signed)" }
                        input #primary_thumbprint type="text" name="primary_thumbprint" placeholder="SHA-1 or SHA-256, hex";
                        label for="secondary_thumbprint" { "Secondary thumbprint (self-signed)" }
                        input #secondary_thumbprint type="text" name="secondary_thumbprint" placeholder="SHA-1 or SHA-256, hex";
                        button type="submit" { "Create" }
                    }
                }
            }
            form #filter method="get" action="/console/devices" {
                label for="q" { "Filter (a query, or a condition such as " code { "status = 'enabled'" } ")" }
                input #q type="text" name="q" value=(q.q);
                button type="submit" { "Apply" }
            }
            @match &answer {
                Err(e) => p.notice.error { (e.to_string()) },
                Ok(page) => {
                    div.scroll {
                        table #devices {
                            thead { tr { th { "Device id" } th { "Status" } th { "Connection" } th { "Last activity" } } }
                            tbody {
                                @for item in &page.items { (row(item)) }
                            }
                        }
                    }
                    @if page.items.is_empty() { p { "No devices." } }
                    @if let Some(next) = &page.continuation {
                        p { a #next-page href={ "/console/devices?q=" (segment(&q.q)) "&c=" (segment(next)) } { "Next page →" } }
                    }
                }
            }
        },
    )
}

fn row(item: &Value) -> Markup {
    let text = |name: &str| item.get(name).and_then(Value::as_str).unwrap_or("");
    let id = text("deviceId");
    html! {
        tr {
            td { @if id.is_empty() { (item.to_string()) } @else { a href={ "/console/devices/" (segment(id)) } { (id) } } }
            td { (text("status")) }
            td { (text("connectionState")) }
            td { (text("lastActivityTime")) }
        }
    }
}

/// What the create form posts.
#[derive(Debug, Deserialize)]
pub struct Create {
    #[serde(default)]
    device_id: String,
    /// `sas` (the default), `selfSigned` or `certificateAuthority`, as the REST API names them.
    #[serde(default)]
    auth: String,
    #[serde(default)]
    primary_thumbprint: String,
    #[serde(default)]
    secondary_thumbprint: String,
}

impl Create {
    /// The registry's device of this form: the hub checks it as it checks a REST `PUT`.
    fn spec(&self, id: &str) -> DeviceSpec {
        let given = |t: &str| Some(t.trim().to_owned()).filter(|t| !t.is_empty());
        let kind = given(&self.auth).unwrap_or_else(|| "sas".to_owned());
        let x509_thumbprint = (kind == "selfSigned").then(|| ThumbprintSpec {
            primary_thumbprint: given(&self.primary_thumbprint),
            secondary_thumbprint: given(&self.secondary_thumbprint),
        });
        DeviceSpec {
            device_id: Some(id.to_owned()),
            authentication: Some(AuthenticationSpec {
                kind: Some(kind),
                x509_thumbprint,
                ..AuthenticationSpec::default()
            }),
            ..DeviceSpec::default()
        }
    }
}

/// `POST /console/devices`: creates a device (generated keys, or X.509 by thumbprints or by
/// CA); a refusal is shown beside the field, and nothing is created.
pub async fn create(Posted(signed, form): Posted<Create>) -> Response {
    let id = form.device_id.trim().to_owned();
    let result: Result<(), HubError> = async {
        signed.may(Operation::DeviceWrite).await?;
        signed.hub.put_device(&id, &form.spec(&id), None).await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(target: "ServiceOperations", device_id = %id, policy = %signed.policy, "device created from the console");
            Redirect::to(&format!("/console/devices/{}", segment(&id))).into_response()
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let body = render(
                &signed,
                &ListQuery::default(),
                None,
                Some((&id, e.to_string())),
            )
            .await;
            (status, body).into_response()
        }
    }
}

//! Message routing: the routing document (routes, endpoints, enrichments, fallback) as the
//! hub holds it, its endpoints' health, and a test of the hub's routes against a sample
//! message (what IoT Hub's "test all routes" answers). Reading and testing need the
//! `RoutingRead` right the REST API asks for; a policy with `RoutingWrite` also gets the edit
//! forms of [`crate::routes_edit`].

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ironhub_auth::access::Operation;
use ironhub_hub::HubError;
use ironhub_wire::hub::{Route, RoutingSource, TestMessage};
use maud::{Markup, html};
use serde::Deserialize;

use crate::access::{Posted, Signed};
use crate::device::properties;
use crate::layout::{Notice, csrf, error_page, notice, page};
use crate::routes_edit::{self, Outcome, delete_button, edit_link};

/// The page's path.
pub const PATH: &str = "/console/routes";

/// The sources a test can take its message from, as the routing document names them.
pub const SOURCES: [&str; 4] = [
    "DeviceMessages",
    "TwinChangeEvents",
    "DeviceLifecycleEvents",
    "DeviceConnectionStateEvents",
];

/// `?edit=` names the route the edit form opens with.
#[derive(Debug, Default, Deserialize)]
pub struct Show {
    #[serde(default)]
    edit: String,
}

/// `GET /console/routes`.
pub async fn show(signed: Signed, Query(q): Query<Show>) -> Response {
    let edit = (!q.edit.is_empty()).then_some(q.edit.as_str());
    render(
        &signed,
        &TestForm::default(),
        None,
        edit,
        Outcome::default(),
    )
    .await
}

/// The page after an edit post, with what it left to show.
pub async fn render_with(signed: &Signed, outcome: Outcome) -> Response {
    render(signed, &TestForm::default(), None, None, outcome).await
}

/// What a test found: the routes that matched, or why the test could not run.
type Tested = Result<Vec<Route>, HubError>;

async fn render(
    signed: &Signed,
    form: &TestForm,
    tested: Option<Tested>,
    edit: Option<&str>,
    outcome: Outcome,
) -> Response {
    if let Err(e) = signed.may(Operation::RoutingRead).await {
        return error_page(signed, &e);
    }
    let hub = &signed.hub;
    let (config, etag, health) = match (hub.routing_config().await, hub.endpoint_health().await) {
        (Ok((config, etag)), Ok(health)) => (config, etag.unwrap_or_default(), health),
        (Err(e), _) | (_, Err(e)) => return error_page(signed, &e),
    };
    let can_write = signed.can(Operation::RoutingWrite).await;
    let status = match &tested {
        Some(Err(e)) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
        _ => outcome.status.unwrap_or(StatusCode::OK),
    };
    let refused = match &tested {
        Some(Err(e)) => Some(Notice::error(e)),
        _ => outcome.notice.clone(),
    };
    let custom = routes_edit::endpoints(&config);
    let body = html! {
        (notice(refused.as_ref()))
        section {
            h2 { "Routes" }
            @if config.routes.is_empty() {
                p { "No routes: device messages go to the built-in events endpoint." }
            } @else {
                div.scroll { table #routes {
                    thead { tr { th { "Name" } th { "Source" } th { "Condition" } th { "Endpoints" } th { "Enabled" } @if can_write { th {} } } }
                    tbody { @for r in &config.routes { (route_row(r, can_write.then_some((signed, etag.as_str())))) } }
                } }
            }
            p { "Fallback route: " b #fallback-state { (if config.fallback().is_enabled { "enabled" } else { "disabled" }) } }
        }
        section {
            h2 { "Custom endpoints" }
            @if custom.is_empty() {
                p { "No custom endpoints." }
            } @else {
                div.scroll { table #endpoints {
                    thead { tr { th { "Name" } th { "Kind" } th { "Settings" } @if can_write { th {} } } }
                    tbody {
                        @for (kind, name, settings) in &custom {
                            tr {
                                td { (name) }
                                td { (kind) }
                                td { code { (serde_json::Value::Object(settings.clone())) } }
                                @if can_write { td { (delete_button(signed, "/endpoint/delete", &etag, name, &format!("delete-endpoint-{name}"))) } }
                            }
                        }
                    }
                } }
            }
            @if !config.enrichments.is_empty() {
                h2 { "Enrichments" }
                div.scroll { table #enrichments {
                    thead { tr { th { "Key" } th { "Value" } th { "Endpoints" } @if can_write { th {} } } }
                    tbody {
                        @for e in &config.enrichments {
                            tr {
                                td { (e.key) }
                                td { code { (e.value) } }
                                td { (e.endpoint_names.join(", ")) }
                                @if can_write { td { (delete_button(signed, "/enrichment/delete", &etag, &e.key, &format!("delete-enrichment-{}", e.key))) } }
                            }
                        }
                    }
                } }
            }
        }
        @if can_write { (routes_edit::forms(signed, &config, &etag, edit, &outcome)) }
        section {
            h2 { "Endpoint health" }
            @if health.value.is_empty() {
                p { "No custom endpoints." }
            } @else {
                div.scroll { table #endpoint-health {
                    thead { tr { th { "Endpoint" } th { "Health" } th { "Last error" } } }
                    tbody {
                        @for e in &health.value {
                            tr {
                                td { (e.endpoint_id) }
                                td { (json_text(&e.health_status)) }
                                td { (e.last_known_error.as_deref().unwrap_or("")) " " (e.last_known_error_time.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                } }
            }
        }
        section {
            h2 { "Test the routes" }
            form #test-routes method="post" action={ (PATH) "/test" } {
                (csrf(signed))
                label for="source" { "Source" }
                select #source name="source" {
                    @for s in SOURCES { option value=(s) selected[form.source == s] { (s) } }
                }
                label for="test-body" { "Message body" }
                textarea #test-body name="body" { (form.body) }
                label for="test-properties" { "Application properties (one name=value a line)" }
                textarea #test-properties name="properties" { (form.properties) }
                button type="submit" { "Test" }
            }
            @if let Some(Ok(matched)) = &tested {
                @if matched.is_empty() {
                    p #test-result { "No route matches this message." }
                } @else {
                    p { "Matching routes:" }
                    ul #test-result { @for r in matched { li { (r.name) " → " (r.endpoint_names.join(", ")) } } }
                }
            }
        }
        details {
            summary { "Routing document" }
            pre #routing-json { (serde_json::to_string_pretty(&config).unwrap_or_default()) }
        }
    };
    (status, page(signed, "Message routing", body)).into_response()
}

/// A route's row; with `write` (the session and the page's ETag), its edit and delete controls.
fn route_row(r: &Route, write: Option<(&Signed, &str)>) -> Markup {
    html! {
        tr {
            td { (r.name) }
            td { (json_text(&r.source)) }
            td { code { (r.condition.as_deref().unwrap_or("true")) } }
            td { (r.endpoint_names.join(", ")) }
            td { (if r.is_enabled { "yes" } else { "no" }) }
            @if let Some((signed, etag)) = write {
                td { (edit_link(&r.name)) " " (delete_button(signed, "/route/delete", etag, &r.name, &format!("delete-route-{}", r.name))) }
            }
        }
    }
}

/// A value's JSON text without quotes (how the routing document spells an enum).
pub fn json_text(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// What the test form posts.
#[derive(Debug, Default, Deserialize)]
pub struct TestForm {
    #[serde(default)]
    source: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    properties: String,
}

/// `POST /console/routes/test`: the routes the sample message would take.
pub async fn test(Posted(signed, form): Posted<TestForm>) -> Response {
    let tested = async {
        signed.may(Operation::RoutingRead).await?;
        let source = RoutingSource::parse(form.source.trim()).map_err(HubError::ArgumentInvalid)?;
        let message = TestMessage {
            body: Some(form.body.clone()),
            app_properties: properties(&form.properties)?.into_iter().collect(),
            ..TestMessage::default()
        };
        signed
            .hub
            .test_all_routes(Some(source), &message, None)
            .await
    }
    .await;
    render(&signed, &form, Some(tested), None, Outcome::default()).await
}

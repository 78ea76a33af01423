//! Message routing: the routing document (routes, endpoints, enrichments, fallback) as the
//! hub holds it, its endpoints' health, and a test of the hub's routes against a sample
//! message (what IoT Hub's "test all routes" answers). Reading and testing need the
//! `RoutingRead` right the REST API asks for.

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

/// The page's path.
pub const PATH: &str = "/console/routes";

/// The sources a test can take its message from, as the routing document names them.
const SOURCES: [&str; 4] = [
    "DeviceMessages",
    "TwinChangeEvents",
    "DeviceLifecycleEvents",
    "DeviceConnectionStateEvents",
];

/// `GET /console/routes`.
pub async fn show(signed: Signed) -> Response {
    render(&signed, &TestForm::default(), None).await
}

/// What a test found: the routes that matched, or why the test could not run.
type Tested = Result<Vec<Route>, HubError>;

async fn render(signed: &Signed, form: &TestForm, tested: Option<Tested>) -> Response {
    if let Err(e) = signed.may(Operation::RoutingRead).await {
        return error_page(signed, &e);
    }
    let hub = &signed.hub;
    let (config, health) = match (hub.routing_config().await, hub.endpoint_health().await) {
        (Ok((config, _)), Ok(health)) => (config, health),
        (Err(e), _) | (_, Err(e)) => return error_page(signed, &e),
    };
    let status = match &tested {
        Some(Err(e)) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
        _ => StatusCode::OK,
    };
    let refused = match &tested {
        Some(Err(e)) => Some(Notice::error(e)),
        _ => None,
    };
    let body = html! {
        (notice(refused.as_ref()))
        section {
            h2 { "Routes" }
            @if config.routes.is_empty() {
                p { "No routes: device messages go to the built-in events endpoint." }
            } @else {
                div.scroll { table #routes {
                    thead { tr { th { "Name" } th { "Source" } th { "Condition" } th { "Endpoints" } th { "Enabled" } } }
                    tbody { @for r in &config.routes { (route_row(r)) } }
                } }
            }
        }
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

fn route_row(r: &Route) -> Markup {
    html! {
        tr {
            td { (r.name) }
            td { (json_text(&r.source)) }
            td { code { (r.condition.as_deref().unwrap_or("true")) } }
            td { (r.endpoint_names.join(", ")) }
            td { (if r.is_enabled { "yes" } else { "no" }) }
        }
    }
}

/// A value's JSON text without quotes (how the routing document spells an enum).
fn json_text(value: &impl serde::Serialize) -> String {
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
    render(&signed, &form, Some(tested)).await
}

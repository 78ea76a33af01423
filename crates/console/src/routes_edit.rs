//! Editing the routing document from the routes page: routes (add, edit, delete), custom
//! endpoints of the kinds the hub supports, the fallback route and enrichments. Every change
//! reads the document, applies the one edit and writes it back through
//! `Hub::set_routing_config` (what the REST API's `PUT /routing` calls), on the condition of
//! the ETag the page showed; the hub validates, so a refused document changes nothing. Needs
//! the `RoutingWrite` right.

use axum::http::StatusCode;
use axum::response::Response;
use ironhub_auth::access::Operation;
use ironhub_hub::HubError;
use ironhub_hub::routing::config::compile;
use ironhub_wire::hub::{
    BUILT_IN_ENDPOINT, Enrichment, FALLBACK_ROUTE, Route, RoutingConfig, RoutingSource,
    StreamEndpoint,
};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::access::{Posted, Signed};
use crate::layout::{Notice, csrf, segment};
use crate::routes::{PATH, SOURCES, json_text, render_with};

/// The endpoint kinds a custom endpoint can be, as the routing document names them.
pub const KINDS: [&str; 4] = ["eventHubs", "storageContainers", "webhooks", "natsSubjects"];

/// What an edit post leaves on the page: the refusal, and the route draft to show again.
#[derive(Debug, Default)]
pub struct Outcome {
    pub status: Option<StatusCode>,
    pub notice: Option<Notice>,
    /// The route form as posted, with the condition's error when the condition is the mistake.
    pub route: Option<(RouteForm, Option<String>)>,
    pub endpoint: Option<EndpointForm>,
}

impl Outcome {
    fn saved(what: &str) -> Outcome {
        Outcome {
            notice: Some(Notice::ok(format!(
                "{what}: the routing document is saved."
            ))),
            ..Outcome::default()
        }
    }
    fn refused(e: &HubError) -> Outcome {
        let notice = match e {
            HubError::PreconditionFailed(_) => Notice {
                ok: false,
                text: "Someone changed the routing document since this page was shown (its ETag is not the page's): nothing was saved. The page now shows the current document.".into(),
            },
            e => Notice::error(e),
        };
        Outcome {
            status: StatusCode::from_u16(e.status()).ok(),
            notice: Some(notice),
            ..Outcome::default()
        }
    }
}

/// Reads the document, checks it is still the one of `etag` (empty: none written yet),
/// applies `edit` and writes it back compare-and-swap.
async fn change(
    signed: &Signed,
    etag: &str,
    edit: impl FnOnce(&mut RoutingConfig) -> Result<(), HubError>,
) -> Result<(), HubError> {
    signed.may(Operation::RoutingWrite).await?;
    let (mut config, current) = signed.hub.routing_config().await?;
    if current.as_deref().unwrap_or_default() != etag {
        return Err(HubError::PreconditionFailed(etag.to_owned()));
    }
    edit(&mut config)?;
    signed
        .hub
        .set_routing_config(config, current.as_deref())
        .await?;
    Ok(())
}

/// The page after a post: saved, or refused with the refusal shown.
async fn answer(signed: &Signed, what: &str, result: Result<(), HubError>) -> Response {
    let outcome = match &result {
        Ok(()) => {
            tracing::info!(target: "ServiceOperations", policy = %signed.policy, change = what, "routing updated from the console");
            Outcome::saved(what)
        }
        Err(e) => Outcome::refused(e),
    };
    render_with(signed, outcome).await
}

fn names(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What the route form posts. `original` is the name of the route being edited (empty: a new
/// route).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouteForm {
    #[serde(default)]
    pub etag: String,
    #[serde(default)]
    pub original: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub condition: String,
    /// Endpoint names, comma-separated.
    #[serde(default)]
    pub endpoints: String,
    /// `on` when the checkbox is ticked; absent otherwise.
    #[serde(default)]
    pub enabled: Option<String>,
}

impl RouteForm {
    fn of(route: &Route, etag: &str) -> RouteForm {
        RouteForm {
            etag: etag.to_owned(),
            original: route.name.clone(),
            name: route.name.clone(),
            source: json_text(&route.source),
            condition: route.condition.clone().unwrap_or_default(),
            endpoints: route.endpoint_names.join(", "),
            enabled: route.is_enabled.then(|| "on".to_owned()),
        }
    }

    fn route(&self) -> Result<Route, HubError> {
        let condition = self.condition.trim();
        Ok(Route {
            name: self.name.trim().to_owned(),
            source: RoutingSource::parse(self.source.trim()).map_err(HubError::ArgumentInvalid)?,
            condition: (!condition.is_empty()).then(|| condition.to_owned()),
            endpoint_names: names(&self.endpoints),
            is_enabled: self.enabled.is_some(),
        })
    }
}

/// `POST /console/routes/route`: adds a route, or replaces the one named `original`.
pub async fn save_route(Posted(signed, form): Posted<RouteForm>) -> Response {
    let route = form.route();
    let result = match &route {
        Ok(route) => {
            let original = form.original.trim();
            change(&signed, &form.etag, |config| {
                let slot = config
                    .routes
                    .iter_mut()
                    .find(|r| !original.is_empty() && r.name.eq_ignore_ascii_case(original));
                match slot {
                    Some(slot) => *slot = route.clone(),
                    None if original.is_empty() => config.routes.push(route.clone()),
                    None => {
                        return Err(HubError::ArgumentInvalid(format!(
                            "The route '{original}' no longer exists."
                        )));
                    }
                }
                Ok(())
            })
            .await
        }
        Err(e) => Err(e.clone()),
    };
    match result {
        Ok(()) => answer(&signed, "Route saved", Ok(())).await,
        Err(e) => {
            // The query parser's message goes beside the condition when that is the mistake.
            let condition_error = route
                .ok()
                .and_then(|r| compile(&r).err())
                .map(|e| e.to_string());
            let mut outcome = Outcome::refused(&e);
            if condition_error.is_some() {
                outcome.notice = None;
            }
            outcome.route = Some((form, condition_error));
            render_with(&signed, outcome).await
        }
    }
}

/// What a delete button posts: the ETag and the name of what it deletes.
#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    etag: String,
    #[serde(default)]
    name: String,
}

fn missing(what: &str, name: &str) -> HubError {
    HubError::ArgumentInvalid(format!("The {what} '{name}' does not exist."))
}

/// Removes the entries of `list` whose `key` is `name` (ignoring case); none is an error.
fn remove<T>(
    list: &mut Vec<T>,
    key: impl Fn(&T) -> &String,
    what: &str,
    name: &str,
) -> Result<(), HubError> {
    let before = list.len();
    list.retain(|e| !key(e).eq_ignore_ascii_case(name));
    if list.len() == before {
        return Err(missing(what, name));
    }
    Ok(())
}

/// `POST /console/routes/route/delete`.
pub async fn delete_route(Posted(signed, form): Posted<DeleteForm>) -> Response {
    let result = change(&signed, &form.etag, |config| {
        remove(&mut config.routes, |r| &r.name, "route", &form.name)
    })
    .await;
    answer(&signed, "Route deleted", result).await
}

/// What the endpoint form posts: the kind, the name and the other settings as a JSON object.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EndpointForm {
    #[serde(default)]
    pub etag: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub settings: String,
}

impl EndpointForm {
    /// The endpoint's entry in the routing document: the settings with the name.
    fn entry(&self) -> Result<Map<String, Value>, HubError> {
        let text = self.settings.trim();
        let mut settings = if text.is_empty() {
            Map::new()
        } else {
            match serde_json::from_str(text) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(HubError::ArgumentInvalid(
                        "The endpoint's settings are a JSON object, such as {\"partitionCount\": 2}."
                            .into(),
                    ));
                }
            }
        };
        settings.insert("name".into(), Value::String(self.name.trim().to_owned()));
        Ok(settings)
    }
}

/// The custom endpoints of a document: (kind, name, settings without the name).
pub fn endpoints(config: &RoutingConfig) -> Vec<(&'static str, String, Map<String, Value>)> {
    let mut out = Vec::new();
    for e in &config.endpoints.event_hubs {
        let mut settings = match serde_json::to_value(e) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        settings.remove("name");
        out.push((KINDS[0], e.name.clone(), settings));
    }
    for (kind, list) in [
        (KINDS[1], &config.endpoints.storage_containers),
        (KINDS[2], &config.endpoints.webhooks),
        (KINDS[3], &config.endpoints.nats_subjects),
    ] {
        for v in list {
            let mut settings = v.as_object().cloned().unwrap_or_default();
            let name = settings.remove("name").map(|n| json_text(&n));
            out.push((kind, name.unwrap_or_default(), settings));
        }
    }
    out
}

/// Removes the endpoint `name` (any kind); whether there was one.
fn remove_endpoint(config: &mut RoutingConfig, name: &str) -> bool {
    let named = |v: &Value| {
        v.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    };
    let e = &mut config.endpoints;
    let before =
        e.event_hubs.len() + e.storage_containers.len() + e.webhooks.len() + e.nats_subjects.len();
    e.event_hubs.retain(|s| !s.name.eq_ignore_ascii_case(name));
    e.storage_containers.retain(|v| !named(v));
    e.webhooks.retain(|v| !named(v));
    e.nats_subjects.retain(|v| !named(v));
    before
        != e.event_hubs.len()
            + e.storage_containers.len()
            + e.webhooks.len()
            + e.nats_subjects.len()
}

/// `POST /console/routes/endpoint`: adds a custom endpoint, or replaces the one of that name.
pub async fn save_endpoint(Posted(signed, form): Posted<EndpointForm>) -> Response {
    let result = async {
        let entry = form.entry()?;
        change(&signed, &form.etag, |config| {
            let name = form.name.trim();
            remove_endpoint(config, name);
            let e = &mut config.endpoints;
            match form.kind.as_str() {
                "eventHubs" => e.event_hubs.push(
                    serde_json::from_value::<StreamEndpoint>(Value::Object(entry))
                        .map_err(|err| HubError::ArgumentInvalid(format!("The endpoint '{name}' is not valid: {err}.")))?,
                ),
                "storageContainers" => e.storage_containers.push(Value::Object(entry)),
                "webhooks" => e.webhooks.push(Value::Object(entry)),
                "natsSubjects" => e.nats_subjects.push(Value::Object(entry)),
                other => {
                    return Err(HubError::ArgumentInvalid(format!(
                        "'{other}' is not an endpoint kind: use eventHubs, storageContainers, webhooks or natsSubjects."
                    )));
                }
            }
            Ok(())
        })
        .await
    }
    .await;
    if let Err(e) = &result
        && !matches!(e, HubError::PreconditionFailed(_))
    {
        let mut outcome = Outcome::refused(e);
        outcome.endpoint = Some(form);
        return render_with(&signed, outcome).await;
    }
    answer(&signed, "Endpoint saved", result).await
}

/// `POST /console/routes/endpoint/delete`.
pub async fn delete_endpoint(Posted(signed, form): Posted<DeleteForm>) -> Response {
    let result = change(&signed, &form.etag, |config| {
        if remove_endpoint(config, form.name.trim()) {
            Ok(())
        } else {
            Err(missing("endpoint", &form.name))
        }
    })
    .await;
    answer(&signed, "Endpoint deleted", result).await
}

/// What the fallback form posts.
#[derive(Debug, Deserialize)]
pub struct FallbackForm {
    #[serde(default)]
    etag: String,
    #[serde(default)]
    condition: String,
    #[serde(default)]
    enabled: Option<String>,
}

/// `POST /console/routes/fallback`: the fallback route's condition and whether it is on.
pub async fn save_fallback(Posted(signed, form): Posted<FallbackForm>) -> Response {
    let result = change(&signed, &form.etag, |config| {
        let condition = form.condition.trim();
        config.fallback_route = Some(Route {
            name: FALLBACK_ROUTE.into(),
            source: RoutingSource::DeviceMessages,
            condition: Some(
                if condition.is_empty() {
                    "true"
                } else {
                    condition
                }
                .to_owned(),
            ),
            endpoint_names: vec![BUILT_IN_ENDPOINT.into()],
            is_enabled: form.enabled.is_some(),
        });
        Ok(())
    })
    .await;
    answer(&signed, "Fallback route saved", result).await
}

/// What the enrichment form posts.
#[derive(Debug, Deserialize)]
pub struct EnrichmentForm {
    #[serde(default)]
    etag: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    /// Endpoint names, comma-separated.
    #[serde(default)]
    endpoints: String,
}

/// `POST /console/routes/enrichment`: adds an enrichment, or replaces the one of that key.
pub async fn save_enrichment(Posted(signed, form): Posted<EnrichmentForm>) -> Response {
    let result = change(&signed, &form.etag, |config| {
        let key = form.key.trim();
        config
            .enrichments
            .retain(|e| !e.key.eq_ignore_ascii_case(key));
        config.enrichments.push(Enrichment {
            key: key.to_owned(),
            value: form.value.trim().to_owned(),
            endpoint_names: names(&form.endpoints),
        });
        Ok(())
    })
    .await;
    answer(&signed, "Enrichment saved", result).await
}

/// `POST /console/routes/enrichment/delete` (`name` is the enrichment's key).
pub async fn delete_enrichment(Posted(signed, form): Posted<DeleteForm>) -> Response {
    let result = change(&signed, &form.etag, |config| {
        remove(
            &mut config.enrichments,
            |e| &e.key,
            "enrichment",
            &form.name,
        )
    })
    .await;
    answer(&signed, "Enrichment deleted", result).await
}

/// A delete button for `name`, posting to `action` on the condition of `etag`.
pub fn delete_button(signed: &Signed, action: &str, etag: &str, name: &str, id: &str) -> Markup {
    html! {
        form.inline method="post" action={ (PATH) (action) } data-confirm={ "Delete " (name) "?" } {
            (csrf(signed))
            input type="hidden" name="etag" value=(etag);
            input type="hidden" name="name" value=(name);
            button.danger type="submit" id=(id) { "Delete" }
        }
    }
}

/// The edit forms, for a policy that may write: a route, an endpoint, the fallback route and
/// an enrichment. `edit` is the route the page was asked to edit (`?edit=`), `outcome` what a
/// refused post leaves to show again.
pub fn forms(
    signed: &Signed,
    config: &RoutingConfig,
    etag: &str,
    edit: Option<&str>,
    outcome: &Outcome,
) -> Markup {
    let (route, condition_error) = match (&outcome.route, edit) {
        (Some((form, error)), _) => (form.clone(), error.clone()),
        (None, Some(name)) => match config
            .routes
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
        {
            Some(r) => (RouteForm::of(r, etag), None),
            None => (RouteForm::default(), None),
        },
        (None, None) => (RouteForm::default(), None),
    };
    // The ETag a form carries is the one the page shows now; a draft refused for another
    // reason than a conflict keeps its own.
    let route_etag = match outcome.status {
        Some(StatusCode::PRECONDITION_FAILED) => etag.to_owned(),
        _ if outcome.route.is_some() => route.etag.clone(),
        _ => etag.to_owned(),
    };
    let endpoint = outcome.endpoint.clone().unwrap_or_default();
    let fallback = config.fallback();
    let editing = !route.original.is_empty();
    let endpoint_names: Vec<String> = std::iter::once(BUILT_IN_ENDPOINT.to_owned())
        .chain(endpoints(config).into_iter().map(|(_, n, _)| n))
        .collect();
    html! {
        section #edit-route {
            h2 { @if editing { "Edit the route " (route.original) } @else { "Add a route" } }
            form #route-form method="post" action={ (PATH) "/route" } {
                (csrf(signed))
                input type="hidden" name="etag" value=(route_etag);
                input type="hidden" name="original" value=(route.original);
                label for="route-name" { "Name" }
                input #route-name type="text" name="name" required value=(route.name);
                label for="route-source" { "Source" }
                select #route-source name="source" {
                    @for s in SOURCES { option value=(s) selected[route.source == s] { (s) } }
                }
                label for="route-condition" { "Condition (the routing query; empty is true)" }
                input #route-condition type="text" name="condition" value=(route.condition)
                    aria-describedby="route-condition-error";
                @if let Some(m) = &condition_error { span #route-condition-error.field-error role="alert" { (m) } }
                label for="route-endpoints" { "Endpoint (" (endpoint_names.join(", ")) ")" }
                input #route-endpoints type="text" name="endpoints" required value=(route.endpoints) list="endpoint-names";
                datalist #endpoint-names { @for n in &endpoint_names { option value=(n) {} } }
                label { input #route-enabled type="checkbox" name="enabled" checked[route.enabled.is_some() || !editing && outcome.route.is_none()]; " Enabled" }
                button type="submit" { @if editing { "Save route" } @else { "Add route" } }
                @if editing { " " a href=(PATH) { "Cancel" } }
            }
        }
        section #edit-endpoint {
            h2 { "Add or replace a custom endpoint" }
            form #endpoint-form method="post" action={ (PATH) "/endpoint" } {
                (csrf(signed))
                input type="hidden" name="etag" value=(etag);
                label for="endpoint-kind" { "Kind" }
                select #endpoint-kind name="kind" {
                    @for k in KINDS { option value=(k) selected[endpoint.kind == k] { (k) } }
                }
                label for="endpoint-name" { "Name" }
                input #endpoint-name type="text" name="name" required value=(endpoint.name);
                label for="endpoint-settings" { "Settings (a JSON object, e.g. " code { "{\"partitionCount\": 2}" } " for an event stream)" }
                textarea #endpoint-settings name="settings" { (endpoint.settings) }
                button type="submit" { "Save endpoint" }
            }
        }
        section #edit-fallback {
            h2 { "Fallback route" }
            p { "Device messages no route takes go to the built-in " code { "events" } " endpoint when it is enabled." }
            form #fallback-form method="post" action={ (PATH) "/fallback" } {
                (csrf(signed))
                input type="hidden" name="etag" value=(etag);
                label for="fallback-condition" { "Condition" }
                input #fallback-condition type="text" name="condition" value=(fallback.condition.as_deref().unwrap_or("true"));
                label { input #fallback-enabled type="checkbox" name="enabled" checked[fallback.is_enabled]; " Enabled" }
                button type="submit" { "Save fallback route" }
            }
        }
        section #edit-enrichment {
            h2 { "Add or replace an enrichment" }
            form #enrichment-form method="post" action={ (PATH) "/enrichment" } {
                (csrf(signed))
                input type="hidden" name="etag" value=(etag);
                label for="enrichment-key" { "Key" }
                input #enrichment-key type="text" name="key" required;
                label for="enrichment-value" { "Value (static, " code { "$twin.…" } " or " code { "$iothubname" } ")" }
                input #enrichment-value type="text" name="value" required;
                label for="enrichment-endpoints" { "Endpoints (comma-separated)" }
                input #enrichment-endpoints type="text" name="endpoints" required list="endpoint-names";
                button type="submit" { "Save enrichment" }
            }
        }
    }
}

/// The link that opens a route in the edit form.
pub fn edit_link(name: &str) -> Markup {
    html! { a href={ (PATH) "?edit=" (segment(name)) "#edit-route" } { "Edit" } }
}

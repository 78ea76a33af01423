//! One device's page: its identity and keys (masked until asked), its twin with desired
//! properties and tags editable (a stale ETag is shown as a conflict), a cloud-to-device
//! message with properties, a direct method call with its answer, live telemetry, and
//! enable/disable/delete. Each control is shown only when the policy may use it; each post is
//! authorized again.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::access::Operation;
use ironhub_hub::HubError;
use ironhub_hub::c2d::OutgoingMessage;
use ironhub_wire::hub::{DeviceSpec, MethodRequest, MethodResult, Twin};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::access::{Posted, Signed};
use crate::layout::{Notice, csrf, error_page, notice, page, secret, segment};

/// `?keys=show` shows the device's keys.
#[derive(Debug, Default, Deserialize)]
pub struct Show {
    #[serde(default)]
    keys: String,
}

/// What a post leaves on the page it renders again.
#[derive(Default)]
struct Outcome {
    status: Option<StatusCode>,
    notice: Option<Notice>,
    method: Option<MethodResult>,
    /// The desired properties and tags the user sent, kept in the form after a refusal.
    draft: Option<(String, String)>,
}

impl Outcome {
    fn ok(text: impl Into<String>) -> Outcome {
        Outcome {
            notice: Some(Notice::ok(text)),
            ..Outcome::default()
        }
    }
    fn error(e: &HubError) -> Outcome {
        Outcome {
            status: StatusCode::from_u16(e.status()).ok(),
            notice: Some(Notice::error(e)),
            ..Outcome::default()
        }
    }
}

/// `GET /console/devices/{id}`.
pub async fn show(signed: Signed, Path(id): Path<String>, Query(q): Query<Show>) -> Response {
    render(&signed, &id, q.keys == "show", Outcome::default()).await
}

/// JSON of a map without its `$` entries (`$metadata`, `$version`), pretty-printed.
fn editable(map: &Map<String, Value>) -> String {
    let kept: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    serde_json::to_string_pretty(&kept).unwrap_or_default()
}

async fn render(signed: &Signed, id: &str, reveal: bool, outcome: Outcome) -> Response {
    let hub = &signed.hub;
    let device = match signed.may(Operation::DeviceRead).await {
        Ok(()) => hub.get_device(id).await,
        Err(e) => Err(e),
    };
    let device = match device {
        Ok(d) => ironhub_hub::model::device_view(&d),
        Err(e) => return error_page(signed, &e),
    };
    let twin = match signed.may(Operation::TwinRead).await {
        Ok(()) => hub.get_twin(id).await.ok(),
        Err(_) => None,
    };
    let can_write = signed.can(Operation::DeviceWrite).await;
    let can_delete = signed.can(Operation::DeviceDelete).await;
    let can_twin = signed.can(Operation::TwinWrite).await;
    let can_c2d = signed.can(Operation::C2dSend).await;
    let can_method = signed.can(Operation::MethodInvoke).await;
    let can_events = signed.can(Operation::EventsRead).await;
    let modules = crate::modules::section(signed, id).await;
    let path = format!("/console/devices/{}", segment(id));
    let keys = &device.authentication.symmetric_key;
    let enabled = matches!(device.status, ironhub_wire::hub::DeviceStatus::Enabled);
    let body = html! {
        (notice(outcome.notice.as_ref()))
        section #identity {
            h2 { "Identity" }
            p { "Status: " b #device-status { (if enabled { "enabled" } else { "disabled" }) }
                " · connection: " b #connection-state { (format!("{:?}", device.connection_state)) }
                " · last activity: " (device.last_activity_time) }
            p { "Authentication: " (format!("{:?}", device.authentication.kind)) }
            @if let Some(primary) = &keys.primary_key {
                p { "Primary key: " (secret(primary, reveal)) }
                p { "Secondary key: " (secret(keys.secondary_key.as_deref().unwrap_or(""), reveal)) }
                p { "Connection string: " (secret(&format!("HostName={};DeviceId={};SharedAccessKey={primary}", hub.host_name(), device.device_id), reveal)) }
                p { @if reveal { a href=(path) { "Hide keys" } } @else { a #show-keys href={ (path) "?keys=show" } { "Show keys" } } }
            }
            @if can_write {
                form.inline #status-form method="post" action={ (path) "/status" } {
                    (csrf(signed))
                    input type="hidden" name="etag" value=(device.etag);
                    input type="hidden" name="status" value=(if enabled { "disabled" } else { "enabled" });
                    button type="submit" { (if enabled { "Disable" } else { "Enable" }) }
                }
            }
            @if can_delete {
                form.inline #delete-form method="post" action={ (path) "/delete" } data-confirm={ "Delete the device " (id) "?" } {
                    (csrf(signed))
                    button.danger type="submit" { "Delete" }
                }
            }
        }
        @if can_events {
            section {
                h2 { "Live telemetry" }
                p { "Messages the device sends from now on appear here." }
                ol.telemetry #telemetry data-events={ (path) "/events" } {}
            }
        }
        @if let Some(twin) = &twin {
            (twin_section(signed, "Twin", &path, twin, can_twin, outcome.draft.clone()))
        }
        (modules)
        @if can_c2d {
            section {
                h2 { "Cloud-to-device message" }
                form #c2d-form method="post" action={ (path) "/c2d" } {
                    (csrf(signed))
                    label for="c2d-body" { "Body" }
                    textarea #c2d-body name="body" {}
                    label for="c2d-properties" { "Properties (one name=value a line, e.g. Topic=/power)" }
                    textarea #c2d-properties name="properties" {}
                    button type="submit" { "Send" }
                }
            }
        }
        @if can_method {
            section {
                h2 { "Direct method" }
                form #method-form method="post" action={ (path) "/method" } {
                    (csrf(signed))
                    label for="method-name" { "Method name" }
                    input #method-name type="text" name="method_name" required;
                    label for="method-payload" { "Payload (JSON)" }
                    textarea #method-payload name="payload" { "{}" }
                    label for="method-timeout" { "Response timeout (seconds)" }
                    input #method-timeout type="number" name="timeout" value="30" min="5" max="300";
                    button type="submit" { "Invoke" }
                }
                @if let Some(result) = &outcome.method {
                    p { "Status: " b #method-status { (result.status) } }
                    pre #method-result { (serde_json::to_string_pretty(&result.payload).unwrap_or_default()) }
                }
            }
        }
    };
    let status = outcome.status.unwrap_or(StatusCode::OK);
    (status, page(signed, &device.device_id, body)).into_response()
}

/// A twin's section (a device's or a module's): the form that replaces its desired properties
/// and tags (with `draft`, what a refused post sent) on the condition of its ETag when the
/// policy may write twins, and the whole twin.
pub(crate) fn twin_section(
    signed: &Signed,
    heading: &str,
    path: &str,
    twin: &Twin,
    can_twin: bool,
    draft: Option<(String, String)>,
) -> Markup {
    html! {
        section #twin {
            h2 { (heading) }
            @if can_twin {
                @let (desired, tags) = draft.unwrap_or_else(|| (editable(&twin.properties.desired), serde_json::to_string_pretty(&twin.tags).unwrap_or_default()));
                form #twin-form method="post" action={ (path) "/twin" } {
                    (csrf(signed))
                    input type="hidden" name="etag" value=(twin.etag);
                    label for="desired" { "Desired properties (JSON)" }
                    textarea #desired name="desired" { (desired) }
                    label for="tags" { "Tags (JSON)" }
                    textarea #tags name="tags" { (tags) }
                    button type="submit" { "Save twin" }
                }
            }
            details {
                summary { "Whole twin (version " (twin.version) ", ETag " (twin.etag) ")" }
                pre #twin-json { (serde_json::to_string_pretty(twin).unwrap_or_default()) }
            }
        }
    }
}

/// The status form.
#[derive(Debug, Deserialize)]
pub struct StatusForm {
    status: String,
    #[serde(default)]
    etag: String,
}

/// `POST /console/devices/{id}/status`: enables or disables the device.
pub async fn set_status(
    Path(id): Path<String>,
    Posted(signed, form): Posted<StatusForm>,
) -> Response {
    let result = async {
        signed.may(Operation::DeviceWrite).await?;
        let spec = DeviceSpec {
            device_id: Some(id.clone()),
            status: Some(form.status.clone()),
            ..DeviceSpec::default()
        };
        signed.hub.put_device(&id, &spec, Some(&form.etag)).await
    }
    .await;
    let outcome = match result {
        Ok(d) => Outcome::ok(format!(
            "The device is now {}.",
            if d.status == ironhub_store::DeviceStatus::Enabled {
                "enabled"
            } else {
                "disabled"
            }
        )),
        Err(e) => Outcome::error(&e),
    };
    render(&signed, &id, false, outcome).await
}

/// `POST /console/devices/{id}/delete`.
pub async fn delete(
    Path(id): Path<String>,
    Posted(signed, crate::access::NoFields {}): Posted<crate::access::NoFields>,
) -> Response {
    let result = async {
        signed.may(Operation::DeviceDelete).await?;
        signed.hub.delete_device(&id, None).await
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(target: "ServiceOperations", device_id = %id, policy = %signed.policy, "device deleted from the console");
            Redirect::to("/console/devices").into_response()
        }
        Err(e) => render(&signed, &id, false, Outcome::error(&e)).await,
    }
}

/// The twin form.
#[derive(Debug, Deserialize)]
pub struct TwinForm {
    #[serde(default)]
    pub(crate) desired: String,
    #[serde(default)]
    pub(crate) tags: String,
    #[serde(default)]
    pub(crate) etag: String,
}

/// A JSON object typed into a form field named `what` (empty: `{}`).
fn json_object(text: &str, what: &str) -> Result<Value, HubError> {
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(HubError::ArgumentInvalid(format!(
            "{what} must be a JSON object."
        ))),
    }
}

impl TwinForm {
    /// The twin document the form stands for (tags and desired properties, to replace), if
    /// the policy may write twins.
    pub(crate) async fn document(&self, signed: &Signed) -> Result<Value, HubError> {
        signed.may(Operation::TwinWrite).await?;
        Ok(json!({
            "tags": json_object(&self.tags, "Tags")?,
            "properties": { "desired": json_object(&self.desired, "Desired properties")? },
        }))
    }
}

/// `POST /console/devices/{id}/twin`: replaces the desired properties and tags, on the
/// condition that the twin is still the one the page showed.
pub async fn update_twin(
    Path(id): Path<String>,
    Posted(signed, form): Posted<TwinForm>,
) -> Response {
    let result = async {
        let doc = form.document(&signed).await?;
        signed
            .hub
            .update_twin(&id, &doc, Some(&form.etag), true)
            .await
    }
    .await;
    let outcome = match result {
        Ok(twin) => Outcome::ok(format!("Twin saved (version {}).", twin.version)),
        Err(HubError::PreconditionFailed(_)) => Outcome {
            status: Some(StatusCode::PRECONDITION_FAILED),
            notice: Some(Notice {
                ok: false,
                text: "The twin changed since this page was loaded (its ETag no longer matches), so nothing was saved. Your edits are kept below; the whole twin shows its current values.".into(),
            }),
            draft: Some((form.desired.clone(), form.tags.clone())),
            ..Outcome::default()
        },
        Err(e) => Outcome {
            draft: Some((form.desired.clone(), form.tags.clone())),
            ..Outcome::error(&e)
        },
    };
    render(&signed, &id, false, outcome).await
}

/// The cloud-to-device form.
#[derive(Debug, Deserialize)]
pub struct C2dForm {
    #[serde(default)]
    body: String,
    #[serde(default)]
    properties: String,
}

/// `name=value` lines (blank lines skipped; a line without `=` is refused).
pub(crate) fn properties(text: &str) -> Result<Vec<(String, String)>, HubError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            line.split_once('=')
                .filter(|(name, _)| !name.trim().is_empty())
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| {
                    HubError::ArgumentInvalid(format!(
                        "The property line '{line}' is not name=value."
                    ))
                })
        })
        .collect()
}

/// `POST /console/devices/{id}/c2d`.
pub async fn send_c2d(Path(id): Path<String>, Posted(signed, form): Posted<C2dForm>) -> Response {
    let result = async {
        signed.may(Operation::C2dSend).await?;
        let message = OutgoingMessage {
            properties: properties(&form.properties)?,
            body: form.body.clone().into_bytes(),
            ..OutgoingMessage::default()
        };
        signed.hub.send_c2d(&id, message).await
    }
    .await;
    let outcome = match result {
        Ok(m) => Outcome::ok(format!("Message {} queued for the device.", m.message_id)),
        Err(e) => Outcome::error(&e),
    };
    render(&signed, &id, false, outcome).await
}

/// The direct method form.
#[derive(Debug, Deserialize)]
pub struct MethodForm {
    #[serde(default)]
    method_name: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    timeout: String,
}

/// `POST /console/devices/{id}/method`: calls the method and shows the device's answer.
pub async fn invoke_method(
    Path(id): Path<String>,
    Posted(signed, form): Posted<MethodForm>,
) -> Response {
    let result = async {
        signed.may(Operation::MethodInvoke).await?;
        let payload = if form.payload.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&form.payload)
                .map_err(|e| HubError::ArgumentInvalid(format!("The payload is not JSON: {e}.")))?
        };
        let timeout = form.timeout.trim().parse::<i64>().ok();
        let request = MethodRequest {
            method_name: Some(form.method_name.trim().to_owned()),
            payload,
            response_timeout_in_seconds: timeout,
            connect_timeout_in_seconds: None,
        };
        signed.hub.invoke_method(&id, request).await
    }
    .await;
    let outcome = match result {
        Ok(answer) => Outcome {
            method: Some(answer),
            ..Outcome::ok("The device answered.")
        },
        Err(e) => Outcome::error(&e),
    };
    render(&signed, &id, false, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_lines() {
        assert_eq!(
            properties("Topic=/power\n\n a = b=c ").ok(),
            Some(vec![
                ("Topic".to_owned(), "/power".to_owned()),
                ("a".to_owned(), "b=c".to_owned())
            ])
        );
        assert!(properties("novalue").is_err());
        assert!(properties("=x").is_err());
    }

    #[test]
    fn twin_fields_are_json_objects() {
        assert_eq!(json_object(" ", "Tags").ok(), Some(json!({})));
        assert!(json_object("[1]", "Tags").is_err());
        assert!(json_object("{\"a\":1}", "Tags").is_ok());
    }
}

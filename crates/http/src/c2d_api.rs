//! Cloud-to-device messaging over HTTPS, and the HTTPS device API.
//!
//! Service side (a policy with ServiceConnect):
//! - `POST /devices/{id}/messages/deviceBound`: sends a message (ironhub's addition; IoT Hub
//!   sends only over AMQP). The body is the payload; system properties come in the headers IoT
//!   Hub's HTTPS device API uses for them (`iothub-messageid`, `iothub-correlationid`,
//!   `iothub-userid`, `iothub-expiry`, `iothub-ack`, `Content-Type`, `Content-Encoding`), and
//!   application properties as `iothub-app-{name}` headers, in the request's order. HTTP
//!   lower-cases header names, so a name is percent-decoded: `iothub-app-%54opic` is `Topic`
//!   (ironhub's CLI encodes every upper-case letter so); plain names arrive in lower case.
//!   Answers **204 No Content** with the message id in an `iothub-messageid` header, like the
//!   other IoT Hub calls that queue something.
//! - `DELETE /devices/{id}/commands`: purges the device's queue (200,
//!   `{"totalMessagesPurged":n,"deviceId":".."}`).
//! - `GET /messages/serviceBound/feedback` (200 with a JSON array of feedback records and the
//!   batch's lock token in `ETag` and `iothub-locktoken`; 204 when there is none),
//!   `DELETE /messages/serviceBound/feedback/{lockToken}` (complete, 204) and
//!   `POST /messages/serviceBound/feedback/{lockToken}/abandon` (204).
//!
//! Device side (the device's SAS token, a DeviceConnect policy token, or its client
//! certificate), as IoT Hub's HTTPS device API and the SDKs that speak it:
//! - `GET /devices/{id}/messages/deviceBound`: the next message, locked (200, body, properties
//!   as `iothub-*` headers, lock token in a quoted `ETag`), or 204 when the queue is empty;
//! - `DELETE /devices/{id}/messages/deviceBound/{lockToken}` completes, with `?reject` rejects
//!   (204);
//! - `POST /devices/{id}/messages/deviceBound/{lockToken}/abandon` (204);
//! - `POST /devices/{id}/messages/events`: telemetry (204), single, or a batch in
//!   `application/vnd.microsoft.iothub.json`; a module's with its own token, there or on
//!   `POST /devices/{id}/modules/{mid}/messages/events`.
//!
//! Paths accept both `deviceBound` (IoT Hub's documentation) and `devicebound` (Node SDK).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use ironhub_hub::c2d::{
    MAX_MESSAGE_BYTES, OutgoingMessage, feedback_views, parse_ack, parse_expiry,
};
use ironhub_hub::model::azure_time;
use ironhub_hub::{Hub, HubError, MAX_TELEMETRY_BYTES, SystemProperties, Telemetry};
use ironhub_store::{C2dMessage, C2dSettle};

use crate::auth::{C2dFeedback, C2dPurge, C2dSend, DeviceAuth, IdentityAuth, ServiceAuth};
use crate::body::RawBody;
use crate::error::ApiError;
use crate::extract::Segments;
use crate::respond::{ServiceBoundLock, header_str, json_body, locked_service_message};

/// Prefix of application-property headers.
const APP_PREFIX: &str = "iothub-app-";
/// Content type of a telemetry batch.
const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.iothub.json";

/// The C2D and device routes (merged into the hub router).
pub(crate) fn routes() -> Router<Hub> {
    let mut router = Router::new()
        .route("/devices/{id}/commands", delete(purge))
        .route("/devices/{id}/messages/events", post(telemetry))
        .route(
            "/devices/{id}/modules/{mid}/messages/events",
            post(telemetry),
        )
        .route("/messages/serviceBound/feedback", get(receive_feedback))
        .route(
            "/messages/serviceBound/feedback/{token}",
            delete(complete_feedback),
        )
        .route(
            "/messages/serviceBound/feedback/{token}/abandon",
            post(abandon_feedback),
        );
    for bound in ["deviceBound", "devicebound"] {
        router = router
            .route(
                &format!("/devices/{{id}}/messages/{bound}"),
                get(device_receive).post(service_send),
            )
            .route(
                &format!("/devices/{{id}}/messages/{bound}/{{token}}"),
                delete(device_complete),
            )
            .route(
                &format!("/devices/{{id}}/messages/{bound}/{{token}}/abandon"),
                post(device_abandon),
            );
    }
    router
}

/// The `iothub-app-*` headers, in the request's order. A name may be percent-encoded
/// (`iothub-app-%54opic` is `Topic`): HTTP lower-cases header names, so this is how a sender
/// keeps upper-case letters, and characters header names cannot hold, in a property name.
fn app_properties(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let key = name.as_str().strip_prefix(APP_PREFIX)?;
            let key = percent_encoding::percent_decode_str(key)
                .decode_utf8_lossy()
                .into_owned();
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            Some((key, value))
        })
        .collect()
}

/// `POST /devices/{id}/messages/deviceBound` (service): see the module documentation.
async fn service_send(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<C2dSend>,
    headers: HeaderMap,
    RawBody(body): RawBody<MAX_MESSAGE_BYTES>,
) -> Result<Response, ApiError> {
    let owned = |name: &str| header_str(&headers, name).map(str::to_owned);
    let message = OutgoingMessage {
        message_id: owned("iothub-messageid"),
        correlation_id: owned("iothub-correlationid"),
        user_id: owned("iothub-userid"),
        content_type: owned("content-type"),
        content_encoding: owned("content-encoding"),
        expiry_time: header_str(&headers, "iothub-expiry")
            .map(parse_expiry)
            .transpose()?,
        ack: header_str(&headers, "iothub-ack")
            .map(parse_ack)
            .transpose()?
            .unwrap_or_default(),
        properties: app_properties(&headers),
        body: body.to_vec(),
    };
    let queued = hub.send_c2d(&id, message).await?;
    tracing::info!(target: "ServiceOperations", device_id = %id, message_id = %queued.message_id, "cloud-to-device message sent");
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&queued.message_id) {
        response.headers_mut().insert("iothub-messageid", v);
    }
    Ok(response)
}

/// `DELETE /devices/{id}/commands`.
async fn purge(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<C2dPurge>,
) -> Result<Response, ApiError> {
    let result = hub.purge_c2d(&id).await?;
    tracing::info!(target: "ServiceOperations", device_id = %id, purged = result.total_messages_purged, "cloud-to-device queue purged");
    Ok(json_body(&result))
}

/// `GET /messages/serviceBound/feedback`.
async fn receive_feedback(
    State(hub): State<Hub>,
    _: ServiceAuth<C2dFeedback>,
) -> Result<Response, ApiError> {
    let Some(batch) = hub.receive_feedback().await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let response = json_body(&feedback_views(&batch));
    Ok(locked_service_message(
        response,
        &ServiceBoundLock {
            lock_token: &batch.lock_token,
            to: "/messages/servicebound/feedback",
            enqueued_time: batch.enqueued_time,
            delivery_count: batch.delivery_count,
            content_type: "application/vnd.microsoft.iothub.feedback.json",
        },
    ))
}

async fn complete_feedback(
    State(hub): State<Hub>,
    Segments(token): Segments<String>,
    _: ServiceAuth<C2dFeedback>,
) -> Result<Response, ApiError> {
    hub.settle_feedback(&token, true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn abandon_feedback(
    State(hub): State<Hub>,
    Segments(token): Segments<String>,
    _: ServiceAuth<C2dFeedback>,
) -> Result<Response, ApiError> {
    hub.settle_feedback(&token, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The `iothub-*` headers of a message given to a device.
fn message_headers(m: &C2dMessage) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut set = |name: &str, value: &str| match (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_bytes(value.as_bytes()),
    ) {
        (Ok(n), Ok(v)) => {
            h.append(n, v);
        }
        _ => tracing::debug!(
            name,
            "a message property cannot be an HTTP header; left out"
        ),
    };
    if let Some(token) = &m.lock_token {
        set("etag", &format!("\"{token}\""));
    }
    set("iothub-messageid", &m.message_id);
    set("iothub-sequencenumber", &m.sequence_number.to_string());
    set("iothub-to", &m.to);
    set("iothub-expiry", &azure_time(Some(m.expiry_time)));
    set("iothub-enqueuedtime", &azure_time(Some(m.enqueued_time)));
    set("iothub-deliverycount", &m.delivery_count.to_string());
    set("iothub-ack", m.ack.as_str());
    if let Some(v) = &m.correlation_id {
        set("iothub-correlationid", v);
    }
    if let Some(v) = &m.user_id {
        set("iothub-userid", v);
    }
    if let Some(v) = &m.content_type {
        set("content-type", v);
    }
    if let Some(v) = &m.content_encoding {
        set("content-encoding", v);
    }
    for (k, v) in &m.properties {
        set(&format!("{APP_PREFIX}{}", k.to_ascii_lowercase()), v);
    }
    h
}

/// `GET /devices/{id}/messages/deviceBound` (device).
async fn device_receive(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: DeviceAuth,
) -> Result<Response, ApiError> {
    let Some(message) = hub.receive_c2d(&id).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    tracing::debug!(device_id = %id, message_id = %message.message_id, "cloud-to-device message received over HTTPS");
    let mut response = message.body.clone().into_response();
    response.headers_mut().remove(header::CONTENT_TYPE);
    response.headers_mut().extend(message_headers(&message));
    Ok(response)
}

/// `DELETE /devices/{id}/messages/deviceBound/{lockToken}[?reject]` (device).
async fn device_complete(
    State(hub): State<Hub>,
    Segments((id, token)): Segments<(String, String)>,
    _: DeviceAuth,
    uri: Uri,
) -> Result<Response, ApiError> {
    let reject = uri
        .query()
        .unwrap_or("")
        .split('&')
        .any(|p| p == "reject" || p.starts_with("reject="));
    let settle = if reject {
        C2dSettle::Reject
    } else {
        C2dSettle::Complete
    };
    hub.settle_c2d(&id, &token, settle).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /devices/{id}/messages/deviceBound/{lockToken}/abandon` (device).
async fn device_abandon(
    State(hub): State<Hub>,
    Segments((id, token)): Segments<(String, String)>,
    _: DeviceAuth,
) -> Result<Response, ApiError> {
    hub.settle_c2d(&id, &token, C2dSettle::Abandon).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The system property an HTTPS telemetry header (or a batch message's property) carries, as
/// IoT Hub's HTTPS device API names them (Azure docs, "Create and read IoT Hub messages",
/// system properties table); `None` for any other name.
fn system_header<'a>(
    system: &'a mut SystemProperties,
    name: &str,
) -> Option<&'a mut Option<String>> {
    Some(match name.to_ascii_lowercase().as_str() {
        "iothub-messageid" => &mut system.message_id,
        "iothub-correlationid" => &mut system.correlation_id,
        "iothub-userid" => &mut system.user_id,
        "content-type" => &mut system.content_type,
        "content-encoding" => &mut system.content_encoding,
        "iothub-expiry" => &mut system.expiry,
        _ => return None,
    })
}

/// One message of a batch (`{"body": base64, "properties": {"iothub-app-k": "v"}}`).
#[derive(Debug, serde::Deserialize)]
struct BatchItem {
    body: String,
    #[serde(default)]
    properties: serde_json::Map<String, serde_json::Value>,
}

/// `POST /devices/{id}/messages/events` (a device, or a module with its own token) and
/// `POST /devices/{id}/modules/{mid}/messages/events` (a module).
async fn telemetry(
    IdentityAuth(device): IdentityAuth,
    headers: HeaderMap,
    RawBody(body): RawBody<MAX_TELEMETRY_BYTES>,
) -> Result<Response, ApiError> {
    let content_type = header_str(&headers, "content-type").unwrap_or("");
    let messages = if content_type.starts_with(BATCH_CONTENT_TYPE) {
        let items: Vec<BatchItem> = serde_json::from_slice(&body)
            .map_err(|e| HubError::ArgumentInvalid(format!("The batch is not valid JSON: {e}.")))?;
        items
            .into_iter()
            .map(|item| {
                let body = ironhub_auth::b64::decode(item.body.as_bytes()).map_err(|e| {
                    HubError::ArgumentInvalid(format!("A batch body is not base64: {e}."))
                })?;
                let mut message = Telemetry {
                    body,
                    ..Telemetry::default()
                };
                for (key, value) in item.properties {
                    let value = match value {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    if let Some(app) = key.strip_prefix(APP_PREFIX) {
                        message.application.push((app.to_owned(), Some(value)));
                    } else if let Some(field) = system_header(&mut message.system, &key) {
                        *field = Some(value);
                    } else {
                        message.application.push((key, Some(value)));
                    }
                }
                Ok(message)
            })
            .collect::<Result<Vec<_>, HubError>>()?
    } else {
        let mut message = Telemetry {
            application: app_properties(&headers)
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect(),
            body: body.to_vec(),
            ..Telemetry::default()
        };
        for name in headers.keys() {
            if let Some(field) = system_header(&mut message.system, name.as_str()) {
                *field = header_str(&headers, name.as_str()).map(str::to_owned);
            }
        }
        vec![message]
    };
    match <[Telemetry; 1]>::try_from(messages) {
        Ok([message]) => device.send_telemetry(message).await?,
        Err(batch) => device.send_telemetry_batch(batch).await?,
    };
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_property_names_may_be_percent_encoded() {
        let mut h = HeaderMap::new();
        h.insert("iothub-app-k", HeaderValue::from_static("v"));
        h.insert("iothub-messageid", HeaderValue::from_static("m1"));
        h.insert("iothub-app-%54opic", HeaderValue::from_static("/power"));
        h.insert("iothub-app-a%20b%25", HeaderValue::from_static("x"));
        h.insert("iothub-app-50%", HeaderValue::from_static("y"));
        assert_eq!(
            app_properties(&h),
            [
                ("k".to_owned(), "v".to_owned()),
                ("Topic".to_owned(), "/power".to_owned()),
                ("a b%".to_owned(), "x".to_owned()),
                ("50%".to_owned(), "y".to_owned()),
            ]
        );
    }
}

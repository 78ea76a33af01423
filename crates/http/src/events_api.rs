//! Reading telemetry over HTTPS: an Event Hubs-style reader of the event log, with consumer
//! groups and checkpoints. IoT Hub serves this through its built-in Event Hubs endpoint
//! (AMQP); ironhub serves the same data as a streaming REST API until it speaks AMQP.
//!
//! Every route needs a policy with **ServiceConnect** (as reading the built-in endpoint does).
//! Every route takes `?endpoint=NAME` to read a custom event stream endpoint of message
//! routing instead of the built-in `events` (its own partitions, consumer groups and
//! checkpoints); an unknown name is `404` `EndpointNotFound`.
//!
//! - `GET /events` → `{"partitionCount":n,"partitions":[{"partitionId":"0",
//!   "beginningSequenceNumber":…,"lastEnqueuedSequenceNumber":…,"isEmpty":…}],"consumerGroups":[…]}`
//! - `GET /events/consumergroups` → `[{"name":"$Default"},…]`
//! - `GET /events/consumergroups/{group}` → `{"name":…,"partitions":[{…,"checkpointSequenceNumber":n|null}]}`
//! - `PUT /events/consumergroups/{group}` → `201` (created) or `200` (existed), the group
//! - `DELETE /events/consumergroups/{group}` → `204` (`$Default` cannot be deleted: `400`)
//! - `PUT /events/consumergroups/{group}/partitions/{p}/checkpoint` with
//!   `{"sequenceNumber":n}`: the group has processed partition `p` up to and including event
//!   `n` → `200` with the group
//! - `GET /events/consumergroups/{group}/stream?from=…&partition=N&deviceId=X&timeout=S`:
//!   `200` with `application/x-ndjson`, one JSON object a line, each flushed as its event
//!   arrives (chunked; the response lasts until the client leaves, or until `timeout` seconds
//!   pass without an event to send). `from` is `start` (oldest retained), `end` (default:
//!   only new events), `seq:N` / `offset:N` (offsets are sequence numbers), `time:RFC3339`
//!   (first enqueued at or after), or `checkpoint` (after the group's checkpoint; the oldest
//!   retained event in partitions without one). `partition` reads one partition; `deviceId`
//!   keeps only that device's events. Within a partition lines come in sequence order. Each
//!   line:
//!
//! ```json
//! {"partition":0,"sequenceNumber":5,"offset":"5","enqueuedTime":"2024-05-01T12:00:00.123Z",
//!  "deviceId":"dev1","moduleId":null,
//!  "systemProperties":{"iothub-connection-device-id":"dev1","message-id":"…",
//!    "iothub-enqueuedtime":"2024-05-01T12:00:00.123Z","x-opt-sequence-number":5,
//!    "x-opt-offset":"5","x-opt-enqueued-time":"2024-05-01T12:00:00.123Z",…},
//!  "applicationProperties":{"temp":"21","flag":null},
//!  "body":{"t":21},"bodyBase64":"eyJ0IjoyMX0="}
//! ```
//!
//! `bodyBase64` is the body exactly as the device sent it (base64): what an Event Hubs reader
//! gets as the AMQP message's data. `body` is a decoded view of it: the parsed JSON when the
//! message's `content-type` declares JSON (`application/json`, `…+json`) and the body parses,
//! else the body's text when it is UTF-8 (a JSON string keeps every character, so the text is
//! exact), else the base64 again with `"bodyEncoding":"base64"`. A body that only looks like
//! JSON, without a JSON content type, is text: `{"a":  1.50}` stays `"{\"a\":  1.50}"`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use base64::Engine as _;
use ironhub_hub::body::DeclaredBody;
use ironhub_hub::events::ReadFrom;
use ironhub_hub::{Hub, HubError};
use ironhub_store::Event;
use ironhub_wire::hub::{ConsumerGroupName, EventsProperties};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::auth::{EventsRead, EventsWrite, ServiceAuth};
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::extract::{QueryArgs, Segments};
use crate::respond::json_body;

/// Longest a reader waits in one go; the stream also notices a departed client this often.
const POLL: Duration = Duration::from_secs(15);
/// Longest `timeout` accepted, in seconds (a day).
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/events", get(properties))
        .route("/events/consumergroups", get(list_groups))
        .route(
            "/events/consumergroups/{group}",
            get(get_group).put(put_group).delete(delete_group),
        )
        .route(
            "/events/consumergroups/{group}/partitions/{partition}/checkpoint",
            put(put_checkpoint),
        )
        .route("/events/consumergroups/{group}/stream", get(stream))
}

/// The hub reading the event stream the `endpoint` query parameter names (a custom event
/// stream routing endpoint); without it, or with `events`, the built-in log.
struct EndpointHub(Hub);

impl FromRequestParts<Hub> for EndpointHub {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        struct Selector {
            endpoint: Option<String>,
        }
        let QueryArgs(selector) =
            <QueryArgs<Selector> as FromRequestParts<Hub>>::from_request_parts(parts, hub).await?;
        Ok(EndpointHub(
            hub.for_endpoint(selector.endpoint.as_deref()).await?,
        ))
    }
}

async fn properties(
    EndpointHub(hub): EndpointHub,
    _: ServiceAuth<EventsRead>,
) -> Result<Response, ApiError> {
    let partitions = hub.partitions().await?;
    Ok(json_body(&EventsProperties {
        consumer_groups: hub.consumer_groups().await?,
        partition_count: partitions.len(),
        partitions,
    }))
}

async fn list_groups(
    EndpointHub(hub): EndpointHub,
    _: ServiceAuth<EventsRead>,
) -> Result<Response, ApiError> {
    let groups: Vec<ConsumerGroupName> = hub
        .consumer_groups()
        .await?
        .into_iter()
        .map(|name| ConsumerGroupName { name })
        .collect();
    Ok(json_body(&groups))
}

async fn get_group(
    EndpointHub(hub): EndpointHub,
    Segments(group): Segments<String>,
    _: ServiceAuth<EventsRead>,
) -> Result<Response, ApiError> {
    Ok(json_body(&hub.consumer_group(&group).await?))
}

async fn put_group(
    EndpointHub(hub): EndpointHub,
    Segments(group): Segments<String>,
    _: ServiceAuth<EventsWrite>,
) -> Result<Response, ApiError> {
    let created = hub.create_consumer_group(&group).await?;
    if created {
        tracing::info!(target: "ServiceOperations", group = %group, "consumer group created");
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, json_body(&hub.consumer_group(&group).await?)).into_response())
}

async fn delete_group(
    EndpointHub(hub): EndpointHub,
    Segments(group): Segments<String>,
    _: ServiceAuth<EventsWrite>,
) -> Result<Response, ApiError> {
    hub.delete_consumer_group(&group).await?;
    tracing::info!(target: "ServiceOperations", group = %group, "consumer group deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Checkpoint {
    sequence_number: u64,
}

async fn put_checkpoint(
    EndpointHub(hub): EndpointHub,
    Segments((group, partition)): Segments<(String, u32)>,
    _: ServiceAuth<EventsWrite>,
    JsonBody(checkpoint): JsonBody<Checkpoint>,
) -> Result<Response, ApiError> {
    hub.set_checkpoint(&group, partition, checkpoint.sequence_number)
        .await?;
    Ok(json_body(&hub.consumer_group(&group).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamQuery {
    from: Option<String>,
    partition: Option<String>,
    device_id: Option<String>,
    timeout: Option<String>,
}

fn parse_query(q: &StreamQuery) -> Result<(ReadFrom, Option<u32>, Option<Duration>), HubError> {
    let from = match q.from.as_deref() {
        None | Some("") => ReadFrom::End,
        Some(f) => f.parse()?,
    };
    let partition = match q.partition.as_deref() {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u32>().map_err(|_| {
            HubError::ArgumentInvalid(format!("partition must be a partition number, not '{p}'."))
        })?),
    };
    let timeout = match q.timeout.as_deref() {
        None | Some("") => None,
        Some(t) => {
            let secs = t
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= MAX_TIMEOUT_SECS)
                .ok_or_else(|| {
                    HubError::ArgumentInvalid(format!(
                        "timeout must be a number of seconds between 0 and {MAX_TIMEOUT_SECS}, not '{t}'."
                    ))
                })?;
            Some(Duration::from_secs_f64(secs))
        }
    };
    Ok((from, partition, timeout))
}

async fn stream(
    EndpointHub(hub): EndpointHub,
    Segments(group): Segments<String>,
    QueryArgs(query): QueryArgs<StreamQuery>,
    _: ServiceAuth<EventsRead>,
) -> Result<Response, ApiError> {
    let (from, partition, timeout) = parse_query(&query)?;
    let device = query.device_id.filter(|d| !d.is_empty());
    let mut reader = hub.open_reader(&group, from, partition, device).await?;
    tracing::info!(target: "ServiceOperations", group = %group, ?from, ?partition, "event stream opened");

    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut idle_since = tokio::time::Instant::now();
        loop {
            let wait = match timeout {
                Some(t) => {
                    let left = t.saturating_sub(idle_since.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    left.min(POLL)
                }
                None => POLL,
            };
            let batch = tokio::select! {
                _ = tx.closed() => break,
                batch = reader.next_batch(wait) => batch,
            };
            let events = match batch {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream ended by a read failure");
                    break;
                }
            };
            if !events.is_empty() {
                idle_since = tokio::time::Instant::now();
            }
            for event in &events {
                let mut line = serde_json::to_vec(&event_json(event)).unwrap_or_default();
                line.push(b'\n');
                if tx.send(Bytes::from(line)).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut response = Response::new(Body::new(ChannelBody { rx }));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// A response body fed by a channel: each message is one chunk, sent as soon as it comes.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
    }
}

/// Milliseconds, UTC, `Z`: how event times are written.
fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One event as a stream line (see the module documentation).
fn event_json(event: &Event) -> Value {
    let enqueued = time_text(event.enqueued_time);
    let seq = event.sequence_number;
    let mut system: Map<String, Value> = event
        .event
        .system_properties
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    system.insert("iothub-enqueuedtime".into(), enqueued.clone().into());
    system.insert("x-opt-sequence-number".into(), seq.into());
    system.insert("x-opt-offset".into(), seq.to_string().into());
    system.insert("x-opt-enqueued-time".into(), enqueued.clone().into());
    let application: Map<String, Value> = event
        .event
        .application_properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::String)))
        .collect();
    let mut line = json!({
        "partition": event.partition,
        "sequenceNumber": seq,
        "offset": seq.to_string(),
        "enqueuedTime": enqueued,
        "deviceId": event.event.device_id,
        "moduleId": event.event.module_id,
        "systemProperties": system,
        "applicationProperties": application,
    });
    let body = &event.event.body;
    let declared = DeclaredBody::of(
        event
            .event
            .system_properties
            .get("content-type")
            .map(String::as_str),
    );
    line["bodyBase64"] = base64::engine::general_purpose::STANDARD
        .encode(body)
        .into();
    let parsed = match declared {
        DeclaredBody::Json => serde_json::from_slice::<Value>(body).ok(),
        DeclaredBody::Text | DeclaredBody::Undeclared => None,
    };
    match (parsed, std::str::from_utf8(body)) {
        (Some(value), _) => line["body"] = value,
        (None, Ok(text)) => line["body"] = Value::String(text.to_owned()),
        (None, Err(_)) => {
            line["body"] = line["bodyBase64"].clone();
            line["bodyEncoding"] = "base64".into();
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironhub_store::NewEvent;

    fn event(body: &[u8]) -> Event {
        typed_event(body, None)
    }

    fn typed_event(body: &[u8], content_type: Option<&str>) -> Event {
        let mut system_properties: std::collections::BTreeMap<String, String> =
            [("message-id".to_owned(), "m1".to_owned())].into();
        if let Some(ct) = content_type {
            system_properties.insert("content-type".to_owned(), ct.to_owned());
        }
        Event {
            partition: 2,
            sequence_number: 7,
            enqueued_time: "2024-05-01T12:00:00.123Z".parse().unwrap_or_default(),
            event: NewEvent {
                device_id: "dev1".into(),
                module_id: None,
                system_properties,
                application_properties: [
                    ("k".to_owned(), Some("v".to_owned())),
                    ("flag".to_owned(), None),
                ]
                .into(),
                body: body.to_vec(),
            },
        }
    }

    #[test]
    fn lines_carry_positions_properties_and_bodies() {
        let line = event_json(&typed_event(br#"{"t":21}"#, Some("application/json")));
        assert_eq!(line["partition"], 2);
        assert_eq!(line["sequenceNumber"], 7);
        assert_eq!(line["offset"], "7");
        assert_eq!(line["enqueuedTime"], "2024-05-01T12:00:00.123Z");
        assert_eq!(line["moduleId"], Value::Null);
        assert_eq!(line["body"], json!({"t": 21}));
        assert_eq!(line["bodyBase64"], "eyJ0IjoyMX0=");
        assert!(line.get("bodyEncoding").is_none());
        let sys = &line["systemProperties"];
        assert_eq!(sys["message-id"], "m1");
        assert_eq!(sys["x-opt-sequence-number"], 7);
        assert_eq!(sys["x-opt-offset"], "7");
        assert_eq!(sys["iothub-enqueuedtime"], "2024-05-01T12:00:00.123Z");
        assert_eq!(
            line["applicationProperties"],
            json!({"k": "v", "flag": null})
        );

        assert_eq!(event_json(&event(b"plain text"))["body"], "plain text");
        let binary = event_json(&event(&[0xff, 0x00, 0xfe]));
        assert_eq!(binary["body"], "/wD+");
        assert_eq!(binary["bodyBase64"], "/wD+");
        assert_eq!(binary["bodyEncoding"], "base64");
    }

    #[test]
    fn bodies_that_only_look_like_json_stay_text() {
        let spaced = "{\"a\":  1.50, \"n\": 123456789012345678901234567890}";
        let line = event_json(&event(spaced.as_bytes()));
        assert_eq!(line["body"], spaced);
        assert!(line.get("bodyEncoding").is_none());
        let line = event_json(&typed_event(spaced.as_bytes(), Some("text/plain")));
        assert_eq!(line["body"], spaced);
        // Declared JSON that does not parse is shown as its text.
        let line = event_json(&typed_event(b"{not json", Some("application/json")));
        assert_eq!(line["body"], "{not json");
        // The exact bytes are always there.
        let line = event_json(&typed_event(spaced.as_bytes(), Some("application/json")));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(line["bodyBase64"].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes, spaced.as_bytes());
    }

    #[test]
    fn queries() {
        let q = |from: Option<&str>, partition: Option<&str>, timeout: Option<&str>| StreamQuery {
            from: from.map(str::to_owned),
            partition: partition.map(str::to_owned),
            device_id: None,
            timeout: timeout.map(str::to_owned),
        };
        let (from, p, t) = parse_query(&q(None, None, None)).unwrap();
        assert_eq!((from, p, t), (ReadFrom::End, None, None));
        let (from, p, t) = parse_query(&q(Some("seq:3"), Some("1"), Some("2.5"))).unwrap();
        assert_eq!(from, ReadFrom::Sequence(3));
        assert_eq!(p, Some(1));
        assert_eq!(t, Some(Duration::from_millis(2500)));
        for bad in [
            q(Some("nowhere"), None, None),
            q(None, Some("x"), None),
            q(None, None, Some("-1")),
            q(None, None, Some("NaN")),
        ] {
            assert_eq!(parse_query(&bad).unwrap_err().status(), 400);
        }
    }
}

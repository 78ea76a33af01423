//! Live telemetry as server-sent events, read from the event log with the same reader the
//! `/events` stream uses (`Hub::open_reader`), from the log's end: one device's (its page), or
//! the whole hub's with an optional device filter (the telemetry page).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use ironhub_auth::access::Operation;
use ironhub_hub::events::{EventReader, ReadFrom};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::Signed;
use crate::layout::{error_page, page, segment};

/// How long one read of the log waits for events.
const WAIT: Duration = Duration::from_secs(10);
/// The consumer group the console reads with (a reader that sets no checkpoint).
const GROUP: &str = "$Default";

/// `GET /console/devices/{id}/events`.
pub async fn device_events(signed: Signed, Path(id): Path<String>) -> Response {
    stream(&signed, Some(id)).await
}

/// `?device=` on the telemetry page: one device's messages only (empty: every device's).
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    device: String,
}

impl Filter {
    fn device(&self) -> Option<String> {
        Some(self.device.trim().to_owned()).filter(|d| !d.is_empty())
    }
}

/// `GET /console/telemetry`: the whole hub's live telemetry, with a device filter.
pub async fn hub_page(signed: Signed, Query(filter): Query<Filter>) -> Response {
    if let Err(e) = signed.may(Operation::EventsRead).await {
        return error_page(&signed, &e);
    }
    let device = filter.device().unwrap_or_default();
    let events = format!("/console/telemetry/events?device={}", segment(&device));
    let body = html! {
        form #telemetry-filter method="get" action="/console/telemetry" {
            label for="device" { "Device id (empty: every device)" }
            input #device type="text" name="device" value=(device);
            button type="submit" { "Filter" }
        }
        p { "Messages devices send from now on appear here, newest first." }
        ol.telemetry #telemetry data-events=(events) data-from="show" {}
    };
    page(&signed, "Telemetry", body).into_response()
}

/// `GET /console/telemetry/events`: the stream of the telemetry page.
pub async fn hub_events(signed: Signed, Query(filter): Query<Filter>) -> Response {
    stream(&signed, filter.device()).await
}

/// The stream of the hub's telemetry from now on, of `device` only if given.
async fn stream(signed: &Signed, device: Option<String>) -> Response {
    let reader = match signed.may(Operation::EventsRead).await {
        Ok(()) => {
            signed
                .hub
                .open_reader(GROUP, ReadFrom::End, None, device)
                .await
        }
        Err(e) => Err(e),
    };
    match reader {
        Ok(reader) => Sse::new(events(reader))
            .keep_alive(KeepAlive::default())
            .into_response(),
        Err(e) => error_page(signed, &e),
    }
}

fn events(reader: EventReader) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(
        (reader, VecDeque::new()),
        |(mut reader, mut pending)| async move {
            loop {
                if let Some(event) = pending.pop_front() {
                    return Some((Ok(event), (reader, pending)));
                }
                match reader.next_batch(WAIT).await {
                    Ok(batch) => pending.extend(
                        batch
                            .iter()
                            .map(|e| Event::default().data(line(e).to_string())),
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "console telemetry stream ended by a read failure");
                        return None;
                    }
                }
            }
        },
    )
}

/// What the page shows of one message: when, from whom, its body as text, its application
/// properties.
fn line(event: &ironhub_store::Event) -> Value {
    let message = &event.event;
    let body = match std::str::from_utf8(&message.body) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("({} bytes, not text)", message.body.len()),
    };
    json!({
        "enqueuedTime": event.enqueued_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "deviceId": message.device_id,
        "moduleId": message.module_id,
        "body": body,
        "properties": message.application_properties,
    })
}

//! Live telemetry as server-sent events, read from the event log with the same reader the
//! `/events` stream uses (`Hub::open_reader`), from the log's end, filtered to one device.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::Path;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use ironhub_auth::access::Operation;
use ironhub_hub::events::{EventReader, ReadFrom};
use serde_json::{Value, json};

use crate::access::Signed;
use crate::layout::error_page;

/// How long one read of the log waits for events.
const WAIT: Duration = Duration::from_secs(10);
/// The consumer group the console reads with (a reader that sets no checkpoint).
const GROUP: &str = "$Default";

/// `GET /console/devices/{id}/events`.
pub async fn device_events(signed: Signed, Path(id): Path<String>) -> Response {
    let reader = match signed.may(Operation::EventsRead).await {
        Ok(()) => {
            signed
                .hub
                .open_reader(GROUP, ReadFrom::End, None, Some(id))
                .await
        }
        Err(e) => Err(e),
    };
    match reader {
        Ok(reader) => Sse::new(events(reader))
            .keep_alive(KeepAlive::default())
            .into_response(),
        Err(e) => error_page(&signed, &e),
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

/// What the page shows of one message: when, its body as text, its application properties.
fn line(event: &ironhub_store::Event) -> Value {
    let message = &event.event;
    let body = match std::str::from_utf8(&message.body) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("({} bytes, not text)", message.body.len()),
    };
    json!({
        "enqueuedTime": event.enqueued_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "body": body,
        "properties": message.application_properties,
    })
}

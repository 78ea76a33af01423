//! A message's properties as the headers of a webhook request or a NATS message (the same
//! names for both):
//!
//! - an application property `name` is `iothub-app-{name}` (as IoT Hub's HTTPS API names them);
//! - a system property keeps its name when it starts with `iothub-` or `dt-`, and gets
//!   `iothub-` in front otherwise (`message-id` → `iothub-message-id`,
//!   `content-type` → `iothub-content-type`);
//! - `iothub-enqueuedtime` is always there, and `ironhub-delivery-id` (`{partition}-{sequence}`
//!   of the delivery stream) lets a receiver drop the duplicates at-least-once delivery allows.
//!
//! Characters a header cannot carry (and `%`) are percent-encoded in names and values; a
//! property sent without a value has an empty one.

use ironhub_store::Event;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::record;

/// The header carrying the delivery's identity.
pub const DELIVERY_ID: &str = "ironhub-delivery-id";

/// Encoded in names: everything outside HTTP's token characters, and `%`.
const NAME_SET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'(')
    .add(b')')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'{')
    .add(b'}')
    .add(b'%');

/// Encoded in values: controls and `%` (non-ASCII is always encoded).
const VALUE_SET: &AsciiSet = &CONTROLS.add(b'%');

/// The event's identity in its delivery stream.
pub fn delivery_id(event: &Event) -> String {
    format!("{}-{}", event.partition, event.sequence_number)
}

/// The headers for `event`, names lower-case, in a stable order.
pub fn message_headers(event: &Event) -> Vec<(String, String)> {
    let name = |n: &str| {
        utf8_percent_encode(n, NAME_SET)
            .to_string()
            .to_ascii_lowercase()
    };
    let value = |v: &str| utf8_percent_encode(v, VALUE_SET).to_string();
    let mut out = Vec::new();
    for (k, v) in &event.event.system_properties {
        let k = if k.starts_with("iothub-") || k.starts_with("dt-") {
            name(k)
        } else {
            format!("iothub-{}", name(k))
        };
        out.push((k, value(v)));
    }
    if !event
        .event
        .system_properties
        .contains_key(record::ENQUEUED_TIME_PROPERTY)
    {
        out.push((
            record::ENQUEUED_TIME_PROPERTY.to_owned(),
            record::storage_time(record::enqueued_time(event)),
        ));
    }
    for (k, v) in &event.event.application_properties {
        out.push((
            format!("iothub-app-{}", name(k)),
            value(v.as_deref().unwrap_or_default()),
        ));
    }
    out.push((DELIVERY_ID.to_owned(), delivery_id(event)));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ironhub_store::NewEvent;

    use super::*;

    #[test]
    fn properties_become_headers() {
        let event = Event {
            partition: 2,
            sequence_number: 9,
            enqueued_time: chrono::DateTime::UNIX_EPOCH,
            event: NewEvent {
                device_id: "d".into(),
                module_id: None,
                system_properties: BTreeMap::from([
                    ("message-id".to_owned(), "m 1".to_owned()),
                    ("iothub-connection-device-id".to_owned(), "d".to_owned()),
                ]),
                application_properties: BTreeMap::from([
                    ("Temp/C".to_owned(), Some("21%é".to_owned())),
                    ("flag".to_owned(), None),
                ]),
                body: vec![],
            },
        };
        let headers = message_headers(&event);
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("iothub-message-id"), Some("m 1"));
        assert_eq!(get("iothub-connection-device-id"), Some("d"));
        assert_eq!(get("iothub-app-temp%2fc"), Some("21%25%C3%A9"));
        assert_eq!(get("iothub-app-flag"), Some(""));
        assert_eq!(
            get("iothub-enqueuedtime"),
            Some("1970-01-01T00:00:00.0000000Z")
        );
        assert_eq!(get(DELIVERY_ID), Some("2-9"));
        for (k, v) in &headers {
            assert!(http::HeaderName::from_bytes(k.as_bytes()).is_ok(), "{k}");
            assert!(http::HeaderValue::from_str(v).is_ok(), "{v}");
        }
    }
}

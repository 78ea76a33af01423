//! A message as IoT Hub's storage endpoint writes it: `EnqueuedTimeUtc`, `Properties` (the
//! application properties), `SystemProperties` (camel-cased names: `connectionDeviceId`,
//! `messageId`, `enqueuedTime`, …) and `Body`, as an Avro record of IoT Hub's schema or as a
//! JSON line.
//!
//! In JSON, `Body` is the message's own JSON when the message says `contentType`
//! `application/json` and `contentEncoding` `utf-8` and its body parses as JSON (written byte
//! for byte unless it spans lines, then compacted to keep one record a line); otherwise it is
//! the body in base64, as IoT Hub does ("Azure IoT Hub message routing: route to a storage
//! endpoint", encoding section).

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::types::Value as AvroValue;
use base64::Engine as _;
use chrono::{DateTime, Timelike, Utc};
use ironhub_store::Event;
use serde::Serialize;
use serde_json::value::RawValue;

/// The system property carrying the time IoT Hub enqueued the message, when routing stamped
/// it; otherwise the delivery stream's own enqueued time is used.
pub const ENQUEUED_TIME_PROPERTY: &str = "iothub-enqueuedtime";

/// IoT Hub's Avro schema for routed messages (record `Microsoft.Azure.Devices.Message`).
pub const AVRO_SCHEMA_JSON: &str = r#"{"type":"record","name":"Message","namespace":"Microsoft.Azure.Devices","fields":[{"name":"EnqueuedTimeUtc","type":"string"},{"name":"Properties","type":{"type":"map","values":"string"}},{"name":"SystemProperties","type":{"type":"map","values":"string"}},{"name":"Body","type":["null","bytes"]}]}"#;

/// The parsed [`AVRO_SCHEMA_JSON`].
pub static AVRO_SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    // A constant the tests parse: it cannot fail at run time.
    Schema::parse_str(AVRO_SCHEMA_JSON).unwrap_or(Schema::Null)
});

/// The enqueued time of a routed message (see [`ENQUEUED_TIME_PROPERTY`]).
pub fn enqueued_time(event: &Event) -> DateTime<Utc> {
    event
        .event
        .system_properties
        .get(ENQUEUED_TIME_PROPERTY)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(event.enqueued_time, |t| t.with_timezone(&Utc))
}

/// A time as IoT Hub writes it in storage: seven fractional digits and `Z`.
pub fn storage_time(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.nanosecond() % 1_000_000_000 / 100
    )
}

/// The name IoT Hub's storage endpoint gives a system property: `iothub-` dropped and the
/// rest camel-cased (`iothub-connection-device-id` → `connectionDeviceId`), the generation id
/// as IoT Hub names it, and `dt-` properties as they are.
pub fn storage_property_name(name: &str) -> String {
    match name {
        "iothub-connection-auth-generation-id" => return "connectionDeviceGenerationId".into(),
        "iothub-enqueuedtime" => return "enqueuedTime".into(),
        _ if name.starts_with("dt-") => return name.to_owned(),
        _ => {}
    }
    let bare = name.strip_prefix("iothub-").unwrap_or(name);
    let mut out = String::with_capacity(bare.len());
    let mut upper = false;
    for c in bare.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The record's two property maps.
fn properties(event: &Event) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let application = event
        .event
        .application_properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    let mut system: BTreeMap<String, String> = event
        .event
        .system_properties
        .iter()
        .map(|(k, v)| (storage_property_name(k), v.clone()))
        .collect();
    system.insert("enqueuedTime".into(), storage_time(enqueued_time(event)));
    (application, system)
}

fn body_is_json_text(event: &Event) -> bool {
    let props = &event.event.system_properties;
    let content_type = props.get("content-type").map(|s| s.to_ascii_lowercase());
    let encoding = props
        .get("content-encoding")
        .map(|s| s.to_ascii_lowercase());
    content_type.is_some_and(|t| t.starts_with("application/json"))
        && encoding.is_some_and(|e| e == "utf-8" || e == "utf8")
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonBody<'a> {
    Raw(&'a RawValue),
    Value(serde_json::Value),
    Base64(String),
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct JsonRecord<'a> {
    enqueued_time_utc: String,
    properties: BTreeMap<String, String>,
    system_properties: BTreeMap<String, String>,
    body: JsonBody<'a>,
}

/// The event as one JSON line (with its `\n`).
pub fn json_line(event: &Event) -> Vec<u8> {
    let (properties, system_properties) = properties(event);
    let bytes = &event.event.body;
    let raw = std::str::from_utf8(bytes)
        .ok()
        .filter(|_| body_is_json_text(event))
        .and_then(|text| {
            serde_json::from_str::<&RawValue>(text)
                .ok()
                .map(|r| (text, r))
        });
    let body = match raw {
        Some((text, raw)) if !text.contains(['\n', '\r']) => JsonBody::Raw(raw),
        Some((text, _)) => match serde_json::from_str(text) {
            Ok(value) => JsonBody::Value(value),
            Err(_) => JsonBody::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        },
        None => JsonBody::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
    };
    let record = JsonRecord {
        enqueued_time_utc: storage_time(enqueued_time(event)),
        properties,
        system_properties,
        body,
    };
    // Strings and maps of strings always serialise.
    let mut line = serde_json::to_vec(&record).unwrap_or_default();
    line.push(b'\n');
    line
}

/// The event as an Avro value of [`AVRO_SCHEMA`].
pub fn avro_record(event: &Event) -> AvroValue {
    let (properties, system_properties) = properties(event);
    let map = |m: BTreeMap<String, String>| {
        AvroValue::Map(
            m.into_iter()
                .map(|(k, v)| (k, AvroValue::String(v)))
                .collect::<HashMap<_, _>>(),
        )
    };
    AvroValue::Record(vec![
        (
            "EnqueuedTimeUtc".into(),
            AvroValue::String(storage_time(enqueued_time(event))),
        ),
        ("Properties".into(), map(properties)),
        ("SystemProperties".into(), map(system_properties)),
        (
            "Body".into(),
            AvroValue::Union(1, Box::new(AvroValue::Bytes(event.event.body.clone()))),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use ironhub_store::NewEvent;

    use super::*;

    fn event(content_type: Option<&str>, body: &[u8]) -> Event {
        let mut system = BTreeMap::from([
            ("iothub-connection-device-id".to_owned(), "dev1".to_owned()),
            (
                "iothub-connection-auth-generation-id".to_owned(),
                "637".to_owned(),
            ),
            ("message-id".to_owned(), "m1".to_owned()),
        ]);
        if let Some(t) = content_type {
            system.insert("content-type".into(), t.into());
            system.insert("content-encoding".into(), "utf-8".into());
        }
        Event {
            partition: 1,
            sequence_number: 7,
            enqueued_time: Utc
                .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
                .single()
                .expect("time")
                + chrono::Duration::milliseconds(108),
            event: NewEvent {
                device_id: "dev1".into(),
                module_id: None,
                system_properties: system,
                application_properties: BTreeMap::from([
                    ("temp".to_owned(), Some("hot".to_owned())),
                    ("flag".to_owned(), None),
                ]),
                body: body.to_vec(),
            },
        }
    }

    #[test]
    fn schema_parses() {
        assert!(matches!(*AVRO_SCHEMA, Schema::Record(_)));
    }

    #[test]
    fn json_lines_look_like_iot_hubs() {
        let line = json_line(&event(None, b"\x00\x01binary"));
        let text = String::from_utf8(line).expect("utf-8");
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["EnqueuedTimeUtc"], "2026-01-02T03:04:05.1080000Z");
        assert_eq!(v["Properties"]["temp"], "hot");
        assert_eq!(v["Properties"]["flag"], "");
        assert_eq!(v["SystemProperties"]["connectionDeviceId"], "dev1");
        assert_eq!(v["SystemProperties"]["connectionDeviceGenerationId"], "637");
        assert_eq!(v["SystemProperties"]["messageId"], "m1");
        assert_eq!(
            v["SystemProperties"]["enqueuedTime"],
            "2026-01-02T03:04:05.1080000Z"
        );
        assert_eq!(v["Body"], "AAFiaW5hcnk=");
    }

    #[test]
    fn json_bodies_stay_json_when_the_message_says_so() {
        let body = br#"{"t": 21.5, "s":"a\nb"}"#;
        let text =
            String::from_utf8(json_line(&event(Some("application/json"), body))).expect("utf-8");
        assert!(text.contains(r#""Body":{"t": 21.5, "s":"a\nb"}"#), "{text}");
        // Spanning lines: compacted, still one line.
        let text = String::from_utf8(json_line(&event(
            Some("application/json"),
            b"{\n\"a\": 1\n}",
        )))
        .expect("utf-8");
        assert!(text.contains(r#""Body":{"a":1}"#), "{text}");
        // Not JSON after all: base64.
        let text = String::from_utf8(json_line(&event(Some("application/json"), b"{oops")))
            .expect("utf-8");
        assert!(text.contains(r#""Body":"e29vcHM=""#), "{text}");
    }

    #[test]
    fn enqueued_time_prefers_the_hubs_stamp() {
        let mut e = event(None, b"x");
        e.event.system_properties.insert(
            ENQUEUED_TIME_PROPERTY.into(),
            "2025-05-06T07:08:09.1234567Z".into(),
        );
        assert_eq!(
            storage_time(enqueued_time(&e)),
            "2025-05-06T07:08:09.1234567Z"
        );
    }

    #[test]
    fn property_names_are_camel_cased() {
        assert_eq!(
            storage_property_name("iothub-connection-module-id"),
            "connectionModuleId"
        );
        assert_eq!(storage_property_name("correlation-id"), "correlationId");
        assert_eq!(storage_property_name("dt-dataschema"), "dt-dataschema");
    }
}

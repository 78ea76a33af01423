//! An event of the log as IoT Hub delivers it on its Event Hubs-compatible endpoint: the AMQP
//! properties the device set (`message-id`, `correlation-id`, `content-type`, …), the
//! `iothub-*` system properties and Event Hubs' `x-opt-*` position as message annotations,
//! the device's properties as application properties, and the body as one data section
//! (Azure docs, "Read device-to-cloud messages from the built-in endpoint").

use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{AmqpValue, Body, MessageId};
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Data, Message, MessageAnnotations, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, OrderedMap, SimpleValue, Symbol, Timestamp, Value};
use ironhub_hub::HubError;
use ironhub_store::Event;

/// Milliseconds since the epoch, AMQP's timestamp.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from_milliseconds(t.timestamp_millis())
}

/// An RFC 3339 time as an AMQP timestamp (how `absolute-expiry-time` is kept).
fn parse_time(text: &str) -> Option<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| timestamp(t.with_timezone(&chrono::Utc)))
}

/// The AMQP message an Event Hubs reader receives for `event`.
pub fn event_message(event: &Event) -> Message<Data> {
    let system = &event.event.system_properties;
    let mut properties = Properties::default();
    let mut annotations = OrderedMap::new();
    for (name, value) in system {
        match name.as_str() {
            "message-id" => properties.message_id = Some(MessageId::String(value.clone())),
            "correlation-id" => {
                properties.correlation_id = Some(MessageId::String(value.clone()));
            }
            "user-id" => properties.user_id = Some(Binary::from(value.as_bytes().to_vec())),
            "to" => properties.to = Some(value.clone()),
            "content-type" => properties.content_type = Some(Symbol::from(value.as_str())),
            "content-encoding" => {
                properties.content_encoding = Some(Symbol::from(value.as_str()));
            }
            "absolute-expiry-time" => properties.absolute_expiry_time = parse_time(value),
            _ => {
                annotations.insert(
                    OwnedKey::from(Symbol::from(name.as_str())),
                    Value::String(value.clone()),
                );
            }
        }
    }
    let enqueued = Value::Timestamp(timestamp(event.enqueued_time));
    annotations.insert(
        OwnedKey::from(Symbol::from("iothub-enqueuedtime")),
        enqueued.clone(),
    );
    annotations.insert(
        OwnedKey::from(Symbol::from("x-opt-sequence-number")),
        Value::Long(i64::try_from(event.sequence_number).unwrap_or(i64::MAX)),
    );
    annotations.insert(
        OwnedKey::from(Symbol::from("x-opt-offset")),
        Value::String(event.sequence_number.to_string()),
    );
    annotations.insert(
        OwnedKey::from(Symbol::from("x-opt-enqueued-time")),
        enqueued,
    );
    annotations.insert(
        OwnedKey::from(Symbol::from("x-opt-partition-key")),
        Value::String(event.event.device_id.clone()),
    );
    let mut application = OrderedMap::new();
    for (name, value) in &event.event.application_properties {
        let value = match value {
            Some(v) => SimpleValue::String(v.clone()),
            None => SimpleValue::Null,
        };
        application.insert(name.clone(), value);
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: Some(MessageAnnotations(annotations)),
        properties: Some(properties),
        application_properties: Some(ApplicationProperties(application)),
        body: Data(Binary::from(event.event.body.clone())),
        footer: None,
    }
}

/// A request's application property as text (strings and symbols both occur).
pub fn text_property(message: &Message<impl Sized>, name: &str) -> Option<String> {
    let value = message.application_properties.as_ref()?.0.get(name)?;
    match value {
        SimpleValue::String(s) => Some(s.clone()),
        SimpleValue::Symbol(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The text of an AMQP value (a string, a symbol or UTF-8 binary).
pub fn value_text(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Symbol(s) => Some(s.as_str()),
        Value::Binary(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// A message id of any AMQP type as text (UUIDs in their hyphenated form).
pub fn id_text(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        MessageId::Uuid(u) => ironhub_auth::uuid_text(&u.clone().into_inner()),
    }
}

/// An application property's value as text.
pub fn simple_text(value: &SimpleValue) -> String {
    match value {
        SimpleValue::String(s) => s.clone(),
        SimpleValue::Symbol(s) => s.as_str().to_owned(),
        SimpleValue::Bool(b) => b.to_string(),
        SimpleValue::Ubyte(n) => n.to_string(),
        SimpleValue::Ushort(n) => n.to_string(),
        SimpleValue::Uint(n) => n.to_string(),
        SimpleValue::Ulong(n) => n.to_string(),
        SimpleValue::Byte(n) => n.to_string(),
        SimpleValue::Short(n) => n.to_string(),
        SimpleValue::Int(n) => n.to_string(),
        SimpleValue::Long(n) => n.to_string(),
        SimpleValue::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

/// The body bytes: the data sections joined, or a string or binary value.
pub fn body_bytes(body: &Body<Value>) -> Result<Vec<u8>, HubError> {
    match body {
        Body::Data(batch) => Ok(batch.iter().flat_map(|d| d.0.iter().copied()).collect()),
        Body::Value(AmqpValue(Value::Binary(b))) => Ok(b.to_vec()),
        Body::Value(AmqpValue(Value::String(s))) => Ok(s.clone().into_bytes()),
        Body::Empty => Ok(Vec::new()),
        _ => Err(HubError::ArgumentInvalid(
            "The message body must be data sections, a string or binary.".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_read_as_text() {
        let id = MessageId::Uuid(fe2o3_amqp::types::primitives::Uuid::from([0x12; 16]));
        assert_eq!(id_text(&id), "12121212-1212-1212-1212-121212121212");
    }
}

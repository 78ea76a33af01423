//! The messages a device receives on its links, as IoT Hub sends them: cloud-to-device
//! messages (the sender's properties and `iothub-ack`), twin answers (`status` and `version`
//! annotations, the request's correlation id), desired-property patches (no correlation id)
//! and method calls (`IoThub-methodname`, the call id as correlation id).

use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Data, Message, MessageAnnotations, MessageId, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, OrderedMap, SimpleValue, Symbol, Value};
use ironhub_store::{C2dMessage, InputMessage};

use crate::message::timestamp;

/// A message for the device on one of its sender links.
pub type Outgoing = Message<Data>;

/// The application property naming the method a call is for.
pub const METHOD_NAME: &str = "IoThub-methodname";

/// A queued cloud-to-device message as the device receives it.
pub fn c2d_message(m: &C2dMessage) -> Message<Data> {
    let mut application = OrderedMap::new();
    if m.ack != ironhub_store::AckMode::None {
        application.insert(
            "iothub-ack".to_owned(),
            SimpleValue::String(m.ack.as_str().to_owned()),
        );
    }
    for (k, v) in &m.properties {
        application.insert(k.clone(), SimpleValue::String(v.clone()));
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            message_id: Some(MessageId::String(m.message_id.clone())),
            correlation_id: m.correlation_id.clone().map(MessageId::String),
            user_id: m
                .user_id
                .as_ref()
                .map(|u| Binary::from(u.as_bytes().to_vec())),
            to: Some(m.to.clone()),
            content_type: m.content_type.as_deref().map(Symbol::from),
            content_encoding: m.content_encoding.as_deref().map(Symbol::from),
            absolute_expiry_time: Some(timestamp(m.expiry_time)),
            ..Properties::default()
        }),
        application_properties: Some(ApplicationProperties(application)),
        body: Data(Binary::from(m.body.clone())),
        footer: None,
    }
}

/// A message to the device on its twin link: `status` (and `version`) annotations, the body.
pub fn twin_message(
    correlation_id: Option<MessageId>,
    status: Option<u16>,
    version: Option<u64>,
    body: Vec<u8>,
) -> Outgoing {
    let mut annotations = OrderedMap::new();
    if let Some(status) = status {
        annotations.insert(
            OwnedKey::Symbol(Symbol::from("status")),
            Value::Int(i32::from(status)),
        );
    }
    if let Some(version) = version {
        annotations.insert(
            OwnedKey::Symbol(Symbol::from("version")),
            Value::Long(i64::try_from(version).unwrap_or(i64::MAX)),
        );
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: Some(MessageAnnotations(annotations)),
        properties: Some(Properties {
            correlation_id,
            ..Properties::default()
        }),
        application_properties: None,
        body: Data(Binary::from(body)),
        footer: None,
    }
}

/// A desired-properties patch, as a twin message without a correlation id.
pub fn desired_patch(version: u64, body: Vec<u8>) -> Outgoing {
    twin_message(None, None, Some(version), body)
}

/// A method call as the device receives it.
pub fn method_request(call_id: u64, name: &str, payload: Vec<u8>) -> Outgoing {
    let mut application = OrderedMap::new();
    application.insert(METHOD_NAME.to_owned(), SimpleValue::String(name.to_owned()));
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            correlation_id: Some(MessageId::String(call_id.to_string())),
            ..Properties::default()
        }),
        application_properties: Some(ApplicationProperties(application)),
        body: Data(Binary::from(payload)),
        footer: None,
    }
}

/// The annotation naming the input a module's message arrives on (read by the Node
/// `ModuleClient`'s AMQP transport for its `inputMessage` event).
pub const INPUT_NAME: &str = "x-opt-input-name";

/// A message routed to a module's input: the sender's AMQP and application properties, the
/// input and the sending device and module as annotations.
pub fn input_message(m: &InputMessage) -> Outgoing {
    let text = |name: &str| m.system.get(name).cloned();
    let mut annotations = OrderedMap::new();
    annotations.insert(
        OwnedKey::Symbol(Symbol::from(INPUT_NAME)),
        Value::String(m.input.clone()),
    );
    for name in [
        "iothub-connection-device-id",
        "iothub-connection-module-id",
        "iothub-outputname",
    ] {
        if let Some(value) = text(name) {
            annotations.insert(OwnedKey::Symbol(Symbol::from(name)), Value::String(value));
        }
    }
    let mut application = OrderedMap::new();
    for (k, v) in &m.application {
        let v = v.clone().map_or(SimpleValue::Null, SimpleValue::String);
        application.insert(k.clone(), v);
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: Some(MessageAnnotations(annotations)),
        properties: Some(Properties {
            message_id: text("message-id").map(MessageId::String),
            correlation_id: text("correlation-id").map(MessageId::String),
            user_id: text("user-id").map(|u| Binary::from(u.into_bytes())),
            content_type: text("content-type").map(Symbol::from),
            content_encoding: text("content-encoding").map(Symbol::from),
            ..Properties::default()
        }),
        application_properties: Some(ApplicationProperties(application)),
        body: Data(Binary::from(m.body.clone())),
        footer: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn twin_answers_carry_status_version_and_the_correlation_id() {
        let m = twin_message(
            Some(MessageId::String("c1".into())),
            Some(204),
            Some(7),
            Vec::new(),
        );
        let annotations = m.message_annotations.unwrap();
        let get = |k: &str| {
            annotations
                .0
                .get(&OwnedKey::Symbol(Symbol::from(k)) as &OwnedKey)
                .cloned()
        };
        assert_eq!(get("status"), Some(Value::Int(204)));
        assert_eq!(get("version"), Some(Value::Long(7)));
        assert_eq!(
            m.properties.unwrap().correlation_id,
            Some(MessageId::String("c1".into()))
        );
        let patch = desired_patch(3, b"{}".to_vec());
        assert_eq!(patch.properties.unwrap().correlation_id, None);
    }

    #[test]
    fn an_input_message_names_its_input_and_keeps_the_sender_s_properties() {
        let m = input_message(&InputMessage {
            input: "in1".into(),
            system: [
                ("message-id", "m1"),
                ("content-type", "application/json"),
                ("iothub-connection-device-id", "edge"),
                ("iothub-connection-module-id", "filter"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            application: [("level".to_owned(), Some("info".to_owned()))].into(),
            body: b"hi".to_vec(),
        });
        let annotations = m.message_annotations.unwrap();
        let get = |k: &str| {
            annotations
                .0
                .get(&OwnedKey::Symbol(Symbol::from(k)) as &OwnedKey)
                .cloned()
        };
        assert_eq!(get(INPUT_NAME), Some(Value::String("in1".into())));
        assert_eq!(
            get("iothub-connection-module-id"),
            Some(Value::String("filter".into()))
        );
        let properties = m.properties.unwrap();
        assert_eq!(properties.message_id, Some(MessageId::String("m1".into())));
        assert_eq!(
            properties.content_type,
            Some(Symbol::from("application/json"))
        );
        assert_eq!(
            m.application_properties.unwrap().0.get("level"),
            Some(&SimpleValue::String("info".into()))
        );
        assert_eq!(m.body.0.to_vec(), b"hi");
    }
}

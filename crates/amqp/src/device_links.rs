//! A device's links (Azure docs, "Communicate with your IoT hub by using the AMQP Protocol",
//! device client section; the Node, C and Java device SDKs' AMQP transports): telemetry on
//! `…/messages/events`, cloud-to-device messages on `…/messages/devicebound` settled by the
//! device's outcome, the twin pair on `…/twin` (`operation`/`resource` annotations in,
//! `status`/`version` out, correlated by `correlation-id`) and the method pair on
//! `…/methods/devicebound` (`IoThub-methodname` out, `IoThub-status` back). A module
//! (`/devices/{id}/modules/{mid}/…`) has the same links but cloud-to-device, and receives its
//! input messages on `…/messages/events`. Each maps the wire to a domain call for the link's
//! identity (device or module); the rules are the hub's.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fe2o3_amqp::link::delivery::Delivery;
use fe2o3_amqp::types::definitions::AmqpError;
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::message::DecodeIntoMessage;
use fe2o3_amqp::types::messaging::{Body, Message, Outcome};
use fe2o3_amqp::types::primitives::{SimpleValue, Symbol, Timestamp, Value};
use fe2o3_amqp::{Receiver, Sender};
use ironhub_hub::{Hub, HubError, SystemProperties, Telemetry};
use ironhub_store::{C2dSettle, MethodResponse};
use tokio::sync::{mpsc, watch};

use crate::address::DeviceNode;
use crate::device::DeviceLink;
use crate::device_messages::{Outgoing, c2d_message, input_message, twin_message};
use crate::errors::{error, hub_error};
use crate::links::next_delivery;
use crate::message::{body_bytes, id_text, simple_text, value_text};

/// How often a cloud-to-device link looks at the queue without a hint (a lock that ran out).
const C2D_POLL: Duration = Duration::from_secs(15);
/// The twin resource a device subscribes to desired-property patches on.
const DESIRED_RESOURCE: &str = "/notifications/twin/properties/desired";
/// The application property of a method answer with its status.
const METHOD_STATUS: &str = "IoThub-status";

/// A link the device sends on: telemetry, twin requests, method answers.
pub async fn incoming(
    receiver: Receiver,
    node: DeviceNode,
    hub: Hub,
    link: DeviceLink,
    closed: watch::Receiver<bool>,
) {
    let mut receiver = receiver;
    if node == DeviceNode::DeviceBound {
        let _ = receiver
            .close_with_error(error(
                AmqpError::NotAllowed,
                "Cloud-to-device messages are received on this address, not sent.",
            ))
            .await;
        return;
    }
    let mut stop = link.stop.clone();
    let mut closed = closed;
    loop {
        let delivery = tokio::select! {
            d = next_delivery(&mut receiver, &mut closed) => d,
            e = DeviceLink::stopped(&mut stop) => {
                let _ = receiver.close_with_error(e).await;
                break;
            }
        };
        let Some(delivery) = delivery else {
            break;
        };
        match node {
            DeviceNode::Events => {
                if on_telemetry(&mut receiver, &delivery, &hub, &link)
                    .await
                    .is_err()
                {
                    break;
                }
            }
            DeviceNode::Twin => {
                let _ = receiver.accept(&delivery).await;
                on_twin_request(delivery.message(), &hub, &link).await;
            }
            DeviceNode::Methods => {
                let _ = receiver.accept(&delivery).await;
                on_method_answer(delivery.message(), &hub, &link);
            }
            DeviceNode::DeviceBound => break,
        }
    }
    link.leave();
}

/// A link the device receives on.
pub async fn outgoing(
    sender: Sender,
    node: DeviceNode,
    hub: Hub,
    link: DeviceLink,
    closed: watch::Receiver<bool>,
) {
    match node {
        DeviceNode::DeviceBound => deliver_c2d(sender, &hub, &link, closed).await,
        DeviceNode::Twin => {
            let (tx, rx) = mpsc::channel(16);
            set(&link.state.twin_out, Some(tx));
            pump(sender, rx, &link, closed).await;
            set(&link.state.twin_out, None);
            link.state.desired.store(false, Ordering::Relaxed);
        }
        DeviceNode::Methods => {
            let (tx, rx) = mpsc::channel(16);
            set(&link.state.methods_out, Some(tx));
            pump(sender, rx, &link, closed).await;
            set(&link.state.methods_out, None);
        }
        DeviceNode::Events if link.identity.module_id.is_some() => {
            // A module's input messages, routed by its device's `$edgeHub` routes.
            deliver_inputs(sender, &hub, &link, closed).await;
        }
        DeviceNode::Events => {
            let _ = sender
                .close_with_error(error(
                    AmqpError::NotAllowed,
                    "Telemetry is sent on this address, not received.",
                ))
                .await;
        }
    }
    link.leave();
}

fn set(
    slot: &std::sync::Mutex<Option<mpsc::Sender<Outgoing>>>,
    value: Option<mpsc::Sender<Outgoing>>,
) {
    if let Ok(mut slot) = slot.lock() {
        *slot = value;
    }
}

/// Sends what is queued for a sender link until the device detaches it, the connection ends
/// or the device's links are told to close.
async fn pump(
    mut sender: Sender,
    mut rx: mpsc::Receiver<Outgoing>,
    link: &DeviceLink,
    mut closed: watch::Receiver<bool>,
) {
    let mut stop = link.stop.clone();
    loop {
        let message = tokio::select! {
            m = rx.recv() => m,
            _ = sender.on_detach() => None,
            _ = closed.changed() => None,
            e = DeviceLink::stopped(&mut stop) => {
                let _ = sender.close_with_error(e).await;
                return;
            }
        };
        let Some(message) = message else {
            return;
        };
        if sender.send_batchable(message).await.is_err() {
            return;
        }
    }
}

/// A telemetry message: accepted once durable, rejected with the hub's reason (too large, …).
async fn on_telemetry(
    receiver: &mut Receiver,
    delivery: &Delivery<Body<Value>>,
    hub: &Hub,
    link: &DeviceLink,
) -> Result<(), ()> {
    let message = delivery.message();
    let sent = async {
        if *delivery.message_format() == Some(BATCH_FORMAT) {
            hub.send_telemetry_batch(&link.identity, batch(message)?)
                .await
        } else {
            hub.send_telemetry(&link.identity, telemetry(message)?)
                .await
        }
    }
    .await;
    let settled = match sent {
        Ok(_) => receiver.accept(delivery).await,
        Err(e) => {
            tracing::info!(device = %link.identity.key(), error = %e, "AMQP telemetry refused");
            receiver.reject(delivery, hub_error(&e)).await
        }
    };
    settled.map_err(|_| ())
}

/// The message format of a batched transfer (Microsoft's, as the C and .NET device SDKs and
/// the Event Hubs SDKs send it): its body is data sections, each an encoded AMQP message.
const BATCH_FORMAT: u32 = 0x8001_3700;

/// The messages of a batched transfer, in order, each as telemetry of its own; an error if
/// any section is not a whole AMQP message, so a malformed batch stores nothing.
fn batch(message: &Message<Body<Value>>) -> Result<Vec<Telemetry>, HubError> {
    let Body::Data(sections) = &message.body else {
        return Err(HubError::ArgumentInvalid(
            "A batched message's body must be data sections.".into(),
        ));
    };
    sections
        .iter()
        .enumerate()
        .map(|(i, section)| {
            let reader = serde_amqp::read::SliceReader::new(&section.0);
            let inner = <Body<Value> as DecodeIntoMessage>::decode_message_from_reader(reader)
                .map_err(|e| {
                    HubError::ArgumentInvalid(format!(
                        "Section {i} of the batch is not an AMQP message: {e}."
                    ))
                })?;
            telemetry(&inner)
        })
        .collect()
}

/// An AMQP time as IoT Hub writes it on an event.
fn time_text(t: &Timestamp) -> Option<String> {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t.milliseconds())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The application property a module's message names its output with.
const OUTPUT_NAME: &str = "iothub-outputname";

/// A device's AMQP message as telemetry: the AMQP properties are its system properties, the
/// `iothub-interface-id`, `dt-subject` and `dt-dataschema` annotations the Plug and Play
/// ones, `iothub-outputname` its output, the application properties its own.
fn telemetry(message: &Message<Body<Value>>) -> Result<Telemetry, HubError> {
    let p = message.properties.clone().unwrap_or_default();
    let mut system = SystemProperties {
        message_id: p.message_id.as_ref().map(id_text),
        correlation_id: p.correlation_id.as_ref().map(id_text),
        user_id: p
            .user_id
            .as_ref()
            .map(|u| String::from_utf8_lossy(u).into_owned()),
        content_type: p.content_type.map(|s| s.as_str().to_owned()),
        content_encoding: p.content_encoding.map(|s| s.as_str().to_owned()),
        expiry: p.absolute_expiry_time.as_ref().and_then(time_text),
        to: p.to,
        creation_time: p.creation_time.as_ref().and_then(time_text),
        ..SystemProperties::default()
    };
    if let Some(annotations) = &message.message_annotations {
        for (key, value) in annotations.0.iter() {
            let OwnedKey::Symbol(name) = key else {
                continue;
            };
            let field = match name.as_str() {
                "iothub-interface-id" => &mut system.interface_id,
                "dt-subject" => &mut system.component,
                "dt-dataschema" => &mut system.data_schema,
                _ => continue,
            };
            *field = value_text(value).map(str::to_owned);
        }
    }
    let mut application = Vec::new();
    for (k, v) in message
        .application_properties
        .iter()
        .flat_map(|a| a.0.iter())
    {
        let v = (!matches!(v, SimpleValue::Null)).then(|| simple_text(v));
        // A module names the output it sends to here (the Node `ModuleClient`'s
        // `sendOutputEvent`).
        if k == OUTPUT_NAME {
            system.output_name = v;
            continue;
        }
        application.push((k.clone(), v));
    }
    Ok(Telemetry {
        system,
        application,
        body: body_bytes(&message.body)?,
        ..Telemetry::default()
    })
}

/// Delivers the device's queue, one message at a time, each completed, rejected or
/// abandoned by the outcome the device settles it with (accepted, rejected, released or
/// modified), as IoT Hub maps them.
async fn deliver_c2d(
    mut sender: Sender,
    hub: &Hub,
    link: &DeviceLink,
    mut closed: watch::Receiver<bool>,
) {
    let id = &link.identity.device_id;
    let mut stop = link.stop.clone();
    loop {
        loop {
            let message = match hub.receive_c2d(id).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(device = %id, error = %e, "could not read the cloud-to-device queue");
                    break;
                }
            };
            let Some(token) = message.lock_token.clone() else {
                continue;
            };
            let outcome = tokio::select! {
                o = sender.send(c2d_message(&message)) => o.ok(),
                _ = closed.changed() => None,
                e = DeviceLink::stopped(&mut stop) => {
                    settle(hub, id, &token, C2dSettle::Abandon).await;
                    let _ = sender.close_with_error(e).await;
                    return;
                }
            };
            let Some(outcome) = outcome else {
                settle(hub, id, &token, C2dSettle::Abandon).await;
                return;
            };
            let how = match outcome {
                Outcome::Accepted(_) => C2dSettle::Complete,
                Outcome::Rejected(_) => C2dSettle::Reject,
                _ => C2dSettle::Abandon,
            };
            settle(hub, id, &token, how).await;
        }
        sender = match more_to_send(sender, &link.state.c2d, &mut closed, &mut stop).await {
            Some(sender) => sender,
            None => return,
        };
    }
}

/// Delivers a module's input queue in order, one message at a time: accepted or rejected,
/// it leaves the queue; released or modified, or unsettled when the link goes, it waits for
/// the module's next link.
async fn deliver_inputs(
    mut sender: Sender,
    hub: &Hub,
    link: &DeviceLink,
    mut closed: watch::Receiver<bool>,
) {
    let who = &link.identity;
    let mut stop = link.stop.clone();
    let mut cursor = 0;
    loop {
        loop {
            let next = match hub.pending_inputs(who, cursor, 1).await {
                Ok(mut pending) => pending.pop(),
                Err(e) => {
                    tracing::warn!(device = %who.key(), error = %e, "could not read the module's input queue");
                    None
                }
            };
            let Some(queued) = next else {
                break;
            };
            cursor = queued.sequence_number;
            let outcome = tokio::select! {
                o = sender.send(input_message(&queued.message)) => o.ok(),
                _ = closed.changed() => None,
                e = DeviceLink::stopped(&mut stop) => {
                    let _ = sender.close_with_error(e).await;
                    return;
                }
            };
            match outcome {
                Some(Outcome::Accepted(_) | Outcome::Rejected(_)) => {
                    if let Err(e) = hub.complete_input(who, queued.sequence_number).await {
                        tracing::warn!(device = %who.key(), error = %e, "could not remove a delivered input message");
                    }
                }
                Some(_) => {}
                None => return,
            }
        }
        sender = match more_to_send(sender, &link.state.inputs, &mut closed, &mut stop).await {
            Some(sender) => sender,
            None => return,
        };
    }
}

/// Waits until a sending link's queue may hold more (`hint`, or the poll interval) and gives
/// the link back; `None` when the link is gone instead (detached, the connection closed, or
/// the device's links told to close, which closes it with the reason).
async fn more_to_send(
    mut sender: Sender,
    hint: &tokio::sync::Notify,
    closed: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<Option<fe2o3_amqp::types::definitions::Error>>,
) -> Option<Sender> {
    tokio::select! {
        () = hint.notified() => {}
        () = tokio::time::sleep(C2D_POLL) => {}
        _ = sender.on_detach() => return None,
        _ = closed.changed() => return None,
        e = DeviceLink::stopped(stop) => {
            let _ = sender.close_with_error(e).await;
            return None;
        }
    }
    Some(sender)
}

async fn settle(hub: &Hub, device_id: &str, token: &str, how: C2dSettle) {
    if let Err(e) = hub.settle_c2d(device_id, token, how).await {
        // The lock ran out (the message goes out again) or the message expired.
        tracing::debug!(device = %device_id, error = %e, "cloud-to-device message not settled");
    }
}

/// A message annotation as text.
fn annotation(message: &Message<Body<Value>>, name: &str) -> Option<String> {
    let annotations = message.message_annotations.as_ref()?;
    let value = annotations
        .0
        .get(&OwnedKey::Symbol(Symbol::from(name)) as &OwnedKey)?;
    value_text(value).map(str::to_owned)
}

/// A twin request: GET, PATCH of the reported properties, PUT or DELETE of the desired-patch
/// subscription; the answer goes out on the device's twin link with the request's
/// correlation id.
async fn on_twin_request(request: &Message<Body<Value>>, hub: &Hub, link: &DeviceLink) {
    let who = &link.identity;
    let correlation_id = request
        .properties
        .as_ref()
        .and_then(|p| p.correlation_id.clone());
    let operation = annotation(request, "operation").unwrap_or_default();
    let resource = annotation(request, "resource");
    let answer: Result<(u16, Option<u64>, Vec<u8>), HubError> =
        match (operation.as_str(), resource.as_deref()) {
            ("GET", None | Some("")) => hub
                .identity_twin(who)
                .await
                .map(|twin| (200, None, twin.to_string().into_bytes())),
            ("PATCH", Some("/properties/reported")) => match body_bytes(&request.body) {
                Ok(body) => hub
                    .identity_patch_reported(who, &body)
                    .await
                    .map(|version| (204, Some(version), Vec::new())),
                Err(e) => Err(e),
            },
            ("PUT" | "DELETE", Some(DESIRED_RESOURCE)) => {
                link.state
                    .desired
                    .store(operation == "PUT", Ordering::Relaxed);
                Ok((200, None, Vec::new()))
            }
            _ => Err(HubError::ArgumentInvalid(format!(
                "The twin operation '{operation}' on {resource:?} is not supported."
            ))),
        };
    let message = match answer {
        Ok((status, version, body)) => twin_message(correlation_id, Some(status), version, body),
        Err(e) => twin_message(correlation_id, Some(e.status()), None, e.device_body()),
    };
    let out = link.state.twin_out.lock().ok().and_then(|o| o.clone());
    match out {
        Some(out) => {
            let _ = out.send(message).await;
        }
        None => {
            tracing::debug!(device = %who.key(), "a twin request without a twin link to answer on");
        }
    }
}

/// The device's answer to a method call: its status and payload complete the call.
fn on_method_answer(answer: &Message<Body<Value>>, hub: &Hub, link: &DeviceLink) {
    let call_id = answer
        .properties
        .as_ref()
        .and_then(|p| p.correlation_id.as_ref())
        .map(id_text)
        .and_then(|c| c.parse::<u64>().ok());
    let Some(call_id) = call_id else {
        tracing::debug!(device = %link.identity.key(), "a method answer without a known correlation id");
        return;
    };
    let pending = link
        .state
        .pending_methods
        .lock()
        .map(|mut p| p.remove(&call_id))
        .unwrap_or(false);
    if !pending {
        return;
    }
    let status = answer
        .application_properties
        .as_ref()
        .and_then(|a| a.0.get(METHOD_STATUS))
        .and_then(|v| simple_text(v).parse::<i32>().ok());
    let Some(status) = status else {
        tracing::debug!(device = %link.identity.key(), "a method answer without IoThub-status");
        return;
    };
    let payload = body_bytes(&answer.body).unwrap_or_default();
    hub.bus()
        .complete_method(call_id, Ok(MethodResponse { status, payload }));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use fe2o3_amqp::types::messaging::{
        AmqpValue, ApplicationProperties, Batch, Data, MessageAnnotations, MessageId, Properties,
    };
    use fe2o3_amqp::types::primitives::{Binary, OrderedMap};

    use super::*;

    #[test]
    fn a_device_message_becomes_telemetry() {
        let mut annotations = OrderedMap::new();
        annotations.insert(
            OwnedKey::Symbol(Symbol::from("iothub-interface-id")),
            Value::String("dtmi:x;1".into()),
        );
        let mut application = OrderedMap::new();
        application.insert("colour".to_owned(), SimpleValue::String("blue".into()));
        application.insert("n".to_owned(), SimpleValue::Int(3));
        application.insert("flag".to_owned(), SimpleValue::Null);
        // A module's output (Node's `sendOutputEvent`): a system property, not the sender's.
        application.insert(
            "iothub-outputname".to_owned(),
            SimpleValue::String("out1".into()),
        );
        let message = Message {
            header: None,
            delivery_annotations: None,
            message_annotations: Some(MessageAnnotations(annotations)),
            properties: Some(Properties {
                message_id: Some(MessageId::String("m1".into())),
                content_type: Some(Symbol::from("application/json")),
                absolute_expiry_time: Some(Timestamp::from_milliseconds(1_700_000_000_000)),
                ..Properties::default()
            }),
            application_properties: Some(ApplicationProperties(application)),
            body: Body::Data(Batch::new(vec![Data(Binary::from(b"{\"t\":1}".to_vec()))])),
            footer: None,
        };
        let t = telemetry(&message).unwrap();
        assert_eq!(t.system.message_id.as_deref(), Some("m1"));
        assert_eq!(t.system.content_type.as_deref(), Some("application/json"));
        assert_eq!(t.system.interface_id.as_deref(), Some("dtmi:x;1"));
        assert_eq!(t.system.expiry.as_deref(), Some("2023-11-14T22:13:20.000Z"));
        assert_eq!(t.system.output_name.as_deref(), Some("out1"));
        assert_eq!(
            t.application,
            [
                ("colour".to_owned(), Some("blue".to_owned())),
                ("n".to_owned(), Some("3".to_owned())),
                ("flag".to_owned(), None),
            ]
        );
        assert_eq!(t.body, b"{\"t\":1}");
    }

    /// A message with an id and a data body, encoded as one section of a batch.
    fn encoded(id: &str, body: &[u8]) -> Data {
        use fe2o3_amqp::types::messaging::message::__private::Serializable;
        let message = Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: Some(Properties {
                message_id: Some(MessageId::String(id.into())),
                ..Properties::default()
            }),
            application_properties: None,
            body: Body::<Value>::Data(Batch::new(vec![Data(Binary::from(body.to_vec()))])),
            footer: None,
        };
        Data(Binary::from(
            serde_amqp::to_vec(&Serializable(message)).unwrap(),
        ))
    }

    fn batch_of(sections: Vec<Data>) -> Message<Body<Value>> {
        Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: None,
            application_properties: None,
            body: Body::Data(Batch::new(sections)),
            footer: None,
        }
    }

    #[test]
    fn each_section_of_a_batch_is_a_message() {
        let got = batch(&batch_of(vec![encoded("a", b"1"), encoded("b", b"22")])).unwrap();
        let ids: Vec<_> = got.iter().map(|t| t.system.message_id.clone()).collect();
        assert_eq!(ids, [Some("a".to_owned()), Some("b".to_owned())]);
        assert_eq!(got[1].body, b"22");
    }

    #[test]
    fn a_section_that_is_not_a_message_refuses_the_batch() {
        let garbage = Data(Binary::from(vec![0x00, 0x53, 0x75, 0xa0, 0x09, b'x']));
        let err = batch(&batch_of(vec![encoded("a", b"1"), garbage])).unwrap_err();
        assert!(matches!(err, HubError::ArgumentInvalid(_)), "{err}");
        let value_body = Message {
            body: Body::Value(AmqpValue(Value::String("x".into()))),
            ..batch_of(Vec::new())
        };
        assert!(batch(&value_body).is_err());
    }
}

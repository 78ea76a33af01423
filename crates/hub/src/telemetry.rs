//! Device-to-cloud messages, whatever their transport: a typed message in ([`Telemetry`]), the
//! rules applied once, and the event appended to the log.
//!
//! Each adapter maps its own wire to [`Telemetry`]: MQTT its property bag (`$.mid`, …, in
//! `ironhub_mqtt::topics`), HTTPS its `iothub-*` headers, AMQP its message properties. The
//! rules (Azure docs, "Create and read IoT Hub messages", sections "System properties of
//! device-to-cloud messages" and "Anti-spoofing properties"):
//!
//! - a message (body and properties) is at most [`MAX_TELEMETRY_BYTES`];
//! - the hub stamps `iothub-connection-*`, `iothub-message-source` (and `dt-dataschema` from
//!   the model the device announced) itself: names starting with `iothub-` belong to the hub,
//!   so a device's application property named so is dropped, never stored where a consumer
//!   could take it for the hub's;
//! - `user-id` names the sender; the hub's own name is what IoT Hub sets on the messages it
//!   generates, so a device's `user-id` equal to it is dropped.

use std::collections::BTreeMap;

use ironhub_store::{Event, NewEvent};

use crate::routing::RoutingSource;
use crate::{DeviceIdentity, Hub, HubError};

/// IoT Hub's limit on one device-to-cloud message (body and properties).
pub const MAX_TELEMETRY_BYTES: usize = 256 * 1024;

/// The system properties a device may set on a device-to-cloud message, each under the name
/// IoT Hub gives it on the event (in brackets). Values are kept as the device sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemProperties {
    /// `message-id`
    pub message_id: Option<String>,
    /// `correlation-id`
    pub correlation_id: Option<String>,
    /// `user-id`
    pub user_id: Option<String>,
    /// `content-type`
    pub content_type: Option<String>,
    /// `content-encoding`
    pub content_encoding: Option<String>,
    /// `absolute-expiry-time`
    pub expiry: Option<String>,
    /// `to`
    pub to: Option<String>,
    /// `iothub-creation-time-utc`
    pub creation_time: Option<String>,
    /// `iothub-outputname`: a module's output.
    pub output_name: Option<String>,
    /// `iothub-interface-id`
    pub interface_id: Option<String>,
    /// `dt-subject`: the Plug and Play component the message is about.
    pub component: Option<String>,
    /// `dt-dataschema`
    pub data_schema: Option<String>,
}

impl SystemProperties {
    /// The properties that are set, under IoT Hub's names.
    fn named(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("message-id", &self.message_id),
            ("correlation-id", &self.correlation_id),
            ("user-id", &self.user_id),
            ("content-type", &self.content_type),
            ("content-encoding", &self.content_encoding),
            ("absolute-expiry-time", &self.expiry),
            ("to", &self.to),
            ("iothub-creation-time-utc", &self.creation_time),
            ("iothub-outputname", &self.output_name),
            ("iothub-interface-id", &self.interface_id),
            ("dt-subject", &self.component),
            ("dt-dataschema", &self.data_schema),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
    }
}

/// What the transport says about a message beyond its properties.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Annotations {
    /// MQTT's retain flag: not kept as a retained message, but delivered as the
    /// `mqtt-retain: true` application property, as IoT Hub does.
    pub retain: bool,
    /// Sent by the hub on the device's behalf, as its MQTT Will: marked
    /// `iothub-MessageType: Will`.
    pub will: bool,
}

/// A device-to-cloud message as a transport received it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Telemetry {
    pub system: SystemProperties,
    /// The sender's properties, in order; `None` is a property without a value (MQTT's `k`
    /// without `=`). A name given twice keeps its last value.
    pub application: Vec<(String, Option<String>)>,
    pub body: Vec<u8>,
    pub annotations: Annotations,
}

impl Telemetry {
    /// The size IoT Hub's limit counts: the body, the application properties' names and
    /// values, the system properties' values.
    fn size(&self) -> usize {
        let system: usize = self.system.named().map(|(_, v)| v.len()).sum();
        let application: usize = self
            .application
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
            .sum();
        self.body.len() + system + application
    }
}

/// What became of a run of messages sent one after another
/// ([`Hub::send_telemetry_run`](crate::Hub::send_telemetry_run)).
#[derive(Debug)]
pub struct TelemetryRun {
    /// How many of the messages, from the first, are durable.
    pub durable: usize,
    /// Why the message after those is not: it and every later one were not appended.
    pub refused: Option<HubError>,
}

/// Hands events to `send` one at a time, in order, until one fails: how many were sent, and
/// why the next was not.
pub(crate) async fn one_by_one<F>(
    events: Vec<NewEvent>,
    mut send: impl FnMut(NewEvent) -> F,
) -> (usize, Option<HubError>)
where
    F: Future<Output = Result<(), HubError>>,
{
    let mut sent = 0;
    for event in events {
        if let Err(e) = send(event).await {
            return (sent, Some(e));
        }
        sent += 1;
    }
    (sent, None)
}

/// Whether a property name is the hub's to set (`iothub-*`, in any case).
pub fn is_reserved_name(name: &str) -> bool {
    name.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("iothub-"))
}

impl Hub {
    /// Sends a device-to-cloud message where routing says (by default, the built-in event
    /// log); returns the events as appended, one per endpoint, once all are durable.
    pub(crate) async fn send_telemetry_unobserved(
        &self,
        who: &DeviceIdentity,
        message: Telemetry,
    ) -> Result<Vec<Event>, HubError> {
        self.judge_telemetry(who, &message)?;
        let event = self.stamped(who, message);
        let events = self.deliver_telemetry(who, event).await?;
        self.touch(who).await;
        Ok(events)
    }

    /// One message's checks before anything is stored: the throttle admits it, and it is
    /// within IoT Hub's size limit.
    fn judge_telemetry(&self, who: &DeviceIdentity, message: &Telemetry) -> Result<(), HubError> {
        self.admit(crate::throttle::Operation::DeviceToCloud, Some(&who.key()))?;
        if message.size() > MAX_TELEMETRY_BYTES {
            return Err(HubError::MessageTooLarge(MAX_TELEMETRY_BYTES));
        }
        Ok(())
    }

    /// Sends messages a device sent one after another (MQTT PUBLISHes read together), each
    /// judged on its own as [`Hub::send_telemetry`] judges one, in order: the first refused
    /// stops the run, so what is durable is always a prefix of the run and the device's events
    /// keep its order. A device's run is appended as one batch per endpoint (one group
    /// commit each); a module's messages are delivered one at a time.
    pub(crate) async fn send_telemetry_run_unobserved(
        &self,
        who: &DeviceIdentity,
        messages: Vec<Telemetry>,
    ) -> TelemetryRun {
        let mut stamped = Vec::with_capacity(messages.len());
        let mut refused = None;
        for message in messages {
            if let Err(e) = self.judge_telemetry(who, &message) {
                refused = Some(e);
                break;
            }
            stamped.push(self.stamped(who, message));
        }
        let (durable, failed) = self.deliver_telemetry_run(who, stamped).await;
        if durable > 0 {
            self.touch(who).await;
        }
        TelemetryRun {
            durable,
            refused: failed.or(refused),
        }
    }

    /// Appends a run of stamped messages in order; how many, from the first, are durable,
    /// and why the next is not.
    async fn deliver_telemetry_run(
        &self,
        who: &DeviceIdentity,
        events: Vec<NewEvent>,
    ) -> (usize, Option<HubError>) {
        // A module's messages also go to the inputs its `$edgeHub` routes name, one by one.
        if who.module_id.is_none() {
            return self.route_messages_in_order(events).await;
        }
        one_by_one(events, |event| async move {
            self.deliver_telemetry(who, event).await.map(drop)
        })
        .await
    }

    /// Sends a batch of device-to-cloud messages (AMQP's batched transfer, the HTTPS device
    /// API's batch), each as its own event, in order; returns every event appended. The
    /// batch is judged whole before anything is appended: IoT Hub's size limit counts the
    /// batch as one message, and each message is admitted by the throttle, so a batch too
    /// large, throttled or empty stores nothing. The messages are then appended as one batch
    /// per endpoint ([`Hub::route_batch`]): on an event log with atomic batches (the embedded
    /// one), a failed append leaves none of them.
    pub(crate) async fn send_telemetry_batch_unobserved(
        &self,
        who: &DeviceIdentity,
        messages: Vec<Telemetry>,
    ) -> Result<Vec<Event>, HubError> {
        if messages.is_empty() {
            return Err(HubError::ArgumentInvalid(
                "The batch holds no message.".into(),
            ));
        }
        if messages.iter().map(Telemetry::size).sum::<usize>() > MAX_TELEMETRY_BYTES {
            return Err(HubError::MessageTooLarge(MAX_TELEMETRY_BYTES));
        }
        for _ in &messages {
            self.admit(crate::throttle::Operation::DeviceToCloud, Some(&who.key()))?;
        }
        let stamped: Vec<NewEvent> = messages.into_iter().map(|m| self.stamped(who, m)).collect();
        let to_inputs: Vec<_> = match who.module_id {
            Some(_) => stamped.iter().map(input_parts).collect(),
            None => Vec::new(),
        };
        let routed = self
            .route_batch(RoutingSource::DeviceMessages, stamped)
            .await?;
        for (system, application, body) in &to_inputs {
            self.route_to_inputs(who, system, application, body).await;
        }
        self.touch(who).await;
        Ok(routed.into_iter().flatten().collect())
    }

    /// The event a device's message becomes: the hub's rules on the sender's properties,
    /// then the hub's own stamps.
    fn stamped(&self, who: &DeviceIdentity, message: Telemetry) -> NewEvent {
        let mut system: BTreeMap<String, String> = message
            .system
            .named()
            .map(|(name, value)| (name.to_owned(), value.clone()))
            .collect();
        if system
            .get("user-id")
            .is_some_and(|uid| self.is_hub_name(uid))
        {
            tracing::debug!(device = %who.key(), "user-id naming the hub dropped");
            system.remove("user-id");
        }
        let mut application = BTreeMap::new();
        for (key, value) in message.application {
            if is_reserved_name(&key) {
                tracing::debug!(device = %who.key(), property = %key, "reserved property name dropped");
                continue;
            }
            application.insert(key, value);
        }
        if message.annotations.retain {
            application.insert("mqtt-retain".to_owned(), Some("true".to_owned()));
        }
        if message.annotations.will {
            application.insert("iothub-MessageType".to_owned(), Some("Will".to_owned()));
        }
        system.insert("iothub-connection-device-id".into(), who.device_id.clone());
        if let Some(m) = &who.module_id {
            system.insert("iothub-connection-module-id".into(), m.clone());
        }
        system.insert("iothub-connection-auth-method".into(), who.auth_method());
        system.insert(
            "iothub-connection-auth-generation-id".into(),
            who.generation_id.clone(),
        );
        system.insert("iothub-message-source".into(), "Telemetry".into());
        if let Some(model) = &who.model_id {
            system.insert("dt-dataschema".into(), model.clone());
        }
        NewEvent {
            device_id: who.device_id.clone(),
            module_id: who.module_id.clone(),
            system_properties: system,
            application_properties: application,
            body: message.body,
        }
    }

    /// Routes a stamped message (and a module's to the inputs its device's `$edgeHub`
    /// routes name); the events as appended, once durable.
    async fn deliver_telemetry(
        &self,
        who: &DeviceIdentity,
        event: NewEvent,
    ) -> Result<Vec<Event>, HubError> {
        let to_inputs = who.module_id.is_some().then(|| input_parts(&event));
        let events = self
            .route_message(RoutingSource::DeviceMessages, event)
            .await?;
        if let Some((system, application, body)) = to_inputs {
            self.route_to_inputs(who, &system, &application, &body)
                .await;
        }
        Ok(events)
    }

    /// Whether `name` is the hub's own name: its host name or that name's first label.
    fn is_hub_name(&self, name: &str) -> bool {
        let host = self.host_name();
        let label = host.split('.').next().unwrap_or(host);
        name.eq_ignore_ascii_case(host) || name.eq_ignore_ascii_case(label)
    }
}

/// What a module's message brings to the inputs its device's routes name: its system and
/// application properties and its body.
type InputParts = (
    BTreeMap<String, String>,
    BTreeMap<String, Option<String>>,
    Vec<u8>,
);

/// A module's message's [`InputParts`].
fn input_parts(event: &NewEvent) -> InputParts {
    (
        event.system_properties.clone(),
        event.application_properties.clone(),
        event.body.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_are_the_hub_prefix_in_any_case() {
        for name in [
            "iothub-connection-device-id",
            "IoTHub-MessageType",
            "iothub-",
        ] {
            assert!(is_reserved_name(name), "{name}");
        }
        for name in [
            "iothub",
            "k",
            "mqtt-retain",
            "$.uid",
            "xiothub-a",
            "é-iothub",
        ] {
            assert!(!is_reserved_name(name), "{name}");
        }
    }

    #[test]
    fn the_size_counts_body_values_and_application_names() {
        let message = Telemetry {
            system: SystemProperties {
                message_id: Some("1234".into()),
                ..SystemProperties::default()
            },
            application: vec![("ab".into(), Some("cde".into())), ("f".into(), None)],
            body: vec![0; 10],
            annotations: Annotations::default(),
        };
        assert_eq!(message.size(), 10 + 4 + 5 + 1);
    }
}

//! The service side of cloud-to-device messaging over AMQP (Azure docs, "Communicate with
//! your IoT hub by using the AMQP Protocol", service client section): messages sent on
//! `/messages/devicebound` with `to=/devices/{id}/messages/devicebound` are queued by the
//! same domain call as the REST send (feedback goes out through `service_bound`).

use chrono::{DateTime, Utc};
use fe2o3_amqp::Receiver;
use fe2o3_amqp::types::messaging::{Body, Message};
use fe2o3_amqp::types::primitives::Value;
use ironhub_hub::c2d::{OutgoingMessage, parse_ack};
use ironhub_hub::{Hub, HubError};
use tokio::sync::watch;

use crate::errors::{hub_error, lapsed};
use crate::links::next_delivery;
use crate::message::{body_bytes, id_text, simple_text};

/// The device a `to` of `/devices/{id}/messages/devicebound` names (the id percent-decoded,
/// as the Node service SDK encodes it).
fn device_of(to: &str) -> Option<String> {
    let rest = to.strip_prefix("/devices/")?;
    let (id, tail) = rest.split_once('/')?;
    if id.is_empty() || !tail.eq_ignore_ascii_case("messages/devicebound") {
        return None;
    }
    Some(
        percent_encoding::percent_decode_str(id)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// The device and the message a service's AMQP message asks to queue.
fn outgoing(message: &Message<Body<Value>>) -> Result<(String, OutgoingMessage), HubError> {
    let properties = message.properties.clone().unwrap_or_default();
    let to = properties.to.as_deref().unwrap_or_default();
    let device = device_of(to).ok_or_else(|| {
        HubError::ArgumentInvalid(format!(
            "The message's 'to' ('{to}') must be /devices/{{deviceId}}/messages/devicebound."
        ))
    })?;
    let mut out = OutgoingMessage {
        message_id: properties.message_id.as_ref().map(id_text),
        correlation_id: properties.correlation_id.as_ref().map(id_text),
        user_id: properties
            .user_id
            .as_ref()
            .map(|u| String::from_utf8_lossy(u).into_owned()),
        content_type: properties.content_type.map(|s| s.as_str().to_owned()),
        content_encoding: properties.content_encoding.map(|s| s.as_str().to_owned()),
        expiry_time: properties
            .absolute_expiry_time
            .and_then(|t| DateTime::<Utc>::from_timestamp_millis(t.milliseconds())),
        body: body_bytes(&message.body)?,
        ..OutgoingMessage::default()
    };
    if let Some(application) = &message.application_properties {
        for (name, value) in application.0.iter() {
            if name.eq_ignore_ascii_case("iothub-ack") {
                out.ack = parse_ack(&simple_text(value))?;
            } else {
                out.properties.push((name.clone(), simple_text(value)));
            }
        }
    }
    Ok((device, out))
}

/// Queues what a service sends on `/messages/devicebound`: each message is accepted once
/// queued, or rejected with the reason (an unknown device, a full queue, a bad property).
/// A message that arrives after the link's token lapsed closes the link with
/// `amqp:unauthorized-access` instead.
pub async fn accept_sends(
    mut receiver: Receiver,
    hub: Hub,
    mut closed: watch::Receiver<bool>,
    authorized: impl Fn() -> bool,
) {
    while let Some(delivery) = next_delivery(&mut receiver, &mut closed).await {
        if !authorized() {
            let _ = receiver.reject(&delivery, lapsed()).await;
            let _ = receiver.close_with_error(lapsed()).await;
            return;
        }
        let queued = match outgoing(delivery.message()) {
            Ok((device, message)) => hub.send_c2d(&device, message).await.map(|m| (device, m)),
            Err(e) => Err(e),
        };
        let settled = match queued {
            Ok((device, m)) => {
                tracing::info!(target: "ServiceOperations", device_id = %device, message_id = %m.message_id, "cloud-to-device message sent (AMQP)");
                receiver.accept(&delivery).await
            }
            Err(e) => {
                tracing::debug!(error = %e, "cloud-to-device message refused (AMQP)");
                receiver.reject(&delivery, hub_error(&e)).await
            }
        };
        if settled.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_addresses() {
        assert_eq!(
            device_of("/devices/dev1/messages/devicebound").as_deref(),
            Some("dev1")
        );
        assert_eq!(
            device_of("/devices/a%3Ab/messages/deviceBound").as_deref(),
            Some("a:b")
        );
        assert_eq!(device_of("/devices//messages/devicebound"), None);
        assert_eq!(device_of("/devices/dev1/messages/events"), None);
        assert_eq!(device_of("dev1"), None);
    }
}

//! Cloud-to-device delivery over MQTT end to end: a real server (in-process), TLS, and MQTT
//! packets as devices send them (the harness is `common/mod.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnectReturnCode, Packet, PubAck, Publish, Subscribe, SubscribeReasonCode,
};

use ironhub_hub::c2d::OutgoingMessage;
use ironhub_store::AckMode;

impl Client {
    async fn subscribe_qos(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
        let mut s = Subscribe::new(filter, qos);
        s.pkid = self.pkid();
        self.send(Packet::Subscribe(s)).await;
        loop {
            match self.recv().await {
                Some(Packet::SubAck(ack)) => return ack.return_codes,
                Some(_) => continue,
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }

    /// Whether a PUBLISH arrives within `wait`.
    async fn publish_within(&mut self, wait: Duration) -> Option<Publish> {
        tokio::time::timeout(wait, self.next_publish()).await.ok()
    }
}

async fn send(hub: &TestHub, device: &str, message: OutgoingMessage) -> String {
    hub.server
        .hub
        .send_c2d(device, message)
        .await
        .unwrap()
        .message_id
}

fn text(body: &str) -> OutgoingMessage {
    OutgoingMessage {
        body: body.as_bytes().to_vec(),
        ..OutgoingMessage::default()
    }
}

fn bag_of(p: &Publish) -> &str {
    let topic = p.topic.as_str();
    topic.split('/').nth(4).unwrap()
}

#[tokio::test]
async fn queued_messages_are_published_with_their_property_bag_and_completed_by_puback() {
    let hub = hub().await;
    let key = hub.device("d1", serde_json::json!({})).await;
    // Queued before the device is there.
    let id = send(
        &hub,
        "d1",
        OutgoingMessage {
            message_id: Some("m/1".into()),
            correlation_id: Some("c1".into()),
            content_type: Some("application/json".into()),
            content_encoding: Some("utf-8".into()),
            ack: AckMode::Full,
            properties: vec![
                ("a b".into(), "x&y=z".into()),
                ("topic".into(), "cmnd/tasmota/POWER".into()),
            ],
            ..text(r#"{"on":true}"#)
        },
    )
    .await;
    let (mut c, code) = hub.connect_sas("d1", &key, true).await;
    assert_eq!(code, ConnectReturnCode::Success);
    assert_eq!(
        c.subscribe_qos("devices/d1/messages/devicebound/#", QoS::AtLeastOnce)
            .await,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let p = c.next_publish().await;
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(p.payload.as_ref(), br#"{"on":true}"#);
    let topic = p.topic.clone();
    assert!(topic.starts_with("devices/d1/messages/devicebound/%24.mid=m%2F1&%24.cid=c1&%24.to=%2Fdevices%2Fd1%2Fmessages%2FdeviceBound&%24.ct=application%2Fjson&%24.ce=utf-8&%24.exp="), "{topic}");
    assert!(
        topic.ends_with("&iothub-ack=full&a%20b=x%26y%3Dz&topic=cmnd%2Ftasmota%2FPOWER"),
        "{topic}"
    );
    assert_eq!(topic.split('/').count(), 5, "the property bag is segment 4");
    assert_eq!(id, "m/1");

    // Not completed until the PUBACK.
    let device = hub.server.hub.get_device("d1").await.unwrap();
    assert_eq!(device.cloud_to_device_message_count, 1);
    c.send(Packet::PubAck(PubAck::new(p.pkid))).await;
    c.send(Packet::PingReq).await;
    assert!(matches!(c.recv().await, Some(Packet::PingResp)));
    let device = hub.server.hub.get_device("d1").await.unwrap();
    assert_eq!(device.cloud_to_device_message_count, 0);
    let feedback = hub.server.hub.receive_feedback().await.unwrap().unwrap();
    assert_eq!(feedback.records[0].original_message_id, "m/1");
    assert_eq!(
        feedback.records[0].status_code,
        ironhub_store::FeedbackStatus::Success
    );

    // Sent while connected: delivered through the bus at once.
    send(&hub, "d1", text("live")).await;
    let p = c.next_publish().await;
    assert_eq!(p.payload.as_ref(), b"live");
    assert!(bag_of(&p).starts_with("%24.mid="));
}

#[tokio::test]
async fn unacknowledged_messages_come_back_on_the_next_connection_of_a_persistent_session() {
    let hub = hub().await;
    let key = hub.device("d1", serde_json::json!({})).await;
    let (mut c, _) = hub.connect_sas("d1", &key, false).await;
    c.subscribe_qos("devices/d1/messages/devicebound/#", QoS::AtLeastOnce)
        .await;
    send(&hub, "d1", text("first")).await;
    let p = c.next_publish().await;
    assert_eq!(p.payload.as_ref(), b"first");
    // The device drops without a PUBACK.
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&hub, "d1", text("while away")).await;

    // Reconnect with clean session 0 and never subscribe again (as PYDEV does).
    let (mut c, code) = hub.connect_sas("d1", &key, false).await;
    assert_eq!(code, ConnectReturnCode::Success);
    let again = c.next_publish().await;
    assert_eq!(again.payload.as_ref(), b"first", "redelivered, in order");
    let next = c.next_publish().await;
    assert_eq!(next.payload.as_ref(), b"while away");
    let locked = hub.server.hub.get_device("d1").await.unwrap();
    assert_eq!(locked.cloud_to_device_message_count, 2);
    c.send(Packet::PubAck(PubAck::new(again.pkid))).await;
    c.send(Packet::PubAck(PubAck::new(next.pkid))).await;
    c.send(Packet::PingReq).await;
    assert!(matches!(c.recv().await, Some(Packet::PingResp)));
    assert_eq!(
        hub.server
            .hub
            .get_device("d1")
            .await
            .unwrap()
            .cloud_to_device_message_count,
        0
    );

    // A clean session without the subscription gets nothing.
    send(&hub, "d1", text("not for a clean session")).await;
    drop(c);
    let (mut c, _) = hub.connect_sas("d1", &key, true).await;
    assert!(c.publish_within(Duration::from_millis(500)).await.is_none());
}

#[tokio::test]
async fn a_qos0_subscriber_completes_on_send_and_the_window_holds_five() {
    let hub = hub().await;
    let key = hub.device("d1", serde_json::json!({})).await;
    for i in 0..7 {
        send(&hub, "d1", text(&i.to_string())).await;
    }
    let (mut c, _) = hub.connect_sas("d1", &key, true).await;
    c.subscribe_qos("devices/d1/messages/devicebound/#", QoS::AtLeastOnce)
        .await;
    let mut got = vec![];
    while let Some(p) = c.publish_within(Duration::from_millis(500)).await {
        got.push(p);
    }
    assert_eq!(got.len(), 5, "at most five unacknowledged at a time");
    c.send(Packet::PubAck(PubAck::new(got[0].pkid))).await;
    let sixth = c.next_publish().await;
    assert_eq!(sixth.payload.as_ref(), b"5");
    drop(c);

    // Tasmota subscribes at QoS 0: every message is delivered and completed on send.
    let (mut t, _) = hub.connect_sas("d1", &key, true).await;
    assert_eq!(
        t.subscribe_qos("devices/d1/messages/devicebound/#", QoS::AtMostOnce)
            .await,
        [SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    let mut bodies = vec![];
    while let Some(p) = t.publish_within(Duration::from_millis(500)).await {
        assert_eq!(p.qos, QoS::AtMostOnce);
        bodies.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    // The dropped connection's unacknowledged messages may come back after "6" when the old
    // session releases them only once the new one has subscribed.
    bodies.sort();
    assert_eq!(bodies, ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(
        hub.server
            .hub
            .get_device("d1")
            .await
            .unwrap()
            .cloud_to_device_message_count,
        0
    );
}

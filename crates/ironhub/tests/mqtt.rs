//! The MQTT device endpoint end to end: a real server (in-process), TLS, and MQTT packets as
//! devices send them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use ironhub_auth::unix_now;
use ironhub_hub::model::DeviceSpec;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, LastWill, Packet, Publish, SubscribeReasonCode,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

async fn events_of(hub: &TestHub, device: &str) -> Vec<ironhub_store::Event> {
    let log = hub.server.hub.events();
    let partition = ironhub_store::eventlog::partition_for(device, log.partition_count());
    log.read(partition, 0, 100).await.unwrap()
}

#[tokio::test]
async fn telemetry_is_acknowledged_once_durable_with_its_properties() {
    let hub = hub().await;
    let key = hub.device("d1", serde_json::json!({})).await;
    let (mut c, code) = hub.connect_sas("d1", &key, false).await;
    assert_eq!(code, ConnectReturnCode::Success);
    assert_eq!(
        hub.server
            .hub
            .get_device("d1")
            .await
            .unwrap()
            .connection_state,
        ironhub_store::ConnectionState::Connected
    );

    c.publish(
        "devices/d1/messages/events/%24.mid=m%201&%24.ct=application%2Fjson&b=x%2Fy%20z&flag",
        QoS::AtLeastOnce,
        br#"{"t":1}"#,
    )
    .await;
    assert!(matches!(c.recv().await, Some(Packet::PubAck(_))));
    let events = events_of(&hub, "d1").await;
    assert_eq!(events.len(), 1, "PUBACK came after the event was stored");
    let e = &events[0].event;
    assert_eq!(e.body, br#"{"t":1}"#);
    assert_eq!(e.system_properties["message-id"], "m 1");
    assert_eq!(e.system_properties["content-type"], "application/json");
    assert_eq!(e.system_properties["iothub-connection-device-id"], "d1");
    assert_eq!(e.application_properties["b"].as_deref(), Some("x/y z"));
    assert_eq!(e.application_properties["flag"], None);

    // Retain is not stored: it becomes the mqtt-retain property.
    let mut retained = Publish::new(
        "devices/d1/messages/events/",
        QoS::AtMostOnce,
        b"r".to_vec(),
    );
    retained.retain = true;
    c.send(Packet::Publish(retained)).await;
    c.send(Packet::PingReq).await;
    assert!(matches!(c.recv().await, Some(Packet::PingResp)));
    let events = events_of(&hub, "d1").await;
    assert_eq!(
        events[1].event.application_properties["mqtt-retain"].as_deref(),
        Some("true")
    );

    // QoS 2 closes the connection, as IoT Hub does.
    c.publish("devices/d1/messages/events/", QoS::ExactlyOnce, b"q2")
        .await;
    assert_eq!(c.recv().await, None);
    assert_eq!(events_of(&hub, "d1").await.len(), 2);
}

#[tokio::test]
async fn refused_connections_get_iot_hubs_connack_codes() {
    let hub = hub().await;
    let key = hub.device("d1", serde_json::json!({})).await;
    let other = hub.device("d2", serde_json::json!({})).await;

    let (_, code) = hub.connect_sas("d1", &other, true).await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized, "wrong key");
    let (_, code) = hub.connect_sas("ghost", &key, true).await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized, "unknown device");

    let mut c = hub.connect(None).await;
    let mut connect = Connect::new("d1");
    connect.set_login(format!("{HOST}/d1"), hub.token("d1", &key, unix_now() - 1));
    assert_eq!(
        c.handshake(connect).await,
        ConnectReturnCode::NotAuthorized,
        "expired token"
    );

    let mut c = hub.connect(None).await;
    let mut connect = Connect::new("d1");
    connect.set_login(format!("{HOST}/d2"), hub.token("d1", &key, unix_now() + 60));
    assert_eq!(
        c.handshake(connect).await,
        ConnectReturnCode::BadUserNamePassword,
        "username names another device"
    );

    hub.device("off", serde_json::json!({"status": "disabled"}))
        .await;
    let off_key = hub
        .server
        .hub
        .get_device("off")
        .await
        .unwrap()
        .authentication
        .symmetric_key
        .primary_key
        .unwrap();
    let (_, code) = hub.connect_sas("off", &off_key, true).await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized, "disabled device");

    // Tasmota's username has no api-version at all.
    let mut c = hub.connect(None).await;
    let mut connect = Connect::new("d1");
    connect.set_login(format!("{HOST}/d1"), hub.token("d1", &key, unix_now() + 60));
    assert_eq!(c.handshake(connect).await, ConnectReturnCode::Success);
}

#[tokio::test]
async fn subscriptions_takeover_and_persistent_sessions() {
    let hub = hub().await;
    let key = hub.device("d1", serde_json::json!({})).await;
    let (mut first, _) = hub.connect_sas("d1", &key, false).await;
    let codes = first
        .subscribe(&[
            "$iothub/methods/POST/#",
            "cmnd/d1/#",
            "devices/d2/messages/devicebound/#",
        ])
        .await;
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure
        ]
    );

    // A second connection of the same device takes over; the first is closed.
    let (mut second, code) = hub.connect_sas("d1", &key, false).await;
    assert_eq!(code, ConnectReturnCode::Success);
    assert_eq!(first.recv().await, None, "the older connection is dropped");

    // The new connection never subscribed, yet the persistent session still has methods.
    let hub_handle = hub.server.hub.clone();
    let call = tokio::spawn(async move {
        let request = serde_json::from_value(serde_json::json!({
            "methodName": "reboot", "payload": {"delay": 1}, "responseTimeoutInSeconds": 5
        }))
        .unwrap();
        hub_handle.invoke_method("d1", request).await
    });
    let request = second.next_publish().await;
    assert!(
        request
            .topic
            .starts_with("$iothub/methods/POST/reboot/?$rid="),
        "{}",
        request.topic
    );
    assert_eq!(&request.payload[..], br#"{"delay":1}"#);
    let rid = request.topic.rsplit("$rid=").next().unwrap().to_owned();
    second
        .publish(
            &format!("$iothub/methods/res/200/?$rid={rid}"),
            QoS::AtLeastOnce,
            br#"{"ok":true}"#,
        )
        .await;
    let result = call.await.unwrap().unwrap();
    assert_eq!(result.status, 200);
    assert_eq!(result.payload, serde_json::json!({"ok": true}));

    // A clean session forgets the subscriptions.
    drop(second);
    let (_third, _) = hub.connect_sas("d1", &key, true).await;
    let request = serde_json::from_value(
        serde_json::json!({"methodName": "x", "responseTimeoutInSeconds": 5}),
    )
    .unwrap();
    let e = hub
        .server
        .hub
        .invoke_method("d1", request)
        .await
        .unwrap_err();
    assert_eq!(e.code(), 404_103);
}

#[tokio::test]
async fn twin_requests_and_desired_patches() {
    let hub = hub().await;
    let key = hub.device("d1", serde_json::json!({})).await;
    let (mut c, _) = hub.connect_sas("d1", &key, true).await;
    // PYDEV asks for its twin without subscribing to the response topic first.
    c.publish("$iothub/twin/GET/?$rid=1", QoS::AtMostOnce, b" ")
        .await;
    let res = c.next_publish().await;
    assert_eq!(res.topic, "$iothub/twin/res/200/?$rid=1");
    let twin: serde_json::Value = serde_json::from_slice(&res.payload).unwrap();
    assert_eq!(twin["desired"]["$version"], 1);
    assert_eq!(twin["reported"]["$version"], 1);

    c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=2",
        QoS::AtLeastOnce,
        br#"{"temp":21}"#,
    )
    .await;
    let res = c.next_publish().await;
    assert_eq!(res.topic, "$iothub/twin/res/204/?$rid=2&$version=2");
    assert!(res.payload.is_empty());
    c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=3",
        QoS::AtMostOnce,
        b"[1]",
    )
    .await;
    assert!(
        c.next_publish()
            .await
            .topic
            .starts_with("$iothub/twin/res/400/?$rid=3")
    );

    c.subscribe(&["$iothub/twin/PATCH/properties/desired/#"])
        .await;
    let patch = serde_json::json!({"properties": {"desired": {"fw": "2"}}});
    hub.server
        .hub
        .update_twin("d1", &patch, None, false)
        .await
        .unwrap();
    let pushed = c.next_publish().await;
    assert_eq!(
        pushed.topic,
        "$iothub/twin/PATCH/properties/desired/?$version=2"
    );
    let body: serde_json::Value = serde_json::from_slice(&pushed.payload).unwrap();
    assert_eq!(body, serde_json::json!({"fw": "2", "$version": 2}));
}

#[tokio::test]
async fn the_will_is_sent_as_telemetry_when_a_device_drops() {
    let hub = hub().await;
    let key = hub.device("t1", serde_json::json!({})).await;
    let mut c = hub.connect(None).await;
    let mut connect = Connect::new("t1");
    connect.keep_alive = 30;
    connect.last_will = Some(LastWill::new(
        "devices/t1/messages/events/topic=tele%2Ft1%2FLWT",
        "Offline",
        QoS::AtLeastOnce,
        true,
    ));
    connect.set_login(format!("{HOST}/t1"), hub.token("t1", &key, unix_now() + 60));
    assert_eq!(c.handshake(connect).await, ConnectReturnCode::Success);
    drop(c);
    let mut events = Vec::new();
    for _ in 0..50 {
        events = events_of(&hub, "t1").await;
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(events.len(), 1, "the Will arrived");
    let e = &events[0].event;
    assert_eq!(e.body, b"Offline");
    assert_eq!(
        e.application_properties["iothub-MessageType"].as_deref(),
        Some("Will")
    );
    assert_eq!(
        e.application_properties["topic"].as_deref(),
        Some("tele/t1/LWT")
    );
    assert_eq!(
        e.application_properties["mqtt-retain"].as_deref(),
        Some("true")
    );
}

#[tokio::test]
async fn x509_devices_connect_by_thumbprint_without_a_password() {
    let hub = hub().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (_, sha256) = ironhub_auth::thumbprints(cert.der());
    hub.device(
        "x1",
        serde_json::json!({"authentication": {"type": "selfSigned",
        "x509Thumbprint": {"primaryThumbprint": sha256.to_lowercase()}}}),
    )
    .await;
    hub.device(
        "x2",
        serde_json::json!({"authentication": {"type": "selfSigned",
        "x509Thumbprint": {"primaryThumbprint": "AB".repeat(20)}}}),
    )
    .await;
    let pair = || {
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    };
    let mut c = hub.connect(Some(pair())).await;
    let mut connect = Connect::new("x1");
    connect.set_login(format!("{HOST}/x1/?api-version=2021-04-12"), "");
    assert_eq!(c.handshake(connect).await, ConnectReturnCode::Success);

    let mut c = hub.connect(Some(pair())).await;
    let mut connect = Connect::new("x2");
    connect.set_login(format!("{HOST}/x2/?api-version=2021-04-12"), "");
    assert_eq!(
        c.handshake(connect).await,
        ConnectReturnCode::NotAuthorized,
        "thumbprint not registered"
    );

    let mut c = hub.connect(None).await;
    let mut connect = Connect::new("x1");
    connect.set_login(format!("{HOST}/x1"), "");
    assert_eq!(
        c.handshake(connect).await,
        ConnectReturnCode::NotAuthorized,
        "no certificate"
    );
}

#[tokio::test]
async fn disabling_a_connected_device_closes_its_connection() {
    let hub = hub().await;
    let key = hub.device("d1", serde_json::json!({})).await;
    let (mut c, _) = hub.connect_sas("d1", &key, true).await;
    // An update that changes nothing about access keeps the connection.
    let keep: DeviceSpec =
        serde_json::from_value(serde_json::json!({"capabilities": {"iotEdge": false}})).unwrap();
    hub.server
        .hub
        .put_device("d1", &keep, Some("*"))
        .await
        .unwrap();
    c.send(Packet::PingReq).await;
    assert!(matches!(c.recv().await, Some(Packet::PingResp)));

    let off: DeviceSpec =
        serde_json::from_value(serde_json::json!({"status": "disabled"})).unwrap();
    hub.server
        .hub
        .put_device("d1", &off, Some("*"))
        .await
        .unwrap();
    assert_eq!(c.recv().await, None, "the disabled device was disconnected");
    let (_, code) = hub.connect_sas("d1", &key, true).await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized);
}

#[tokio::test]
async fn telemetry_moves_last_activity_time_without_changing_the_etag() {
    let hub = hub().await;
    let key = hub.device("act", serde_json::json!({})).await;
    let (mut c, _) = hub.connect_sas("act", &key, true).await;
    let connected = hub.server.hub.get_device("act").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.publish("devices/act/messages/events/", QoS::AtLeastOnce, b"{}")
        .await;
    assert!(matches!(c.recv().await, Some(Packet::PubAck(_))));
    let after = hub.server.hub.get_device("act").await.unwrap();
    assert!(after.last_activity_time > connected.last_activity_time);
    assert_eq!(after.etag, connected.etag);
}

/// IoT Hub drops a connection when its SAS token expires (docs/protocol/hub-mqtt.md, "Sessions
/// and token expiry"); the device
/// reconnects with a fresh token.
#[tokio::test]
async fn the_connection_closes_when_its_sas_token_expires() {
    let hub = hub().await;
    let key = hub.device("short", serde_json::json!({})).await;
    let mut c = hub.connect(None).await;
    let mut connect = Connect::new("short");
    connect.keep_alive = 60;
    connect.set_login(
        format!("{HOST}/short/?api-version=2021-04-12"),
        hub.token("short", &key, unix_now() + 3),
    );
    assert_eq!(c.handshake(connect).await, ConnectReturnCode::Success);
    c.ping().await;
    let closed = c
        .closed_within(Duration::from_secs(8))
        .await
        .expect("still connected 8 s after the token expired");
    assert!(
        closed >= Duration::from_secs(1),
        "closed before the token expired"
    );
    // The state is written just after the close.
    let mut state = None;
    for _ in 0..40 {
        state = Some(
            hub.server
                .hub
                .get_device("short")
                .await
                .unwrap()
                .connection_state,
        );
        if state == Some(ironhub_store::ConnectionState::Disconnected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, Some(ironhub_store::ConnectionState::Disconnected));
}

/// Silence longer than 1.5 times the keep-alive closes the connection (MQTT 3.1.1 §3.1.2.10);
/// traffic within it keeps the connection open.
#[tokio::test]
async fn the_connection_closes_after_one_and_a_half_keep_alives_of_silence() {
    let hub = hub().await;
    let key = hub.device("quiet", serde_json::json!({})).await;
    let mut c = hub.connect(None).await;
    let mut connect = Connect::new("quiet");
    connect.keep_alive = 1;
    connect.set_login(
        format!("{HOST}/quiet/?api-version=2021-04-12"),
        hub.token("quiet", &key, unix_now() + 3600),
    );
    assert_eq!(c.handshake(connect).await, ConnectReturnCode::Success);
    // Pings every 0.8 s for 3 s: open all along.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        c.ping().await;
    }
    let closed = c
        .closed_within(Duration::from_secs(5))
        .await
        .expect("still connected after 5 s of silence with a keep-alive of 1 s");
    assert!(
        closed >= Duration::from_millis(1400) && closed < Duration::from_secs(3),
        "closed after {closed:?}, expected about 1.5 s"
    );
}

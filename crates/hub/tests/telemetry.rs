//! Device-to-cloud messages through the domain API, on a real (temporary) event log: what a
//! device may set, and what only the hub sets.
#![allow(clippy::unwrap_used)]

mod common;

use common::{authenticated, temp_hub};
use ironhub_hub::{
    Annotations, DeviceIdentity, HubError, MAX_TELEMETRY_BYTES, SystemProperties, Telemetry,
};

fn device(id: &str) -> DeviceIdentity {
    authenticated(id).identity
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[tokio::test]
async fn system_and_application_properties_land_under_iot_hub_names() {
    let (hub, _dir) = temp_hub().await;
    let message = Telemetry {
        system: SystemProperties {
            message_id: some("m1"),
            correlation_id: some("c1"),
            user_id: some("uid-1"),
            content_type: some("application/json"),
            content_encoding: some("utf-8"),
            creation_time: some("2026-12-06T10:00:00Z"),
            component: some("thermostat1"),
            ..SystemProperties::default()
        },
        application: vec![
            ("k".into(), some("v1")),
            ("flag".into(), None),
            ("k".into(), some("v2")),
        ],
        body: b"{}".to_vec(),
        annotations: Annotations {
            retain: true,
            will: false,
        },
    };
    let event = hub
        .send_telemetry(&device("d1"), message)
        .await
        .unwrap()
        .remove(0);
    let system = &event.event.system_properties;
    for (name, value) in [
        ("message-id", "m1"),
        ("correlation-id", "c1"),
        ("user-id", "uid-1"),
        ("content-type", "application/json"),
        ("content-encoding", "utf-8"),
        ("iothub-creation-time-utc", "2026-12-06T10:00:00Z"),
        ("dt-subject", "thermostat1"),
        ("iothub-connection-device-id", "d1"),
        ("iothub-connection-auth-generation-id", "gen-1"),
        ("iothub-message-source", "Telemetry"),
    ] {
        assert_eq!(system.get(name).map(String::as_str), Some(value), "{name}");
    }
    let application = &event.event.application_properties;
    assert_eq!(application.get("k"), Some(&some("v2")));
    assert_eq!(application.get("flag"), Some(&None));
    assert_eq!(application.get("mqtt-retain"), Some(&some("true")));
    assert_eq!(application.len(), 3);
}

/// Issue 15: a device cannot pass itself off as another device, or as the hub, through the
/// properties it sends.
#[tokio::test]
async fn a_device_cannot_imitate_the_hub_s_system_properties() {
    let (hub, _dir) = temp_hub().await;
    let message = Telemetry {
        system: SystemProperties {
            user_id: some("MyHub"),
            ..SystemProperties::default()
        },
        application: vec![
            ("iothub-connection-device-id".into(), some("victim")),
            ("IoTHub-Connection-Auth-Method".into(), some("{}")),
            ("iothub-MessageType".into(), some("Will")),
            ("iothub-enqueuedtime".into(), some("2000-01-01T00:00:00Z")),
            ("kept".into(), some("yes")),
        ],
        body: b"x".to_vec(),
        annotations: Annotations::default(),
    };
    let event = hub
        .send_telemetry(&device("d1"), message)
        .await
        .unwrap()
        .remove(0);
    let system = &event.event.system_properties;
    assert_eq!(
        system
            .get("iothub-connection-device-id")
            .map(String::as_str),
        Some("d1")
    );
    assert!(!system.contains_key("user-id"), "{system:?}");
    let application = &event.event.application_properties;
    assert_eq!(
        application.keys().collect::<Vec<_>>(),
        ["kept"],
        "{application:?}"
    );

    // The hub's full host name is its name too; any other user-id is the device's to set.
    for (uid, kept) in [("myhub.example", false), ("myhub-2", true), ("d1", true)] {
        let message = Telemetry {
            system: SystemProperties {
                user_id: some(uid),
                ..SystemProperties::default()
            },
            ..Telemetry::default()
        };
        let event = hub
            .send_telemetry(&device("d1"), message)
            .await
            .unwrap()
            .remove(0);
        let stored = event.event.system_properties.get("user-id");
        assert_eq!(stored.is_some(), kept, "{uid}");
    }

    // A Will is marked by the hub, not by the device.
    let will = Telemetry {
        annotations: Annotations {
            retain: false,
            will: true,
        },
        ..Telemetry::default()
    };
    let event = hub
        .send_telemetry(&device("d1"), will)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        event.event.application_properties.get("iothub-MessageType"),
        Some(&some("Will"))
    );
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_and_not_stored() {
    let (hub, _dir) = temp_hub().await;
    let message = Telemetry {
        application: vec![("k".into(), some("v"))],
        body: vec![b'x'; MAX_TELEMETRY_BYTES - 1],
        ..Telemetry::default()
    };
    let err = hub
        .send_telemetry(&device("d1"), message)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::MessageTooLarge(_)), "{err}");
    let exact = Telemetry {
        body: vec![b'x'; MAX_TELEMETRY_BYTES],
        ..Telemetry::default()
    };
    let event = hub
        .send_telemetry(&device("d1"), exact)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        event.sequence_number, 0,
        "the refused message took no place"
    );
}

/// A batch (AMQP's batched transfer, the HTTPS batch) is one event per message, each with its
/// own properties and the hub's stamps, in order.
#[tokio::test]
async fn each_message_of_a_batch_is_an_event_of_its_own() {
    let (hub, _dir) = temp_hub().await;
    let batch = (0..3)
        .map(|i| Telemetry {
            system: SystemProperties {
                message_id: Some(format!("m{i}")),
                ..SystemProperties::default()
            },
            application: vec![("i".into(), Some(i.to_string())), ("iothub-x".into(), None)],
            body: vec![b'a' + i],
            ..Telemetry::default()
        })
        .collect();
    let events = hub
        .send_telemetry_batch(&device("d1"), batch)
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.sequence_number, i as u64);
        let e = &event.event;
        assert_eq!(e.body, [b'a' + i as u8]);
        assert_eq!(e.system_properties["message-id"], format!("m{i}"));
        assert_eq!(e.system_properties["iothub-connection-device-id"], "d1");
        assert_eq!(e.application_properties.len(), 1, "iothub-x is the hub's");
        assert_eq!(e.application_properties["i"], Some(i.to_string()));
    }
}

/// The batch is judged whole: over the limit together (each message within it) or empty, it
/// is refused and nothing of it is stored.
#[tokio::test]
async fn a_batch_over_the_limit_or_empty_stores_nothing() {
    let (hub, _dir) = temp_hub().await;
    let half = || Telemetry {
        body: vec![b'x'; MAX_TELEMETRY_BYTES / 2 + 1],
        ..Telemetry::default()
    };
    let err = hub
        .send_telemetry_batch(&device("d1"), vec![half(), half()])
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::MessageTooLarge(_)), "{err}");
    let err = hub
        .send_telemetry_batch(&device("d1"), Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::ArgumentInvalid(_)), "{err}");
    let event = hub
        .send_telemetry(&device("d1"), half())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        event.sequence_number, 0,
        "the refused batches took no place"
    );
}

//! Cloud-to-device queues through the domain API, on a real (temporary) store.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::Utc;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::c2d::{MAX_DELIVERY_COUNT, MAX_MESSAGE_BYTES, MAX_QUEUE_DEPTH, OutgoingMessage};
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{Backends, Hub};
use ironhub_store::{
    AckMode, BusMessage, C2dSettle, Clock, FeedbackStatus, ManualClock, SystemClock,
};

async fn open(dir: &std::path::Path) -> Hub {
    open_with_clock(dir, Arc::new(SystemClock)).await
}

/// A hub whose domain and store read the time from `clock`.
async fn open_with_clock(dir: &std::path::Path, clock: Arc<dyn Clock>) -> Hub {
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir).unwrap().with_clock(clock.clone())),
        events: Arc::new(SqliteEventLog::open(dir, 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    Hub::open(backends, vec!["myhub.example".into()])
        .await
        .unwrap()
        .with_clock(clock)
}

async fn hub_with(devices: &[&str]) -> (Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path()).await;
    for id in devices {
        hub.put_device(id, &DeviceSpec::default(), None)
            .await
            .unwrap();
    }
    (hub, dir)
}

fn message(body: &str, ack: AckMode) -> OutgoingMessage {
    OutgoingMessage {
        ack,
        body: body.as_bytes().to_vec(),
        ..OutgoingMessage::default()
    }
}

/// Every feedback status waiting, in order, completing the batches read.
async fn drain_feedback(hub: &Hub) -> Vec<(String, FeedbackStatus)> {
    let mut out = vec![];
    while let Some(batch) = hub.receive_feedback().await.unwrap() {
        out.extend(
            batch
                .records
                .iter()
                .map(|r| (r.original_message_id.clone(), r.status_code)),
        );
        hub.settle_feedback(&batch.lock_token, true).await.unwrap();
    }
    out
}

#[tokio::test]
async fn a_queue_holds_fifty_messages_and_counts_them_on_the_device() {
    let (hub, _dir) = hub_with(&["d1"]).await;
    for i in 0..MAX_QUEUE_DEPTH {
        hub.send_c2d("d1", message(&i.to_string(), AckMode::None))
            .await
            .unwrap();
    }
    let full = hub
        .send_c2d("d1", message("one too many", AckMode::None))
        .await
        .unwrap_err();
    assert_eq!(full.code(), 403_004);
    assert_eq!(full.name(), "DeviceMaximumQueueDepthExceeded");
    let device = hub.get_device("d1").await.unwrap();
    assert_eq!(device.cloud_to_device_message_count, 50);
    let twin = serde_json::to_value(hub.get_twin("d1").await.unwrap()).unwrap();
    assert_eq!(twin["cloudToDeviceMessageCount"], 50);

    // Completing one makes room for one.
    let first = hub.receive_c2d("d1").await.unwrap().unwrap();
    assert_eq!(first.body, b"0");
    hub.settle_c2d(
        "d1",
        first.lock_token.as_deref().unwrap(),
        C2dSettle::Complete,
    )
    .await
    .unwrap();
    hub.send_c2d("d1", message("fits", AckMode::None))
        .await
        .unwrap();
    assert_eq!(
        hub.send_c2d("d1", message("no", AckMode::None))
            .await
            .unwrap_err()
            .code(),
        403_004
    );
}

#[tokio::test]
async fn messages_are_checked_before_they_are_queued() {
    let (hub, _dir) = hub_with(&["d1"]).await;
    let missing = hub
        .send_c2d("ghost", message("x", AckMode::None))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), 404_001);
    let big = OutgoingMessage {
        body: vec![b'x'; MAX_MESSAGE_BYTES + 1],
        ..OutgoingMessage::default()
    };
    assert_eq!(hub.send_c2d("d1", big).await.unwrap_err().status(), 413);
    let past = OutgoingMessage {
        expiry_time: Some(Utc::now() - chrono::TimeDelta::seconds(1)),
        ..OutgoingMessage::default()
    };
    assert_eq!(hub.send_c2d("d1", past).await.unwrap_err().status(), 400);
    let bad_id = OutgoingMessage {
        message_id: Some("has space".into()),
        ..OutgoingMessage::default()
    };
    assert_eq!(hub.send_c2d("d1", bad_id).await.unwrap_err().status(), 400);
    assert_eq!(
        hub.get_device("d1")
            .await
            .unwrap()
            .cloud_to_device_message_count,
        0
    );
}

#[tokio::test]
async fn a_message_keeps_its_properties_in_order_and_gets_an_id_and_expiry() {
    let (hub, _dir) = hub_with(&["d1"]).await;
    let sent = hub
        .send_c2d(
            "d1",
            OutgoingMessage {
                correlation_id: Some("c1".into()),
                content_type: Some("application/json".into()),
                properties: vec![
                    ("z".into(), "1".into()),
                    ("a".into(), "2".into()),
                    ("topic".into(), "cmnd/X/POWER".into()),
                ],
                ..message("{}", AckMode::Full)
            },
        )
        .await
        .unwrap();
    assert_eq!(sent.message_id.len(), 36, "a UUID is generated");
    assert_eq!(sent.to, "/devices/d1/messages/deviceBound");
    let ttl = sent.expiry_time - sent.enqueued_time;
    assert_eq!(ttl.num_seconds(), 3600, "the default TTL is one hour");

    let got = hub.receive_c2d("d1").await.unwrap().unwrap();
    assert_eq!(got.message_id, sent.message_id);
    assert_eq!(got.correlation_id.as_deref(), Some("c1"));
    assert_eq!(got.ack, AckMode::Full);
    let keys: Vec<_> = got.properties.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["z", "a", "topic"]);
    assert_eq!(got.delivery_count, 1);
    assert!(got.lock_token.is_some());
    // Locked: not delivered twice at once.
    assert!(hub.receive_c2d("d1").await.unwrap().is_none());
}

#[tokio::test]
async fn expired_messages_are_dead_lettered_with_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let hub = open_with_clock(dir.path(), clock.clone()).await;
    hub.put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    let soon = clock.now() + chrono::TimeDelta::milliseconds(300);
    let short = hub
        .send_c2d(
            "d1",
            OutgoingMessage {
                expiry_time: Some(soon),
                ..message("short", AckMode::Negative)
            },
        )
        .await
        .unwrap();
    hub.send_c2d("d1", message("long", AckMode::Negative))
        .await
        .unwrap();
    clock.advance(chrono::TimeDelta::milliseconds(300));
    assert_eq!(
        hub.get_device("d1")
            .await
            .unwrap()
            .cloud_to_device_message_count,
        1,
        "an expired message no longer counts"
    );
    assert_eq!(hub.expire_c2d().await.unwrap(), 1);
    let got = hub.receive_c2d("d1").await.unwrap().unwrap();
    assert_eq!(got.body, b"long");
    assert_eq!(
        drain_feedback(&hub).await,
        [(short.message_id, FeedbackStatus::Expired)]
    );
}

#[tokio::test]
async fn a_message_delivered_ten_times_is_dead_lettered() {
    let (hub, _dir) = hub_with(&["d1"]).await;
    let sent = hub
        .send_c2d("d1", message("flaky", AckMode::Full))
        .await
        .unwrap();
    for n in 1..=MAX_DELIVERY_COUNT {
        let got = hub.receive_c2d("d1").await.unwrap().unwrap();
        assert_eq!(got.delivery_count, n);
        hub.settle_c2d("d1", got.lock_token.as_deref().unwrap(), C2dSettle::Abandon)
            .await
            .unwrap();
    }
    assert!(hub.receive_c2d("d1").await.unwrap().is_none());
    assert_eq!(
        drain_feedback(&hub).await,
        [(sent.message_id, FeedbackStatus::DeliveryCountExceeded)]
    );
}

#[tokio::test]
async fn feedback_follows_the_ack_mode_and_is_locked_while_read() {
    let (hub, _dir) = hub_with(&["d1"]).await;
    let mut ids = vec![];
    for (body, ack) in [
        ("positive-ok", AckMode::Positive),
        ("none-ok", AckMode::None),
        ("negative-ok", AckMode::Negative),
        ("full-rejected", AckMode::Full),
        ("positive-rejected", AckMode::Positive),
    ] {
        ids.push(
            hub.send_c2d("d1", message(body, ack))
                .await
                .unwrap()
                .message_id,
        );
    }
    for settle in [
        C2dSettle::Complete,
        C2dSettle::Complete,
        C2dSettle::Complete,
        C2dSettle::Reject,
        C2dSettle::Reject,
    ] {
        let got = hub.receive_c2d("d1").await.unwrap().unwrap();
        hub.settle_c2d("d1", got.lock_token.as_deref().unwrap(), settle)
            .await
            .unwrap();
    }
    let lost = hub
        .settle_c2d("d1", "no-such-token", C2dSettle::Complete)
        .await
        .unwrap_err();
    assert_eq!(lost.code(), 412_020);

    let batch = hub.receive_feedback().await.unwrap().unwrap();
    let got: Vec<_> = batch
        .records
        .iter()
        .map(|r| (r.original_message_id.clone(), r.status_code))
        .collect();
    assert_eq!(
        got,
        [
            (ids[0].clone(), FeedbackStatus::Success),
            (ids[3].clone(), FeedbackStatus::Rejected),
        ]
    );
    assert!(batch.records.iter().all(|r| r.device_id == "d1"));
    let views = ironhub_hub::c2d::feedback_views(&batch);
    let json = serde_json::to_value(&views).unwrap();
    assert_eq!(json[0]["statusCode"], "Success");
    assert_eq!(json[1]["statusCode"], "Rejected");
    assert_eq!(json[0]["originalMessageId"], ids[0].as_str());
    assert!(json[0]["deviceGenerationId"].as_str().unwrap().len() == 18);
    assert!(json[0]["enqueuedTimeUtc"].as_str().unwrap().ends_with('Z'));

    // Locked while read; abandoned, it can be read again; completed, it is gone.
    assert!(hub.receive_feedback().await.unwrap().is_none());
    hub.settle_feedback(&batch.lock_token, false).await.unwrap();
    let again = hub.receive_feedback().await.unwrap().unwrap();
    assert_eq!(again.records, batch.records);
    assert_eq!(again.delivery_count, 2);
    hub.settle_feedback(&again.lock_token, true).await.unwrap();
    assert!(hub.receive_feedback().await.unwrap().is_none());
    assert_eq!(
        hub.settle_feedback(&again.lock_token, true)
            .await
            .unwrap_err()
            .code(),
        412_020
    );
}

#[tokio::test]
async fn purge_empties_the_queue_with_feedback() {
    let (hub, _dir) = hub_with(&["d1", "d2"]).await;
    for i in 0..3 {
        hub.send_c2d("d1", message(&i.to_string(), AckMode::Full))
            .await
            .unwrap();
    }
    hub.send_c2d("d2", message("other", AckMode::Full))
        .await
        .unwrap();
    // A locked message is purged too.
    hub.receive_c2d("d1").await.unwrap().unwrap();
    let result = hub.purge_c2d("d1").await.unwrap();
    assert_eq!(result.total_messages_purged, 3);
    assert_eq!(
        serde_json::to_value(&result).unwrap(),
        serde_json::json!({"totalMessagesPurged": 3, "deviceId": "d1"})
    );
    assert!(hub.receive_c2d("d1").await.unwrap().is_none());
    let feedback = drain_feedback(&hub).await;
    assert_eq!(feedback.len(), 3);
    assert!(feedback.iter().all(|(_, s)| *s == FeedbackStatus::Purged));
    assert_eq!(
        hub.get_device("d2")
            .await
            .unwrap()
            .cloud_to_device_message_count,
        1
    );
    assert_eq!(hub.purge_c2d("ghost").await.unwrap_err().code(), 404_001);
}

#[tokio::test]
async fn queues_survive_a_restart_and_die_with_their_device() {
    let dir = tempfile::tempdir().unwrap();
    let sent = {
        let hub = open(dir.path()).await;
        hub.put_device("d1", &DeviceSpec::default(), None)
            .await
            .unwrap();
        hub.send_c2d(
            "d1",
            OutgoingMessage {
                properties: vec![("k".into(), "v".into())],
                ..message("kept", AckMode::Full)
            },
        )
        .await
        .unwrap()
    };
    let hub = open(dir.path()).await;
    let got = hub.receive_c2d("d1").await.unwrap().unwrap();
    assert_eq!(got.message_id, sent.message_id);
    assert_eq!(got.body, b"kept");
    assert_eq!(got.properties, [("k".to_owned(), "v".to_owned())]);
    assert_eq!(got.expiry_time, sent.expiry_time);

    hub.delete_device("d1", None).await.unwrap();
    hub.put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    assert!(
        hub.receive_c2d("d1").await.unwrap().is_none(),
        "a re-created device starts with an empty queue"
    );
}

#[tokio::test]
async fn sending_tells_the_connected_device() {
    let (hub, _dir) = hub_with(&["d1"]).await;
    let mut connection = hub.bus().attach("d1").await;
    hub.send_c2d("d1", message("ping", AckMode::None))
        .await
        .unwrap();
    assert_eq!(
        connection.messages.recv().await,
        Some(BusMessage::C2dAvailable)
    );
    // Offline devices just have it queued.
    hub.bus().detach("d1", connection.connection_id).await;
    hub.send_c2d("d1", message("later", AckMode::None))
        .await
        .unwrap();
    assert_eq!(
        hub.get_device("d1")
            .await
            .unwrap()
            .cloud_to_device_message_count,
        2
    );
}

#[tokio::test]
async fn a_nul_character_in_a_message_is_refused_before_it_is_queued() {
    let (hub, _dir) = hub_with(&["d1"]).await;
    let mut bad = message("body", AckMode::None);
    bad.properties = vec![("k".into(), "a\u{0}b".into())];
    let e = hub.send_c2d("d1", bad).await.unwrap_err();
    assert!(
        matches!(e, ironhub_hub::HubError::ArgumentInvalid(_)),
        "{e:?}"
    );
    let mut bad = message("body", AckMode::None);
    bad.correlation_id = Some("c\u{0}".into());
    assert!(hub.send_c2d("d1", bad).await.is_err());
    assert!(
        hub.receive_c2d("d1").await.unwrap().is_none(),
        "nothing queued"
    );
}

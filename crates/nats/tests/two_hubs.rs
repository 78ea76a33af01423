//! Two nodes of one hub — two `Hub` instances over one store, each with its own NATS
//! connection, event log and bus on one nats-server: what is sent through one node reaches a
//! device connected to the other, and telemetry appended on either is read on both.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use ironhub_embedded::SqliteStore;
use ironhub_hub::c2d::OutgoingMessage;
use ironhub_hub::methods::MethodRequest;
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{Backends, Hub};
use ironhub_nats::{Names, NatsBus, NatsEventLog};
use ironhub_store::{BusMessage, MethodResponse, NewEvent, Retention, Store};
use serde_json::json;

const BOUND: Duration = Duration::from_secs(10);

async fn node(server: &common::Server, store: &Arc<dyn Store>, names: &Names, id: &str) -> Hub {
    let client = server.client().await;
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(
            NatsEventLog::open(client.clone(), names, "events", 2, Retention::default())
                .await
                .unwrap(),
        ),
        bus: Arc::new(NatsBus::start(client, names, id).await.unwrap()),
    };
    Hub::open(backends, vec!["hub.example".into()])
        .await
        .unwrap()
}

/// Nodes `node-a` and `node-b` of a new hub over one store (kept in the directory returned).
async fn two_nodes(server: &common::Server) -> (Hub, Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let names = Names::new(&common::unique("hub"));
    let a = node(server, &store, &names, "node-a").await;
    let b = node(server, &store, &names, "node-b").await;
    (a, b, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_node_sends_reaches_a_device_on_the_other() {
    let Some(server) = common::server() else {
        return;
    };
    let (a, b, _dir) = two_nodes(&server).await;
    a.put_device("on-b", &DeviceSpec::default(), None)
        .await
        .unwrap();
    let mut device = b.bus().attach("on-b").await;
    b.set_connected("on-b", true).await.unwrap();
    assert_eq!(a.bus().presence("on-b").await.as_deref(), Some("node-b"));

    // A direct method through node A, answered by the device on node B.
    let request = MethodRequest {
        method_name: Some("reboot".into()),
        payload: json!({"delay": 1}),
        response_timeout_in_seconds: Some(10),
        connect_timeout_in_seconds: None,
    };
    let call = tokio::spawn({
        let a = a.clone();
        async move { a.invoke_method("on-b", request).await }
    });
    let Some(BusMessage::Method(delivered)) = tokio::time::timeout(BOUND, device.messages.recv())
        .await
        .unwrap()
    else {
        panic!("the device did not get the method call");
    };
    let (call_id, payload) = (delivered.call_id, delivered.payload);
    b.bus().complete_method(
        call_id,
        Ok(MethodResponse {
            status: 201,
            payload,
        }),
    );
    let answer = call.await.unwrap().unwrap();
    assert_eq!((answer.status, answer.payload), (201, json!({"delay": 1})));

    // A C2D message through node A is announced on node B and received there.
    let message = OutgoingMessage {
        body: b"hello from a".to_vec(),
        ..OutgoingMessage::default()
    };
    a.send_c2d("on-b", message).await.unwrap();
    let hint = tokio::time::timeout(BOUND, device.messages.recv()).await;
    assert_eq!(hint.unwrap(), Some(BusMessage::C2dAvailable));
    let delivered = b.receive_c2d("on-b").await.unwrap().unwrap();
    assert_eq!(delivered.body, b"hello from a");

    // A desired-properties patch through node A reaches the device on node B.
    a.update_twin(
        "on-b",
        &json!({"properties": {"desired": {"fan": 3}}}),
        None,
        false,
    )
    .await
    .unwrap();
    let patch = tokio::time::timeout(BOUND, device.messages.recv()).await;
    let Some(BusMessage::DesiredPatch { body, .. }) = patch.unwrap() else {
        panic!("the device did not get the desired patch");
    };
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["fan"], 3);

    // Telemetry appended on either node is one log, read on both.
    let event = |body: &str| NewEvent {
        device_id: "on-b".into(),
        module_id: None,
        system_properties: Default::default(),
        application_properties: Default::default(),
        body: body.as_bytes().to_vec(),
    };
    let first = a.events().append(event("1")).await.unwrap();
    let second = b.events().append(event("2")).await.unwrap();
    assert_eq!(second.sequence_number, first.sequence_number + 1);
    let read = a.events().read(first.partition, 0, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[1].event.body, b"2");
}

/// Exclusive (epoch) readers across two nodes over NATS: a higher epoch on one node takes the
/// partition from the holder on the other, a lower one is refused by it, and a reader without
/// epoch on either node leaves when an epoch reader arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_readers_hold_a_partition_across_nodes() {
    let Some(server) = common::server() else {
        return;
    };
    let (a, b, _dir) = two_nodes(&server).await;

    let mut plain = b
        .hold_partition("eh", "$Default", 0, None)
        .await
        .unwrap()
        .unwrap();
    let mut first = a
        .hold_partition("eh", "$Default", 0, Some(1))
        .await
        .unwrap()
        .unwrap();
    let lost = tokio::time::timeout(BOUND, plain.lost()).await.unwrap();
    assert!(lost.0.contains("without epoch"), "{lost}");
    assert!(
        b.hold_partition("eh", "$Default", 0, None)
            .await
            .unwrap()
            .is_err()
    );

    let taking = tokio::spawn({
        let b = b.clone();
        async move {
            b.hold_partition("eh", "$Default", 0, Some(5))
                .await
                .unwrap()
        }
    });
    let lost = tokio::time::timeout(BOUND, first.lost()).await.unwrap();
    assert!(lost.0.contains("epoch 5"), "{lost}");
    let mut second = taking.await.unwrap().unwrap();

    let lower = tokio::spawn({
        let a = a.clone();
        async move {
            a.hold_partition("eh", "$Default", 0, Some(4))
                .await
                .unwrap()
        }
    });
    let refused = tokio::select! {
        refused = lower => refused.unwrap().unwrap_err(),
        lost = second.lost() => panic!("the holder yielded to a lower epoch: {lost}"),
        () = tokio::time::sleep(BOUND) => panic!("no answer within {BOUND:?}"),
    };
    assert!(refused.0.contains("higher epoch 5"), "{refused}");
}

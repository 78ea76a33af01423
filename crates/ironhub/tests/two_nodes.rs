//! Two nodes of one deployment — two hub and DPS instances with their own node ids, their
//! buses bridged — over one store: a call or a message sent through one node reaches a device
//! connected to the other, a node's restart releases only what it held, and a registration
//! another live node runs is `assigning` wherever it is polled.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ironhub_auth::sas::generate;
use ironhub_auth::unix_now;
use ironhub_dps::model::{
    DeviceRegistration, IndividualEnrollment, LinkedHub, RegistrationOperationStatus,
    RegistrationStatus,
};
use ironhub_dps::webhook::WebhookResult;
use ironhub_dps::{AllocationWebhook, Dps, Limits, LocalHub, Services, StaticConnector};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::c2d::OutgoingMessage;
use ironhub_hub::methods::MethodRequest;
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{Backends, Hub, Recovered};
use ironhub_store::{
    BusMessage, C2dSettle, ConnectionState, EventLog, ManualClock, MethodResponse, Store,
};
use serde_json::json;
use tokio::sync::watch;

const HUB: &str = "hub.example";
/// How long any step may take before the test fails.
const BOUND: Duration = Duration::from_secs(10);

/// What both nodes share (the clock too, so that a test can let leases run out).
struct Shared {
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    events: Arc<dyn EventLog>,
    fabric: LocalBus,
    _dir: tempfile::TempDir,
}

fn shared() -> Shared {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let store = SqliteStore::open(dir.path())
        .unwrap()
        .with_clock(clock.clone());
    Shared {
        clock,
        store: Arc::new(store),
        events: Arc::new(SqliteEventLog::open(dir.path(), 2).unwrap()),
        fabric: LocalBus::with_node("fabric"),
        _dir: dir,
    }
}

/// A node's bus: its own id, bridged to the other nodes'.
fn bus(shared: &Shared, node: &str) -> LocalBus {
    shared.fabric.join(node)
}

/// Starts the hub of node `node`, releasing what an earlier run of that node held.
async fn start_hub(shared: &Shared, node: &str) -> (Hub, Recovered) {
    let backends = Backends {
        store: shared.store.clone(),
        events: shared.events.clone(),
        bus: Arc::new(bus(shared, node)),
    };
    let hub = Hub::open(backends, vec![HUB.into()])
        .await
        .unwrap()
        .with_clock(shared.clock.clone());
    let recovered = hub.recover_node().await.unwrap();
    (hub, recovered)
}

/// A device connected to `hub`'s node, as an adapter connects one.
async fn connect(hub: &Hub, device: &str) -> ironhub_store::Attachment {
    let attachment = hub.bus().attach(device).await;
    hub.set_connected(device, true).await.unwrap();
    attachment
}

async fn connection_state(hub: &Hub, device: &str) -> ConnectionState {
    hub.get_device(device).await.unwrap().connection_state
}

#[tokio::test]
async fn calls_and_messages_reach_the_node_holding_the_device_and_restarts_release_only_their_own()
{
    let shared = shared();
    let (a, _) = start_hub(&shared, "node-a").await;
    let (b, _) = start_hub(&shared, "node-b").await;
    for id in ["on-b", "on-a"] {
        a.put_device(id, &DeviceSpec::default(), None)
            .await
            .unwrap();
    }
    let mut device = connect(&b, "on-b").await;
    let _on_a = connect(&a, "on-a").await;
    assert_eq!(a.bus().presence("on-b").await.as_deref(), Some("node-b"));

    // A direct method invoked through node A is answered by the device on node B.
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
    assert_eq!(answer.status, 201);
    assert_eq!(answer.payload, json!({"delay": 1}));

    // A cloud-to-device message sent through node A is announced to the device on node B,
    // which receives it (locked by node B).
    let body = b"hello from a".to_vec();
    let message = OutgoingMessage {
        body: body.clone(),
        ..OutgoingMessage::default()
    };
    a.send_c2d("on-b", message).await.unwrap();
    let hint = tokio::time::timeout(BOUND, device.messages.recv())
        .await
        .unwrap();
    assert_eq!(hint, Some(BusMessage::C2dAvailable));
    let delivered = b.receive_c2d("on-b").await.unwrap().unwrap();
    assert_eq!(delivered.body, body);
    assert_eq!(delivered.lock_node.as_deref(), Some("node-b"));

    // Node A restarts: its own device is disconnected; node B's stays connected and its
    // delivery stays locked (and can still be completed through node B).
    drop(a);
    let (a, recovered) = start_hub(&shared, "node-a").await;
    assert_eq!(
        recovered,
        Recovered {
            disconnected: 1,
            released_locks: 0,
            released_job_devices: 0
        }
    );
    assert_eq!(
        connection_state(&a, "on-a").await,
        ConnectionState::Disconnected
    );
    assert_eq!(
        connection_state(&a, "on-b").await,
        ConnectionState::Connected
    );
    assert!(
        a.receive_c2d("on-b").await.unwrap().is_none(),
        "still locked"
    );
    let lock = delivered.lock_token.unwrap();
    b.settle_c2d("on-b", &lock, C2dSettle::Complete)
        .await
        .unwrap();

    // Node B restarting releases its own: a delivery in flight is visible again at once.
    a.send_c2d("on-b", OutgoingMessage::default())
        .await
        .unwrap();
    let in_flight = b.receive_c2d("on-b").await.unwrap().unwrap();
    drop(device);
    let (b, recovered) = start_hub(&shared, "node-b").await;
    assert_eq!(
        recovered,
        Recovered {
            disconnected: 1,
            released_locks: 1,
            released_job_devices: 0
        }
    );
    let again = b.receive_c2d("on-b").await.unwrap().unwrap();
    assert_eq!(again.message_id, in_flight.message_id);
    assert_eq!(again.delivery_count, 2);
}

#[tokio::test]
async fn what_a_node_that_stops_answering_held_is_released_by_the_others() {
    let shared = shared();
    let (a, _) = start_hub(&shared, "node-a").await;
    let (c, _) = start_hub(&shared, "node-c").await;
    a.put_device("on-c", &DeviceSpec::default(), None)
        .await
        .unwrap();
    let _device = connect(&c, "on-c").await;
    a.send_c2d("on-c", OutgoingMessage::default())
        .await
        .unwrap();
    let in_flight = c.receive_c2d("on-c").await.unwrap().unwrap();
    // Node C goes silent (no more heartbeats); node A keeps renewing its own.
    let half = chrono::TimeDelta::from_std(ironhub_hub::NODE_LEASE / 2).unwrap();
    shared.clock.advance(half);
    assert_eq!(a.keep_node_alive().await.unwrap(), Recovered::default());
    assert_eq!(
        connection_state(&a, "on-c").await,
        ConnectionState::Connected
    );
    shared.clock.advance(half);
    assert_eq!(
        a.keep_node_alive().await.unwrap(),
        Recovered {
            disconnected: 1,
            released_locks: 1,
            released_job_devices: 0
        }
    );
    assert_eq!(
        connection_state(&a, "on-c").await,
        ConnectionState::Disconnected
    );
    let again = a.receive_c2d("on-c").await.unwrap().unwrap();
    assert_eq!(again.message_id, in_flight.message_id);
    assert_eq!(
        a.keep_node_alive().await.unwrap(),
        Recovered::default(),
        "released once"
    );
}

/// An allocation webhook that answers only once released, so that an assignment stays
/// running for as long as the test wants.
#[derive(Debug)]
struct HeldWebhook {
    released: watch::Receiver<bool>,
}

#[async_trait]
impl AllocationWebhook for HeldWebhook {
    async fn post(&self, _url: &str, _body: Vec<u8>, _timeout: Duration) -> WebhookResult {
        let mut released = self.released.clone();
        let _ = released.wait_for(|r| *r).await;
        Ok((
            200,
            serde_json::to_vec(&json!({"iotHubHostName": HUB})).unwrap(),
        ))
    }
}

/// The DPS instance of node `node`, over the shared store, assigning to `hub`.
async fn start_dps(
    shared: &Shared,
    node: &str,
    hub: &Hub,
    released: &watch::Receiver<bool>,
) -> Dps {
    let connector = StaticConnector::new().with(HUB, Arc::new(LocalHub(hub.clone())));
    let linked = LinkedHub {
        name: HUB.into(),
        connection_string: format!(
            "HostName={HUB};SharedAccessKeyName=iothubowner;SharedAccessKey={}",
            hub.settings().policy("iothubowner").unwrap().primary_key
        ),
        allocation_weight: None,
        apply_allocation_policy: None,
        location: None,
        etag: None,
    };
    Dps::open(
        shared.store.clone(),
        vec!["dps.example".into()],
        Some(linked),
    )
    .await
    .unwrap()
    .with_services(Services {
        connector: Arc::new(connector),
        webhook: Arc::new(HeldWebhook {
            released: released.clone(),
        }),
    })
    .with_limits(Limits {
        polls_per_window: 0,
        ..Limits::default()
    })
    .with_node(node)
}

const KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleQ==";

/// Registers `id` through `dps` (a custom allocation that waits for the webhook).
async fn register(dps: &Dps, id: &str) -> RegistrationOperationStatus {
    let enrollment: IndividualEnrollment = serde_json::from_value(json!({
        "registrationId": id,
        "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}},
        "allocationPolicy": "custom",
        "iotHubs": [HUB],
        "customAllocationDefinition": {"webhookUrl": "https://alloc.example/api/f",
            "apiVersion": "2021-10-01"},
    }))
    .unwrap();
    dps.create_or_update(id, enrollment, None).await.unwrap();
    let scope = dps.id_scope().to_owned();
    let token = generate(
        &format!("{scope}/registrations/{id}"),
        KEY,
        unix_now() + 3600,
        Some("registration"),
    )
    .unwrap();
    let attested = dps.attest_symmetric_key(&scope, id, &token).await.unwrap();
    let request = DeviceRegistration {
        registration_id: Some(id.into()),
        tpm: None,
        payload: None,
        csr: None,
    };
    dps.register(attested, request, Some("2019-03-31"))
        .await
        .unwrap()
}

async fn poll(dps: &Dps, id: &str, started: &RegistrationOperationStatus) -> RegistrationStatus {
    dps.operation_status(id, &started.operation_id)
        .await
        .unwrap()
        .status
}

#[tokio::test]
async fn a_registration_another_live_node_runs_is_assigning_wherever_it_is_polled() {
    let shared = shared();
    let (hub_a, _) = start_hub(&shared, "node-a").await;
    let (hub_b, _) = start_hub(&shared, "node-b").await;
    let (release, released) = watch::channel(false);
    let dps_a = start_dps(&shared, "node-a", &hub_a, &released).await;
    let dps_b = start_dps(&shared, "node-b", &hub_b, &released).await;

    let running = register(&dps_a, "reg-1").await;
    assert_eq!(running.status, RegistrationStatus::Assigning);
    assert_eq!(
        poll(&dps_b, "reg-1", &running).await,
        RegistrationStatus::Assigning
    );
    assert_eq!(
        poll(&dps_a, "reg-1", &running).await,
        RegistrationStatus::Assigning
    );

    // Another registration that node A runs, when node A restarts: its new run knows the
    // operation will never finish.
    let orphan = register(&dps_a, "reg-2").await;
    let dps_a_again = start_dps(&shared, "node-a", &hub_a, &released).await;
    assert_eq!(
        poll(&dps_a_again, "reg-2", &orphan).await,
        RegistrationStatus::Failed
    );
    assert_eq!(
        poll(&dps_b, "reg-2", &orphan).await,
        RegistrationStatus::Failed
    );

    // Once node A's assignment finishes, node B answers its outcome.
    release.send(true).unwrap();
    let outcome = tokio::time::timeout(BOUND, async {
        loop {
            let status = poll(&dps_b, "reg-1", &running).await;
            if status != RegistrationStatus::Assigning {
                return status;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(outcome, RegistrationStatus::Assigned);
    assert!(hub_b.get_device("reg-1").await.is_ok());
}

//! Module input queues and `$edgeHub` logins through the domain API, on a real (temporary)
//! store with a manual clock.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::Duration;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::model::{DeviceSpec, ModuleSpec};
use ironhub_hub::telemetry::Telemetry;
use ironhub_hub::{AuthMethod, Backends, DeviceIdentity, DeviceLogin, Hub};
use ironhub_store::{Clock, ManualClock};
use serde_json::{Value, json};

async fn hub(dir: &std::path::Path, clock: Arc<ManualClock>) -> Hub {
    let clock: Arc<dyn Clock> = clock;
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

fn spec(body: Value) -> DeviceSpec {
    serde_json::from_value(body).unwrap()
}

fn module(device_id: &str, module_id: &str) -> DeviceIdentity {
    DeviceIdentity {
        device_id: device_id.into(),
        module_id: Some(module_id.into()),
        generation_id: "g".into(),
        auth: AuthMethod::Sas,
        model_id: None,
    }
}

/// An Edge device `gw` with modules `a` and `b` and a route from `a`'s `out` to `b`'s `in`,
/// input messages living `ttl` seconds.
async fn edge(hub: &Hub, ttl: u64) {
    hub.put_device(
        "gw",
        &spec(json!({"capabilities": {"iotEdge": true}})),
        None,
    )
    .await
    .unwrap();
    for m in ["a", "b"] {
        hub.put_module("gw", m, &ModuleSpec::default(), None)
            .await
            .unwrap();
    }
    let desired = json!({"properties": {"desired": {
        "routes": {"r": "FROM /messages/modules/a/outputs/out INTO BrokeredEndpoint(\"/modules/b/inputs/in\")"},
        "storeAndForwardConfiguration": {"timeToLiveSecs": ttl},
    }}});
    hub.update_module_twin("gw", "$edgeHub", &desired, None, false)
        .await
        .unwrap();
}

async fn send_output(hub: &Hub, body: &str) {
    let mut message = Telemetry {
        body: body.as_bytes().to_vec(),
        ..Telemetry::default()
    };
    message.system.output_name = Some("out".into());
    hub.send_telemetry(&module("gw", "a"), message)
        .await
        .unwrap();
}

#[tokio::test]
async fn input_messages_wait_in_order_until_taken_or_their_time_to_live_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let hub = hub(dir.path(), clock.clone()).await;
    edge(&hub, 30).await;
    send_output(&hub, "one").await;
    clock.advance(Duration::seconds(20));
    send_output(&hub, "two").await;
    let b = module("gw", "b");
    let pending = hub.pending_inputs(&b, 0, 10).await.unwrap();
    let bodies: Vec<_> = pending.iter().map(|q| q.message.body.clone()).collect();
    assert_eq!(bodies, vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(pending[0].message.input, "in");
    assert_eq!(
        pending[0]
            .message
            .system
            .get("iothub-connection-module-id")
            .map(String::as_str),
        Some("a")
    );
    // Nothing for the sender, and nothing for a device.
    assert!(
        hub.pending_inputs(&module("gw", "a"), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Past the first message's time to live it is gone, the second is still there.
    clock.advance(Duration::seconds(15));
    let pending = hub.pending_inputs(&b, 0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(hub.expire_inputs().await.unwrap(), 1);
    assert!(
        hub.complete_input(&b, pending[0].sequence_number)
            .await
            .unwrap()
    );
    assert!(hub.pending_inputs(&b, 0, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_edge_hub_token_logs_in_the_devices_in_its_scope_only() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), Arc::new(ManualClock::default())).await;
    edge(&hub, 30).await;
    let gw = hub.get_device("gw").await.unwrap();
    let scope = gw.device_scope.clone().unwrap();
    hub.put_device("leaf", &spec(json!({"deviceScope": scope})), None)
        .await
        .unwrap();
    hub.put_module("leaf", "lm", &ModuleSpec::default(), None)
        .await
        .unwrap();
    hub.put_device("stranger", &DeviceSpec::default(), None)
        .await
        .unwrap();
    let key = hub.get_module("gw", "$edgeHub").await.unwrap();
    let key = key.authentication.symmetric_key.primary_key.unwrap();
    let token = ironhub_auth::sas::generate(
        "myhub.example/devices/gw/modules/$edgeHub",
        &key,
        ironhub_auth::unix_now() + 3600,
        None,
    )
    .unwrap();
    let login = |device_id: &'static str, module_id: Option<&'static str>| DeviceLogin {
        device_id,
        module_id,
        credentials: ironhub_auth::Credentials::new(Some(token.as_str()), &[] as &[Vec<u8>]),
        ..DeviceLogin::default()
    };
    let leaf = hub.authenticate(&login("leaf", None)).await.unwrap();
    assert_eq!(leaf.identity.key(), "leaf");
    let lm = hub.authenticate(&login("leaf", Some("lm"))).await.unwrap();
    assert_eq!(lm.identity.key(), "leaf/lm");
    assert!(hub.authenticate(&login("gw", Some("a"))).await.is_ok());
    for (device, module) in [("stranger", None), ("leaf", Some("nope")), ("ghost", None)] {
        let refused = hub.authenticate(&login(device, module)).await;
        assert!(refused.is_err(), "{device} {module:?}");
    }
}

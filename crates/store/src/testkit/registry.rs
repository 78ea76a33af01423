//! Cases of the registry, twin and session ports.

use std::sync::Arc;

use chrono::Utc;

use super::{DeviceState, NODE, OTHER_NODE, create_device, device, now, rules};
use crate::{
    C2dMessage, ConnectionState, DeviceStatus, DeviceWrite, Endpoint, HubSettings, ManualClock,
    RuntimeUpdate, TwinRecord, WriteConflict,
};

/// A create takes a free id; a replace or delete needs the current etag (or `*`); every
/// write gets a new etag.
pub async fn devices_are_written_compare_and_swap(
    store: Arc<dyn DeviceState>,
    _clock: Arc<ManualClock>,
) {
    let a = create_device(&store, "a").await;
    assert!(!a.etag.is_empty());
    let again = store
        .write_devices(vec![DeviceWrite::Create(device("a"))])
        .await
        .unwrap();
    assert_eq!(again.unwrap_err(), vec![(0, WriteConflict::AlreadyExists)]);
    let stale = DeviceWrite::Replace {
        record: device("a"),
        if_match: Some("nope".into()),
    };
    let r = store.write_devices(vec![stale]).await.unwrap();
    assert_eq!(r.unwrap_err(), vec![(0, WriteConflict::EtagMismatch)]);
    let mut disabled = a.clone();
    disabled.status = DeviceStatus::Disabled;
    let b = store
        .write_devices(vec![DeviceWrite::Replace {
            record: disabled,
            if_match: Some(a.etag.clone()),
        }])
        .await
        .unwrap()
        .unwrap()[0]
        .clone()
        .unwrap();
    assert_ne!(b.etag, a.etag);
    assert_eq!(store.get_device("a").await.unwrap(), Some(b.clone()));
    let counts = store.device_counts().await.unwrap();
    assert_eq!((counts.total, counts.enabled, counts.disabled), (1, 0, 1));
    let missing = DeviceWrite::Replace {
        record: device("nobody"),
        if_match: None,
    };
    let r = store.write_devices(vec![missing]).await.unwrap();
    assert_eq!(r.unwrap_err(), vec![(0, WriteConflict::NotFound)]);
    let stale_delete = DeviceWrite::Delete {
        id: "a".into(),
        if_match: Some(a.etag.clone()),
    };
    let r = store.write_devices(vec![stale_delete]).await.unwrap();
    assert_eq!(r.unwrap_err(), vec![(0, WriteConflict::EtagMismatch)]);
    assert!(
        store.get_device("A").await.unwrap().is_none(),
        "device ids are case-sensitive"
    );
}

/// A batch with one failing write writes nothing; an id deleted and created again gets an
/// etag it never had.
pub async fn a_failed_batch_writes_nothing_and_etags_are_never_reused(
    store: Arc<dyn DeviceState>,
    _clock: Arc<ManualClock>,
) {
    let r = store
        .write_devices(vec![
            DeviceWrite::Create(device("x")),
            DeviceWrite::Delete {
                id: "missing".into(),
                if_match: None,
            },
        ])
        .await
        .unwrap();
    assert_eq!(r.unwrap_err(), vec![(1, WriteConflict::NotFound)]);
    assert!(store.get_device("x").await.unwrap().is_none());
    let first = create_device(&store, "x").await;
    store
        .write_devices(vec![DeviceWrite::Delete {
            id: "x".into(),
            if_match: Some("*".into()),
        }])
        .await
        .unwrap()
        .unwrap();
    assert!(store.get_device("x").await.unwrap().is_none());
    let second = create_device(&store, "x").await;
    assert_ne!(first.etag, second.etag);
}

/// Devices list in id order (case-sensitive, byte by byte), a page after a given id.
pub async fn devices_list_in_id_order_by_pages(
    store: Arc<dyn DeviceState>,
    _clock: Arc<ManualClock>,
) {
    let writes = ["c", "a", "b", "B"]
        .map(|id| DeviceWrite::Create(device(id)))
        .to_vec();
    store.write_devices(writes).await.unwrap().unwrap();
    let page = store.list_devices(None, 3).await.unwrap();
    let ids: Vec<_> = page.iter().map(|d| d.device_id.as_str()).collect();
    assert_eq!(ids, ["B", "a", "b"]);
    let rest = store.list_devices(Some("b"), 3).await.unwrap();
    let ids: Vec<_> = rest.iter().map(|d| d.device_id.as_str()).collect();
    assert_eq!(ids, ["c"]);
    assert_eq!(store.device_counts().await.unwrap().total, 4);
}

fn c2d_message(device_id: &str, expiry: chrono::DateTime<Utc>) -> C2dMessage {
    super::c2d::message(device_id, "m", crate::AckMode::None, expiry)
}

/// Runtime fields (connection state, activity) change without a new etag; a registry replace
/// keeps them as stored; `cloudToDeviceMessageCount` is the number of live messages by the
/// store's clock, whatever a write says.
pub async fn runtime_updates_keep_the_etag_and_replaces_keep_runtime_fields(
    store: Arc<dyn DeviceState>,
    clock: Arc<ManualClock>,
) {
    use crate::Clock as _;
    let created = create_device(&store, "r").await;
    let t0 = clock.now();
    store
        .c2d_enqueue(
            c2d_message("r", t0 + chrono::TimeDelta::seconds(10)),
            rules(),
            t0,
        )
        .await
        .unwrap()
        .unwrap();
    store
        .c2d_enqueue(
            c2d_message("r", t0 + chrono::TimeDelta::seconds(3600)),
            rules(),
            t0,
        )
        .await
        .unwrap()
        .unwrap();
    let connected = RuntimeUpdate {
        connection_state: Some(ConnectionState::Connected),
        node: Some(NODE.into()),
        at: Some(t0),
    };
    assert!(store.update_device_runtime("r", connected).await.unwrap());
    assert!(
        !store
            .update_device_runtime("nobody", RuntimeUpdate::default())
            .await
            .unwrap()
    );
    let now_r = store.get_device("r").await.unwrap().unwrap();
    assert_eq!(
        now_r.etag, created.etag,
        "a connection does not invalidate If-Match"
    );
    assert_eq!(now_r.connection_state, ConnectionState::Connected);
    assert_eq!(now_r.connection_node.as_deref(), Some(NODE));
    assert_eq!(now_r.connection_state_updated_time, Some(t0));
    assert_eq!(now_r.last_activity_time, Some(t0));
    assert_eq!(now_r.cloud_to_device_message_count, 2);
    assert_eq!(store.device_counts().await.unwrap().connected, 1);
    clock.advance(chrono::TimeDelta::seconds(10));
    let later = store.get_device("r").await.unwrap().unwrap();
    assert_eq!(
        later.cloud_to_device_message_count, 1,
        "an expired message no longer counts"
    );
    let listed = store.list_devices(None, 10).await.unwrap();
    assert_eq!(listed[0].cloud_to_device_message_count, 1);

    // A registry update written from a stale read keeps the stored runtime fields.
    let mut stale = created.clone();
    stale.status = DeviceStatus::Disabled;
    stale.cloud_to_device_message_count = 7;
    let written = store
        .write_devices(vec![DeviceWrite::Replace {
            record: stale,
            if_match: Some(created.etag.clone()),
        }])
        .await
        .unwrap()
        .unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(written.connection_state, ConnectionState::Connected);
    assert_eq!(written.connection_node.as_deref(), Some(NODE));
    assert_eq!(written.last_activity_time, Some(t0));
    assert_eq!(written.cloud_to_device_message_count, 1);
    assert_eq!(written.status, DeviceStatus::Disabled);

    assert_eq!(store.disconnect_node(NODE).await.unwrap(), 1);
    let after = store.get_device("r").await.unwrap().unwrap();
    assert_eq!(after.connection_state, ConnectionState::Disconnected);
    assert_eq!(after.connection_node, None);
    assert_eq!(after.connection_state_updated_time, Some(clock.now()));
    assert_eq!(after.etag, written.etag);
    assert_eq!(store.device_counts().await.unwrap().connected, 0);
}

/// A connection records its node. A disconnection from another node (an old connection ending
/// after the device moved) changes nothing; a node's restart disconnects its own devices only.
pub async fn connections_belong_to_their_node(
    store: Arc<dyn DeviceState>,
    clock: Arc<ManualClock>,
) {
    use crate::Clock as _;
    for id in ["a1", "b1", "legacy"] {
        create_device(&store, id).await;
    }
    let update = |state, node: Option<&str>| RuntimeUpdate {
        connection_state: Some(state),
        node: node.map(Into::into),
        at: Some(clock.now()),
    };
    for (id, node) in [
        ("a1", Some(NODE)),
        ("b1", Some(OTHER_NODE)),
        ("legacy", None),
        ("a1", Some(OTHER_NODE)),
    ] {
        // The last: the device moved to the other node.
        let u = update(ConnectionState::Connected, node);
        assert!(store.update_device_runtime(id, u).await.unwrap());
    }
    // Its old connection on this node ends late.
    let late = update(ConnectionState::Disconnected, Some(NODE));
    store.update_device_runtime("a1", late).await.unwrap();
    let a1 = store.get_device("a1").await.unwrap().unwrap();
    assert_eq!(a1.connection_state, ConnectionState::Connected);
    assert_eq!(a1.connection_node.as_deref(), Some(OTHER_NODE));
    assert_eq!(store.device_counts().await.unwrap().connected, 3);
    assert_eq!(
        store.disconnect_node(NODE).await.unwrap(),
        1,
        "only the device of no known node"
    );
    assert_eq!(
        store
            .get_device("legacy")
            .await
            .unwrap()
            .unwrap()
            .connection_state,
        ConnectionState::Disconnected
    );
    assert_eq!(store.device_counts().await.unwrap().connected, 2);
    let own = update(ConnectionState::Disconnected, Some(OTHER_NODE));
    store.update_device_runtime("b1", own).await.unwrap();
    assert_eq!(store.disconnect_node(OTHER_NODE).await.unwrap(), 1);
    assert_eq!(store.device_counts().await.unwrap().connected, 0);
}

/// A node's heartbeat keeps it alive until its lease runs out; then it is listed as gone
/// until forgotten, and a new heartbeat brings it back.
pub async fn node_heartbeats_tell_which_nodes_are_gone(
    store: Arc<dyn DeviceState>,
    clock: Arc<ManualClock>,
) {
    use crate::Clock as _;
    let t0 = clock.now();
    assert!(store.expired_nodes(t0).await.unwrap().is_empty());
    store
        .node_heartbeat(NODE, t0 + chrono::TimeDelta::seconds(30))
        .await
        .unwrap();
    store
        .node_heartbeat(OTHER_NODE, t0 + chrono::TimeDelta::seconds(10))
        .await
        .unwrap();
    assert!(store.expired_nodes(t0).await.unwrap().is_empty());
    let later = t0 + chrono::TimeDelta::seconds(10);
    assert_eq!(store.expired_nodes(later).await.unwrap(), [OTHER_NODE]);
    store
        .node_heartbeat(OTHER_NODE, later + chrono::TimeDelta::seconds(30))
        .await
        .unwrap();
    assert!(
        store.expired_nodes(later).await.unwrap().is_empty(),
        "a renewed lease holds"
    );
    let much_later = t0 + chrono::TimeDelta::seconds(60);
    assert_eq!(
        store.expired_nodes(much_later).await.unwrap(),
        [NODE, OTHER_NODE]
    );
    store.forget_node(OTHER_NODE).await.unwrap();
    assert_eq!(store.expired_nodes(much_later).await.unwrap(), [NODE]);
}

/// Deleting a device deletes its twin, its queue and its persistent MQTT sessions (its own and
/// its modules'), and nobody else's.
pub async fn deleting_a_device_deletes_its_twin_queue_and_sessions(
    store: Arc<dyn DeviceState>,
    _clock: Arc<ManualClock>,
) {
    for id in ["d_1", "dx1"] {
        create_device(&store, id).await;
        let twin = TwinRecord {
            device_id: id.into(),
            version: 2,
            ..TwinRecord::default()
        };
        store.put_twin(twin, None).await.unwrap().unwrap();
        let expiry = now() + chrono::TimeDelta::seconds(3600);
        store
            .c2d_enqueue(c2d_message(id, expiry), rules(), now())
            .await
            .unwrap()
            .unwrap();
        store
            .set_mqtt_session(id, Some(vec!["t".into()]))
            .await
            .unwrap();
        store
            .set_mqtt_session(&format!("{id}/m1"), Some(vec!["t".into()]))
            .await
            .unwrap();
    }
    store
        .write_devices(vec![DeviceWrite::Delete {
            id: "d_1".into(),
            if_match: None,
        }])
        .await
        .unwrap()
        .unwrap();
    assert!(store.get_twin("d_1").await.unwrap().is_none());
    assert!(store.mqtt_session("d_1").await.unwrap().is_none());
    assert!(store.mqtt_session("d_1/m1").await.unwrap().is_none());
    // `_` in an id is no wildcard: the other device keeps everything.
    assert!(store.get_twin("dx1").await.unwrap().is_some());
    assert!(store.mqtt_session("dx1/m1").await.unwrap().is_some());
    create_device(&store, "d_1").await;
    assert_eq!(
        store
            .c2d_lock_next("d_1", NODE, rules(), now())
            .await
            .unwrap(),
        None,
        "a device created again starts with an empty queue"
    );
    assert!(
        store
            .c2d_lock_next("dx1", NODE, rules(), now())
            .await
            .unwrap()
            .is_some()
    );
}

/// The hub's settings are written once and never replaced; the endpoint is the last one set.
pub async fn settings_are_created_once_and_endpoints_kept(
    store: Arc<dyn DeviceState>,
    _clock: Arc<ManualClock>,
) {
    assert!(store.hub_settings().await.unwrap().is_none());
    let first = HubSettings {
        policies: ironhub_auth::default_hub_policies(),
        created_time: now(),
    };
    assert_eq!(
        store.hub_settings_or_init(first.clone()).await.unwrap(),
        first
    );
    let other = HubSettings {
        policies: vec![],
        created_time: now(),
    };
    assert_eq!(store.hub_settings_or_init(other).await.unwrap(), first);
    assert_eq!(store.hub_settings().await.unwrap(), Some(first));
    assert!(store.endpoint().await.unwrap().is_none());
    let mut endpoint = Endpoint {
        host_name: "hub.local".into(),
        host_names: vec!["hub.local".into()],
        https_port: 8443,
        mqtt_port: 8883,
        amqp_port: None,
        https_listen: None,
        tls_certificate: None,
    };
    store.set_endpoint(&endpoint).await.unwrap();
    endpoint.https_port = 443;
    store.set_endpoint(&endpoint).await.unwrap();
    assert_eq!(store.endpoint().await.unwrap(), Some(endpoint));
}

/// A twin needs its device; `if_match` is compared with the stored twin's etag (no twin
/// matches `""`); every write gets a new etag, never one a device had.
pub async fn twins_are_written_compare_and_swap(
    store: Arc<dyn DeviceState>,
    _clock: Arc<ManualClock>,
) {
    let twin = |v: u64| TwinRecord {
        device_id: "t".into(),
        version: v,
        ..TwinRecord::default()
    };
    assert_eq!(
        store.put_twin(twin(1), None).await.unwrap(),
        Err(WriteConflict::NotFound)
    );
    let device = create_device(&store, "t").await;
    assert!(store.get_twin("t").await.unwrap().is_none());
    assert_eq!(
        store.put_twin(twin(1), Some("x".into())).await.unwrap(),
        Err(WriteConflict::EtagMismatch)
    );
    let first = store
        .put_twin(twin(1), Some(String::new()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first.etag, device.etag);
    assert_eq!(store.get_twin("t").await.unwrap(), Some(first.clone()));
    assert_eq!(
        store.put_twin(twin(2), Some(String::new())).await.unwrap(),
        Err(WriteConflict::EtagMismatch)
    );
    let second = store
        .put_twin(twin(2), Some(first.etag.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(second.etag, first.etag);
    let third = store
        .put_twin(twin(3), Some("*".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.version, 3);
    assert_ne!(third.etag, second.etag);
}

/// A twin the engine cannot hold (a string with NUL, which PostgreSQL's `jsonb` refuses; the
/// hub's domain never writes one) is stored whole or not at all: on an error the stored twin
/// is unchanged, and the engine goes on serving.
pub async fn a_twin_the_engine_refuses_leaves_the_stored_one(
    store: Arc<dyn DeviceState>,
    _clock: Arc<ManualClock>,
) {
    create_device(&store, "nul").await;
    let mut twin = TwinRecord {
        device_id: "nul".into(),
        version: 1,
        ..TwinRecord::default()
    };
    twin.tags.insert("ok".into(), "fine".into());
    let first = store
        .put_twin(twin.clone(), Some(String::new()))
        .await
        .unwrap()
        .unwrap();
    twin.version = 2;
    twin.tags.insert("bad".into(), "a\u{0}b".into());
    match store.put_twin(twin, Some(first.etag.clone())).await {
        Ok(written) => {
            let written = written.unwrap();
            assert_eq!(written.tags["bad"], "a\u{0}b", "stored faithfully");
            assert_eq!(store.get_twin("nul").await.unwrap(), Some(written));
        }
        Err(_) => assert_eq!(store.get_twin("nul").await.unwrap(), Some(first)),
    }
}

/// Persistent MQTT sessions are kept by client id until discarded.
pub async fn persistent_sessions_are_kept_and_discarded(
    store: Arc<dyn DeviceState>,
    _clock: Arc<ManualClock>,
) {
    assert!(store.mqtt_session("c1").await.unwrap().is_none());
    store.set_mqtt_session("c1", None).await.unwrap();
    let subs = vec!["devices/c1/messages/devicebound/#".to_owned()];
    store
        .set_mqtt_session("c1", Some(subs.clone()))
        .await
        .unwrap();
    assert_eq!(store.mqtt_session("c1").await.unwrap(), Some(subs));
    store.set_mqtt_session("c1", Some(vec![])).await.unwrap();
    assert_eq!(store.mqtt_session("c1").await.unwrap(), Some(vec![]));
    store.set_mqtt_session("c1", None).await.unwrap();
    assert!(store.mqtt_session("c1").await.unwrap().is_none());
}

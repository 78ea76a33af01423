//! Cases of the module port.

use std::sync::Arc;

use super::create_device;
use super::{NODE, OTHER_NODE};
use crate::{
    ConnectionState, DeviceWrite, ManualClock, ModuleRecord, ModuleWrite, RuntimeUpdate, Store,
    WriteConflict,
};

/// A module record of `device` with every optional field empty.
pub fn module(device: &str, id: &str) -> ModuleRecord {
    ModuleRecord {
        device_id: device.into(),
        module_id: id.into(),
        generation_id: "1".into(),
        etag: String::new(),
        managed_by: None,
        connection_state: ConnectionState::Disconnected,
        connection_node: None,
        connection_state_updated_time: None,
        last_activity_time: None,
        cloud_to_device_message_count: 0,
        authentication: crate::Authentication::default(),
    }
}

async fn write(
    store: &Arc<dyn Store>,
    w: ModuleWrite,
) -> Result<Option<ModuleRecord>, WriteConflict> {
    store.write_module(w).await.unwrap()
}

/// A module needs its device and a free id; a replace or delete needs the current etag (or
/// `*`); every write gets a new etag; ids are case-sensitive.
pub async fn modules_are_written_compare_and_swap(store: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let orphan = write(&store, ModuleWrite::Create(module("nobody", "m"))).await;
    assert_eq!(orphan, Err(WriteConflict::NotFound));
    assert!(store.list_modules("nobody").await.unwrap().is_empty());
    let device = create_device(&store, "d").await;
    let m = write(&store, ModuleWrite::Create(module("d", "m")))
        .await
        .unwrap()
        .unwrap();
    assert!(!m.etag.is_empty());
    assert_ne!(m.etag, device.etag, "etags are unique across records");
    let again = write(&store, ModuleWrite::Create(module("d", "m"))).await;
    assert_eq!(again, Err(WriteConflict::AlreadyExists));
    let stale = ModuleWrite::Replace {
        record: module("d", "m"),
        if_match: Some("nope".into()),
    };
    assert_eq!(write(&store, stale).await, Err(WriteConflict::EtagMismatch));
    let mut managed = m.clone();
    managed.managed_by = Some("someone".into());
    managed.connection_state = ConnectionState::Connected;
    let n = write(
        &store,
        ModuleWrite::Replace {
            record: managed,
            if_match: Some(m.etag.clone()),
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_ne!(n.etag, m.etag);
    assert_eq!(n.managed_by.as_deref(), Some("someone"));
    assert_eq!(
        n.connection_state,
        ConnectionState::Disconnected,
        "a replace keeps the connection state"
    );
    assert_eq!(store.get_module("d", "m").await.unwrap(), Some(n.clone()));
    assert!(store.get_module("d", "M").await.unwrap().is_none());
    assert!(store.get_module("D", "m").await.unwrap().is_none());
    let missing = ModuleWrite::Replace {
        record: module("d", "other"),
        if_match: None,
    };
    assert_eq!(write(&store, missing).await, Err(WriteConflict::NotFound));
    let stale_delete = ModuleWrite::Delete {
        device_id: "d".into(),
        module_id: "m".into(),
        if_match: Some(m.etag.clone()),
    };
    assert_eq!(
        write(&store, stale_delete).await,
        Err(WriteConflict::EtagMismatch)
    );
    assert!(store.get_module("d", "m").await.unwrap().is_some());
    let delete = ModuleWrite::Delete {
        device_id: "d".into(),
        module_id: "m".into(),
        if_match: Some("*".into()),
    };
    assert_eq!(write(&store, delete.clone()).await, Ok(None));
    assert!(store.get_module("d", "m").await.unwrap().is_none());
    assert_eq!(write(&store, delete).await, Err(WriteConflict::NotFound));
}

/// Modules list in id order, per device; deleting a device deletes its modules, and a new
/// device of the same id starts without any.
pub async fn modules_list_in_id_order_and_go_with_their_device(
    store: Arc<dyn Store>,
    _clock: Arc<ManualClock>,
) {
    create_device(&store, "d").await;
    create_device(&store, "e").await;
    for id in ["b", "c", "a"] {
        write(&store, ModuleWrite::Create(module("d", id)))
            .await
            .unwrap();
    }
    write(&store, ModuleWrite::Create(module("e", "z")))
        .await
        .unwrap();
    let ids: Vec<_> = store
        .list_modules("d")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.module_id)
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    store
        .write_devices(vec![DeviceWrite::Delete {
            id: "d".into(),
            if_match: None,
        }])
        .await
        .unwrap()
        .unwrap();
    assert!(store.list_modules("d").await.unwrap().is_empty());
    assert!(store.get_module("d", "a").await.unwrap().is_none());
    assert_eq!(store.list_modules("e").await.unwrap().len(), 1);
    create_device(&store, "d").await;
    assert!(store.list_modules("d").await.unwrap().is_empty());
}

/// A module's twin needs its module, is written compare-and-swap, is the module's own (not
/// its device's) and goes with the module.
pub async fn module_twins_are_written_compare_and_swap(
    store: Arc<dyn Store>,
    _clock: Arc<ManualClock>,
) {
    create_device(&store, "d").await;
    let twin = |v| crate::TwinRecord {
        device_id: "d".into(),
        version: v,
        ..Default::default()
    };
    let r = store.put_module_twin("m", twin(1), None).await.unwrap();
    assert_eq!(r, Err(WriteConflict::NotFound));
    write(&store, ModuleWrite::Create(module("d", "m")))
        .await
        .unwrap();
    assert!(store.get_module_twin("d", "m").await.unwrap().is_none());
    let stale = store
        .put_module_twin("m", twin(1), Some("x".into()))
        .await
        .unwrap();
    assert_eq!(stale, Err(WriteConflict::EtagMismatch));
    let first = store
        .put_module_twin("m", twin(1), Some(String::new()))
        .await
        .unwrap()
        .unwrap();
    assert!(!first.etag.is_empty());
    let second = store
        .put_module_twin("m", twin(2), Some(first.etag.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(second.etag, first.etag);
    assert_eq!(store.get_module_twin("d", "m").await.unwrap(), Some(second));
    assert!(
        store.get_twin("d").await.unwrap().is_none(),
        "the device's twin is its own"
    );
    let delete = ModuleWrite::Delete {
        device_id: "d".into(),
        module_id: "m".into(),
        if_match: None,
    };
    write(&store, delete).await.unwrap();
    write(&store, ModuleWrite::Create(module("d", "m")))
        .await
        .unwrap();
    assert!(store.get_module_twin("d", "m").await.unwrap().is_none());
}

/// An engine that scans module twins gives every module of every device once, in (device
/// id, module id) order, each with its device and its twin, a page at a time from where the
/// last stopped (an engine that does not scan answers `None`).
pub async fn module_twins_scan_in_id_order(store: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    for d in ["b", "a", "c"] {
        create_device(&store, d).await;
    }
    for (d, m) in [("b", "y"), ("a", "m"), ("b", "x"), ("c", "z"), ("b", "X")] {
        write(&store, ModuleWrite::Create(module(d, m)))
            .await
            .unwrap();
    }
    let twin = crate::TwinRecord {
        device_id: "b".into(),
        version: 3,
        ..Default::default()
    };
    store
        .put_module_twin("x", twin, None)
        .await
        .unwrap()
        .unwrap();
    let Some(all) = store.scan_module_twins(None, 100).await.unwrap() else {
        return;
    };
    let ids: Vec<String> = all
        .iter()
        .map(|(d, m, t)| {
            assert_eq!(d.device_id, m.device_id);
            let version = t.as_ref().map_or(0, |t| t.version);
            format!("{}/{}/{version}", m.device_id, m.module_id)
        })
        .collect();
    assert_eq!(ids, ["a/m/0", "b/X/0", "b/x/3", "b/y/0", "c/z/0"]);
    let page = |after: Option<(&'static str, Option<&'static str>)>, limit| {
        let store = store.clone();
        async move {
            let rows = store
                .scan_module_twins(after, limit)
                .await
                .unwrap()
                .unwrap();
            rows.iter()
                .map(|(_, m, _)| format!("{}/{}", m.device_id, m.module_id))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(Some(("b", Some("X"))), 2).await, ["b/x", "b/y"]);
    assert_eq!(page(Some(("b", Some("y"))), 2).await, ["c/z"]);
    assert_eq!(page(Some(("a", None)), 1).await, ["b/X"]);
    assert_eq!(page(Some(("b", None)), 5).await, ["c/z"]);
    assert!(page(Some(("c", Some("z"))), 5).await.is_empty());
    // Modules go with their device.
    store
        .write_devices(vec![DeviceWrite::Delete {
            id: "b".into(),
            if_match: None,
        }])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page(None, 10).await, ["a/m", "c/z"]);
}

/// A module's connection state changes as a device's does: without a new etag, kept by a
/// replace, a disconnection applying only to the node holding the connection, and a node's
/// recovery releasing only its own modules.
pub async fn module_connections_keep_the_etag_and_belong_to_their_node(
    store: Arc<dyn Store>,
    _clock: Arc<ManualClock>,
) {
    create_device(&store, "d").await;
    let created = write(&store, ModuleWrite::Create(module("d", "m")))
        .await
        .unwrap()
        .unwrap();
    write(&store, ModuleWrite::Create(module("d", "other")))
        .await
        .unwrap();
    let at = chrono::Utc::now();
    let update = |state, node: &str| RuntimeUpdate {
        connection_state: Some(state),
        node: Some(node.into()),
        at: Some(at),
    };
    assert!(
        !store
            .update_module_runtime("d", "nope", update(ConnectionState::Connected, NODE))
            .await
            .unwrap()
    );
    assert!(
        store
            .update_module_runtime("d", "m", update(ConnectionState::Connected, NODE))
            .await
            .unwrap()
    );
    let m = store.get_module("d", "m").await.unwrap().unwrap();
    assert_eq!(m.connection_state, ConnectionState::Connected);
    assert_eq!(m.connection_node.as_deref(), Some(NODE));
    assert_eq!(m.connection_state_updated_time, Some(at));
    assert_eq!(m.last_activity_time, Some(at));
    assert_eq!(m.etag, created.etag, "runtime changes keep the etag");
    // A replace keeps the runtime fields.
    let replaced = write(
        &store,
        ModuleWrite::Replace {
            record: module("d", "m"),
            if_match: Some(m.etag.clone()),
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(replaced.connection_state, ConnectionState::Connected);
    assert_eq!(replaced.connection_node.as_deref(), Some(NODE));
    // Another node's late disconnection changes nothing; the holder's does.
    store
        .update_module_runtime("d", "m", update(ConnectionState::Disconnected, OTHER_NODE))
        .await
        .unwrap();
    let m = store.get_module("d", "m").await.unwrap().unwrap();
    assert_eq!(m.connection_state, ConnectionState::Connected);
    store
        .update_module_runtime("d", "m", update(ConnectionState::Disconnected, NODE))
        .await
        .unwrap();
    let m = store.get_module("d", "m").await.unwrap().unwrap();
    assert_eq!(m.connection_state, ConnectionState::Disconnected);
    assert_eq!(m.connection_node, None);
    // A node's recovery disconnects its own modules only.
    for (id, node) in [("m", NODE), ("other", OTHER_NODE)] {
        store
            .update_module_runtime("d", id, update(ConnectionState::Connected, node))
            .await
            .unwrap();
    }
    assert_eq!(store.disconnect_node(NODE).await.unwrap(), 1);
    let m = store.get_module("d", "m").await.unwrap().unwrap();
    assert_eq!(m.connection_state, ConnectionState::Disconnected);
    let other = store.get_module("d", "other").await.unwrap().unwrap();
    assert_eq!(other.connection_state, ConnectionState::Connected);
    assert_eq!(store.disconnect_node(OTHER_NODE).await.unwrap(), 1);
}

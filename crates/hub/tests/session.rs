//! Device sessions through the domain API, on a real (temporary) store and the in-process bus:
//! attach, connection state, takeover, and leaving however the session ends.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{authenticated, temp_hub};
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{Hub, Telemetry};
use ironhub_store::{BusMessage, ConnectionState};

async fn hub_with(device: &str) -> (Hub, tempfile::TempDir) {
    let (hub, dir) = temp_hub().await;
    hub.put_device(device, &DeviceSpec::default(), None)
        .await
        .unwrap();
    (hub, dir)
}

async fn state(hub: &Hub, id: &str) -> ConnectionState {
    hub.get_device(id).await.unwrap().connection_state
}

/// Waits, at most 5 s, until the device is shown disconnected (a dropped session leaves from
/// a task of its own).
async fn until_disconnected(hub: &Hub, id: &str) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while state(hub, id).await != ConnectionState::Disconnected {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the device is still shown connected");
}

#[tokio::test]
async fn a_session_attaches_shows_the_device_connected_and_close_undoes_both() {
    let (hub, _dir) = hub_with("d1").await;
    assert_eq!(state(&hub, "d1").await, ConnectionState::Disconnected);
    let mut session = hub.connect_device(authenticated("d1")).await;
    assert_eq!(state(&hub, "d1").await, ConnectionState::Connected);
    assert!(hub.bus().is_connected("d1").await);

    hub.bus()
        .send("d1", BusMessage::C2dAvailable)
        .await
        .unwrap();
    assert_eq!(session.next_message().await, Some(BusMessage::C2dAvailable));
    session.send_telemetry(Telemetry::default()).await.unwrap();

    session.close().await;
    assert!(!hub.bus().is_connected("d1").await);
    assert_eq!(state(&hub, "d1").await, ConnectionState::Disconnected);
}

#[tokio::test]
async fn a_takeover_tells_the_old_session_and_its_close_leaves_the_new_one_connected() {
    let (hub, _dir) = hub_with("d1").await;
    let mut old = hub.connect_device(authenticated("d1")).await;
    let new = hub.connect_device(authenticated("d1")).await;
    assert_eq!(old.next_message().await, Some(BusMessage::TakenOver));
    old.close().await;
    assert!(hub.bus().is_connected("d1").await);
    assert_eq!(state(&hub, "d1").await, ConnectionState::Connected);
    new.close().await;
    assert_eq!(state(&hub, "d1").await, ConnectionState::Disconnected);
}

#[tokio::test]
async fn a_session_dropped_without_close_leaves_all_the_same() {
    let (hub, _dir) = hub_with("d1").await;
    let session = hub.connect_device(authenticated("d1")).await;
    drop(session);
    until_disconnected(&hub, "d1").await;
    assert!(!hub.bus().is_connected("d1").await);
}

#[tokio::test]
async fn a_session_whose_task_is_aborted_or_panics_leaves() {
    let (hub, _dir) = hub_with("d1").await;
    let (opened, is_open) = tokio::sync::oneshot::channel();
    let task = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let _session = hub.connect_device(authenticated("d1")).await;
            opened.send(()).unwrap();
            std::future::pending::<()>().await;
        })
    };
    is_open.await.unwrap();
    assert_eq!(state(&hub, "d1").await, ConnectionState::Connected);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    until_disconnected(&hub, "d1").await;

    let task = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let _session = hub.connect_device(authenticated("d1")).await;
            panic!("the connection's code failed");
        })
    };
    assert!(task.await.unwrap_err().is_panic());
    until_disconnected(&hub, "d1").await;
}

#[tokio::test]
async fn a_request_s_session_neither_attaches_nor_shows_the_device_connected() {
    let (hub, _dir) = hub_with("d1").await;
    let mut session = hub.device_request(authenticated("d1"));
    assert_eq!(session.next_message().await, None);
    session.send_telemetry(Telemetry::default()).await.unwrap();
    assert!(!hub.bus().is_connected("d1").await);
    assert_eq!(state(&hub, "d1").await, ConnectionState::Disconnected);
    assert!(
        hub.get_device("d1")
            .await
            .unwrap()
            .last_activity_time
            .is_some()
    );
}

//! Cases of the device bus port. Each case gets the buses of two nodes of one hub, bridged.

use std::sync::Arc;
use std::time::Duration;

use crate::{BusError, BusMessage, DeviceBus, MethodResponse};

/// A second connection of a device takes over, on whichever node it arrives: the first hears
/// `TakenOver`, and its leaving does not unregister the second.
pub async fn a_new_connection_takes_over(a: Arc<dyn DeviceBus>, b: Arc<dyn DeviceBus>) {
    assert_ne!(a.node_id(), b.node_id());
    let mut first = a.attach("d1").await;
    let second = a.attach("d1").await;
    assert_ne!(first.connection_id, second.connection_id);
    assert_eq!(first.messages.recv().await, Some(BusMessage::TakenOver));
    a.detach("d1", first.connection_id).await;
    assert!(a.is_connected("d1").await);
    let mut third = a.attach("d1").await;
    let moved = b.attach("d1").await;
    assert_eq!(third.messages.recv().await, Some(BusMessage::TakenOver));
    assert_eq!(a.presence("d1").await.as_deref(), Some(b.node_id()));
    a.detach("d1", third.connection_id).await;
    a.detach("d1", second.connection_id).await;
    assert!(
        a.is_connected("d1").await,
        "an old connection leaving keeps the new one"
    );
    b.detach("d1", moved.connection_id).await;
    assert!(!a.is_connected("d1").await);
    assert!(!b.is_connected("d1").await);
    assert_eq!(
        a.send("d1", BusMessage::C2dAvailable).await,
        Err(BusError::NotConnected)
    );
}

/// A message reaches the device's connection, and only that device's, from any node; a
/// module is its own address; each node sees where a device is connected.
pub async fn messages_reach_the_current_connection_only(
    a: Arc<dyn DeviceBus>,
    b: Arc<dyn DeviceBus>,
) {
    let mut device = b.attach("d1").await;
    let mut module = a.attach("d1/m1").await;
    assert_eq!(a.presence("d1").await.as_deref(), Some(b.node_id()));
    assert_eq!(b.presence("d1/m1").await.as_deref(), Some(a.node_id()));
    assert_eq!(a.presence("d2").await, None);
    a.send("d1", BusMessage::C2dAvailable).await.unwrap();
    let patch = BusMessage::DesiredPatch {
        version: 3,
        body: b"{}".to_vec(),
    };
    b.send("d1/m1", patch.clone()).await.unwrap();
    assert_eq!(device.messages.recv().await, Some(BusMessage::C2dAvailable));
    assert_eq!(module.messages.recv().await, Some(patch));
    // The module input hint crosses nodes too.
    b.send("d1/m1", BusMessage::InputsAvailable).await.unwrap();
    assert_eq!(
        module.messages.recv().await,
        Some(BusMessage::InputsAvailable)
    );
    assert!(device.messages.try_recv().is_err());
    drop(device);
    assert!(
        !a.is_connected("d1").await,
        "a dropped connection is not connected"
    );
}

/// Waiting for a device ends as soon as it connects on any node, or at the timeout.
pub async fn waiting_for_a_device_ends_when_it_connects(
    a: Arc<dyn DeviceBus>,
    b: Arc<dyn DeviceBus>,
) {
    assert!(!a.wait_for_connect("d1", Duration::from_millis(20)).await);
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.wait_for_connect("d1", Duration::from_secs(30)).await })
    };
    tokio::task::yield_now().await;
    let _conn = b.attach("d1").await;
    let started = std::time::Instant::now();
    assert!(waiter.await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        a.wait_for_connect("d1", Duration::ZERO).await,
        "already connected"
    );
}

/// A method call reaches the device wherever it is connected and its answer comes back;
/// without an answer the call times out; a device without a connection is `NotConnected`.
pub async fn method_calls_round_trip_and_time_out(a: Arc<dyn DeviceBus>, b: Arc<dyn DeviceBus>) {
    let mut conn = b.attach("d1").await;
    let device = {
        let b = b.clone();
        tokio::spawn(async move {
            if let Some(BusMessage::Method(call)) = conn.messages.recv().await {
                let crate::MethodCall {
                    call_id,
                    name,
                    payload,
                } = *call;
                assert_eq!(name, "reboot");
                b.complete_method(
                    call_id,
                    Ok(MethodResponse {
                        status: 200,
                        payload,
                    }),
                );
            }
            conn
        })
    };
    let r = a
        .call_method("d1", "reboot", b"{}".to_vec(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        r,
        MethodResponse {
            status: 200,
            payload: b"{}".to_vec()
        }
    );
    let _conn = device.await.unwrap();
    let r = a
        .call_method("d1", "slow", vec![], Duration::from_millis(20))
        .await;
    assert_eq!(r, Err(BusError::Timeout));
    let r = a
        .call_method("nobody", "x", vec![], Duration::from_secs(1))
        .await;
    assert_eq!(r, Err(BusError::NotConnected));
}

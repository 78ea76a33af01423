//! Cases of the device bus port.

use std::sync::Arc;
use std::time::Duration;

use crate::{BusError, BusMessage, DeviceBus, MethodResponse};

/// A second connection of a device takes over: the first hears `TakenOver`, and its leaving
/// does not unregister the second.
pub async fn a_new_connection_takes_over(bus: Arc<dyn DeviceBus>) {
    let mut first = bus.attach("d1");
    let second = bus.attach("d1");
    assert_ne!(first.connection_id, second.connection_id);
    assert_eq!(first.messages.recv().await, Some(BusMessage::TakenOver));
    bus.detach("d1", first.connection_id);
    assert!(bus.is_connected("d1"));
    bus.detach("d1", second.connection_id);
    assert!(!bus.is_connected("d1"));
    assert_eq!(
        bus.send("d1", BusMessage::C2dAvailable).await,
        Err(BusError::NotConnected)
    );
}

/// A message reaches the device's connection, and only that device's; a module is its own
/// address.
pub async fn messages_reach_the_current_connection_only(bus: Arc<dyn DeviceBus>) {
    let mut device = bus.attach("d1");
    let mut module = bus.attach("d1/m1");
    bus.send("d1", BusMessage::C2dAvailable).await.unwrap();
    let patch = BusMessage::DesiredPatch {
        version: 3,
        body: b"{}".to_vec(),
    };
    bus.send("d1/m1", patch.clone()).await.unwrap();
    assert_eq!(device.messages.recv().await, Some(BusMessage::C2dAvailable));
    assert_eq!(module.messages.recv().await, Some(patch));
    assert!(device.messages.try_recv().is_err());
    assert!(!bus.is_connected("d2"));
    drop(device);
    assert!(
        !bus.is_connected("d1"),
        "a dropped connection is not connected"
    );
}

/// A method call reaches the device and its answer comes back; without an answer the call
/// times out; a device without a connection is `NotConnected`.
pub async fn method_calls_round_trip_and_time_out(bus: Arc<dyn DeviceBus>) {
    let mut conn = bus.attach("d1");
    let device = {
        let bus = bus.clone();
        tokio::spawn(async move {
            if let Some(BusMessage::Method {
                call_id,
                name,
                payload,
            }) = conn.messages.recv().await
            {
                assert_eq!(name, "reboot");
                bus.complete_method(
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
    let r = bus
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
    let r = bus
        .call_method("d1", "slow", vec![], Duration::from_millis(20))
        .await;
    assert_eq!(r, Err(BusError::Timeout));
    let r = bus
        .call_method("nobody", "x", vec![], Duration::from_secs(1))
        .await;
    assert_eq!(r, Err(BusError::NotConnected));
}

//! The device bus: delivers a message to the connection that holds a device, wherever it is,
//! and carries method responses back. The embedded [`LocalBus`] serves one node; a later
//! implementation on NATS serves many.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

/// What the bus brings to a device's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    /// Another connection of the same device took over: close this one.
    TakenOver,
    /// The device's credentials or status changed: close this one.
    Revoked,
    /// Cloud-to-device messages are waiting in the device's queue.
    C2dAvailable,
    /// A desired-properties patch, already rendered (JSON with `$version`).
    DesiredPatch { version: u64, body: Vec<u8> },
    /// A direct method call; answer with [`DeviceBus::complete_method`] and this `call_id`.
    Method {
        call_id: u64,
        name: String,
        payload: Vec<u8>,
    },
}

/// A device's answer to a direct method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResponse {
    pub status: i32,
    pub payload: Vec<u8>,
}

/// Why a call through the bus did not get an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("the device is not connected")]
    NotConnected,
    #[error("the device is connected but not subscribed to methods")]
    NotSubscribed,
    #[error("the device did not answer in time")]
    Timeout,
}

/// A connection's registration on the bus.
#[derive(Debug)]
pub struct Attachment {
    /// Identifies this connection among the device's successive connections.
    pub connection_id: u64,
    pub messages: mpsc::Receiver<BusMessage>,
}

/// See the module documentation. Devices are named `deviceId` or `deviceId/moduleId`.
#[async_trait]
pub trait DeviceBus: Send + Sync + std::fmt::Debug + 'static {
    /// Registers a connection for `device`; an earlier connection of it gets
    /// [`BusMessage::TakenOver`].
    fn attach(&self, device: &str) -> Attachment;
    /// Removes a connection, unless a newer one has replaced it.
    fn detach(&self, device: &str, connection_id: u64);
    /// Whether `device` holds a connection.
    fn is_connected(&self, device: &str) -> bool;
    /// Sends a message to the device's connection.
    async fn send(&self, device: &str, message: BusMessage) -> Result<(), BusError>;
    /// Calls a direct method and waits for the answer, at most `timeout`.
    async fn call_method(
        &self,
        device: &str,
        name: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<MethodResponse, BusError>;
    /// Delivers the answer (or the failure) of a method call.
    fn complete_method(&self, call_id: u64, response: Result<MethodResponse, BusError>);
}

/// Messages a connection may have waiting before the bus treats it as stuck.
const QUEUE: usize = 256;

/// The in-process bus.
#[derive(Debug, Default)]
pub struct LocalBus {
    connections: Mutex<HashMap<String, (u64, mpsc::Sender<BusMessage>)>>,
    calls: Mutex<HashMap<u64, oneshot::Sender<Result<MethodResponse, BusError>>>>,
    ids: AtomicU64,
}

impl LocalBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn sender(&self, device: &str) -> Option<mpsc::Sender<BusMessage>> {
        self.connections
            .lock()
            .ok()?
            .get(device)
            .map(|(_, tx)| tx.clone())
    }
}

#[async_trait]
impl DeviceBus for LocalBus {
    fn attach(&self, device: &str) -> Attachment {
        let (tx, rx) = mpsc::channel(QUEUE);
        let connection_id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut map) = self.connections.lock()
            && let Some((_, old)) = map.insert(device.to_owned(), (connection_id, tx))
        {
            let _ = old.try_send(BusMessage::TakenOver);
        }
        Attachment {
            connection_id,
            messages: rx,
        }
    }

    fn detach(&self, device: &str, connection_id: u64) {
        if let Ok(mut map) = self.connections.lock()
            && map.get(device).is_some_and(|(id, _)| *id == connection_id)
        {
            map.remove(device);
        }
    }

    fn is_connected(&self, device: &str) -> bool {
        self.sender(device).is_some_and(|tx| !tx.is_closed())
    }

    async fn send(&self, device: &str, message: BusMessage) -> Result<(), BusError> {
        let tx = self.sender(device).ok_or(BusError::NotConnected)?;
        tx.send(message).await.map_err(|_| BusError::NotConnected)
    }

    async fn call_method(
        &self,
        device: &str,
        name: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<MethodResponse, BusError> {
        let call_id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let (reply, answer) = oneshot::channel();
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(call_id, reply);
        }
        let message = BusMessage::Method {
            call_id,
            name: name.to_owned(),
            payload,
        };
        let result = match self.send(device, message).await {
            Err(e) => Err(e),
            Ok(()) => match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(BusError::NotConnected),
                Err(_) => Err(BusError::Timeout),
            },
        };
        if let Ok(mut calls) = self.calls.lock() {
            calls.remove(&call_id);
        }
        result
    }

    fn complete_method(&self, call_id: u64, response: Result<MethodResponse, BusError>) {
        let reply = self.calls.lock().ok().and_then(|mut c| c.remove(&call_id));
        if let Some(reply) = reply {
            let _ = reply.send(response);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_connection_takes_over() {
        let bus = LocalBus::new();
        let mut first = bus.attach("d1");
        let second = bus.attach("d1");
        assert_eq!(first.messages.recv().await, Some(BusMessage::TakenOver));
        // The old connection leaving does not unregister the new one.
        bus.detach("d1", first.connection_id);
        assert!(bus.is_connected("d1"));
        bus.detach("d1", second.connection_id);
        assert!(!bus.is_connected("d1"));
        assert_eq!(
            bus.send("d1", BusMessage::C2dAvailable).await,
            Err(BusError::NotConnected)
        );
    }

    #[tokio::test]
    async fn method_calls_round_trip_and_time_out() {
        let bus = std::sync::Arc::new(LocalBus::new());
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
            .call_method("d1", "reboot", b"{}".to_vec(), Duration::from_secs(5))
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
}

//! The in-process [`DeviceBus`]: one node's connections, in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ironhub_store::{Attachment, BusError, BusMessage, DeviceBus, MethodResponse};
use tokio::sync::{mpsc, oneshot};

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

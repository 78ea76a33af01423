//! The in-process [`DeviceBus`]: the connections of the nodes of one process, in memory. A
//! single server has one node ([`LocalBus::new`]); nodes joined to it ([`LocalBus::join`])
//! share its connections, as the nodes of a hub share a NATS bus.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ironhub_store::{
    Attachment, BusError, BusMessage, DeviceBus, LOCAL_NODE, MethodResponse, PendingCalls,
};
use tokio::sync::{Notify, mpsc};

/// Messages a connection may have waiting before the bus treats it as stuck.
const QUEUE: usize = 256;

/// One device's connection: which node holds it, which connection it is, where to send.
#[derive(Debug)]
struct Connection {
    node: String,
    id: u64,
    tx: mpsc::Sender<BusMessage>,
}

/// What the joined nodes share.
#[derive(Debug, Default)]
struct Fabric {
    connections: Mutex<HashMap<String, Connection>>,
    calls: PendingCalls,
    ids: AtomicU64,
    /// Woken whenever a connection attaches.
    attached: Notify,
}

/// The in-process bus of one node.
#[derive(Debug, Clone)]
pub struct LocalBus {
    node: String,
    fabric: Arc<Fabric>,
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalBus {
    /// The bus of a single node, named [`LOCAL_NODE`].
    pub fn new() -> Self {
        Self::with_node(LOCAL_NODE)
    }

    /// The bus of a single node named `node`.
    pub fn with_node(node: impl Into<String>) -> Self {
        LocalBus {
            node: node.into(),
            fabric: Arc::default(),
        }
    }

    /// The bus of another node, `node`, bridged to this one's: each reaches the other's
    /// connections.
    pub fn join(&self, node: impl Into<String>) -> Self {
        LocalBus {
            node: node.into(),
            fabric: self.fabric.clone(),
        }
    }

    /// What `f` reads of the device's open connection, if it has one.
    fn open_connection<T>(&self, device: &str, f: impl FnOnce(&Connection) -> T) -> Option<T> {
        self.fabric
            .connections
            .lock()
            .ok()?
            .get(device)
            .filter(|c| !c.tx.is_closed())
            .map(f)
    }

    fn sender(&self, device: &str) -> Option<mpsc::Sender<BusMessage>> {
        self.open_connection(device, |c| c.tx.clone())
    }

    fn next_id(&self) -> u64 {
        self.fabric.ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

#[async_trait]
impl DeviceBus for LocalBus {
    fn node_id(&self) -> &str {
        &self.node
    }

    async fn attach(&self, device: &str) -> Attachment {
        let (tx, rx) = mpsc::channel(QUEUE);
        let connection_id = self.next_id();
        let connection = Connection {
            node: self.node.clone(),
            id: connection_id,
            tx,
        };
        if let Ok(mut map) = self.fabric.connections.lock()
            && let Some(old) = map.insert(device.to_owned(), connection)
        {
            let _ = old.tx.try_send(BusMessage::TakenOver);
        }
        self.fabric.attached.notify_waiters();
        Attachment {
            connection_id,
            messages: rx,
        }
    }

    async fn detach(&self, device: &str, connection_id: u64) {
        if let Ok(mut map) = self.fabric.connections.lock()
            && map.get(device).is_some_and(|c| c.id == connection_id)
        {
            map.remove(device);
        }
    }

    async fn presence(&self, device: &str) -> Option<String> {
        self.open_connection(device, |c| c.node.clone())
    }

    async fn wait_for_connect(&self, device: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so an attach in between still wakes us.
            let attached = self.fabric.attached.notified();
            tokio::pin!(attached);
            attached.as_mut().enable();
            if self.sender(device).is_some() {
                return true;
            }
            if tokio::time::timeout_at(deadline, attached).await.is_err() {
                return self.sender(device).is_some();
            }
        }
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
        self.fabric
            .calls
            .call(name, payload, timeout, |message| self.send(device, message))
            .await
    }

    fn complete_method(&self, call_id: u64, response: Result<MethodResponse, BusError>) {
        self.fabric.calls.complete(call_id, response);
    }
}

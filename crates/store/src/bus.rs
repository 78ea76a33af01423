//! The device bus: delivers a message to the connection that holds a device, wherever it is,
//! and carries method responses back. The embedded engine's in-process bus serves one node; a
//! later implementation on NATS serves many.

use std::time::Duration;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

/// The node id of a server that runs alone (the default when none is configured).
pub const LOCAL_NODE: &str = "local";

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
    /// A direct method call; answer with [`DeviceBus::complete_method`] and its `call_id`.
    Method(Box<MethodCall>),
    /// Messages are waiting in the module's input queue (`ModuleInputStore`).
    InputsAvailable,
}

/// A direct method call as the bus carries it (boxed in [`BusMessage`], whose size is what
/// every connection's channel reserves 32 slots of when it attaches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodCall {
    /// What [`DeviceBus::complete_method`] answers it with.
    pub call_id: u64,
    pub name: String,
    pub payload: Vec<u8>,
}

/// A message for a module's input (IoT Edge's `BrokeredEndpoint("/modules/{m}/inputs/{i}")`):
/// another module's output message, as its sender's transport gave it to the hub.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputMessage {
    /// The input's name.
    pub input: String,
    /// System properties under IoT Hub's names (`message-id`, `content-type`,
    /// `iothub-connection-device-id`, `iothub-connection-module-id`, `iothub-outputname`, …).
    pub system: BTreeMap<String, String>,
    /// The sender's properties; `None` is a property without a value.
    pub application: BTreeMap<String, Option<String>>,
    pub body: Vec<u8>,
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

/// See the module documentation. Devices are named `deviceId` or `deviceId/moduleId`. Each
/// node of a hub has its own bus, named by its node id; the buses of a hub's nodes reach each
/// other's connections and know which node holds each device (its presence).
#[async_trait]
pub trait DeviceBus: Send + Sync + std::fmt::Debug + 'static {
    /// The node this bus serves (the owner it records for connections, locks and operations).
    fn node_id(&self) -> &str;
    /// Registers a connection for `device` on this node; an earlier connection of it, on any
    /// node, gets [`BusMessage::TakenOver`].
    async fn attach(&self, device: &str) -> Attachment;
    /// Removes a connection, unless a newer one has replaced it.
    async fn detach(&self, device: &str, connection_id: u64);
    /// The node holding `device`'s connection, if one does.
    async fn presence(&self, device: &str) -> Option<String>;
    /// Whether `device` holds a connection, on any node.
    async fn is_connected(&self, device: &str) -> bool {
        self.presence(device).await.is_some()
    }
    /// Waits until `device` holds a connection or `timeout` passes; whether it does.
    async fn wait_for_connect(&self, device: &str, timeout: Duration) -> bool;
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

/// The method calls a node waits on, by call id: what a bus pairs a device's answer
/// ([`DeviceBus::complete_method`]) with its call through.
#[derive(Debug, Default)]
pub struct PendingCalls {
    calls: Mutex<HashMap<u64, oneshot::Sender<Result<MethodResponse, BusError>>>>,
    ids: AtomicU64,
}

impl PendingCalls {
    /// Registers a call of method `name` under a new call id, hands `deliver` the
    /// [`BusMessage::Method`] for the device and waits for the answer, at most `timeout`.
    pub async fn call<F: Future<Output = Result<(), BusError>>>(
        &self,
        name: &str,
        payload: Vec<u8>,
        timeout: Duration,
        deliver: impl FnOnce(BusMessage) -> F,
    ) -> Result<MethodResponse, BusError> {
        let call_id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let deliver = deliver(BusMessage::Method(Box::new(MethodCall {
            call_id,
            name: name.to_owned(),
            payload,
        })));
        let (reply, answer) = oneshot::channel();
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(call_id, reply);
        }
        let result = match deliver.await {
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

    /// Hands a call its answer (nothing if it already ended).
    pub fn complete(&self, call_id: u64, response: Result<MethodResponse, BusError>) {
        let reply = self.calls.lock().ok().and_then(|mut c| c.remove(&call_id));
        if let Some(reply) = reply {
            let _ = reply.send(response);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's channel reserves its first block of 32 messages when it attaches, so
    /// every idle device holds 32 times this: the large variants are boxed.
    #[test]
    fn a_bus_message_is_small() {
        let size = size_of::<BusMessage>();
        assert!(size <= 40, "a BusMessage is {size} bytes");
    }
}

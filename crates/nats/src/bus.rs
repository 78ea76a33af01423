//! The device bus on NATS. Which node holds each device's connection is in the hub's
//! presence KV bucket (written with revision checks); each node answers requests on its own
//! subject (`ironhub.{hub}.bus.{node}`) for the connections it holds: is this connection
//! open, deliver this message, call this method. A node that dies loses its NATS connection
//! and with it its subscription, so requests to it find no responders and its devices count
//! as disconnected at once: the lease is the node's NATS connection (the server drops it when
//! the socket closes, or after its pings go unanswered).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use ironhub_store::{
    Attachment, BusError, BusMessage, DeviceBus, MethodResponse, PendingCalls, Result,
};

use crate::eventlog::bucket;
use crate::names::{Names, escape};

/// Messages a connection may have waiting before the bus treats it as stuck.
const QUEUE: usize = 256;
/// How long a node waits for another node's answer (method calls add their own timeout).
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at a revision-checked presence write before giving up.
const CAS_ATTEMPTS: usize = 32;

/// The NATS [`DeviceBus`] of one node.
#[derive(Debug, Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: String,
    client: async_nats::Client,
    names: Names,
    presence: kv::Store,
    local: Mutex<HashMap<String, Local>>,
    calls: PendingCalls,
    /// Connection and call ids: a per-instance random high half, a counter low half.
    ids: AtomicU64,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut server) = self.server.lock()
            && let Some(task) = server.take()
        {
            task.abort();
        }
    }
}

#[derive(Debug)]
struct Local {
    id: u64,
    tx: mpsc::Sender<BusMessage>,
}

/// A presence record: the node and the connection holding a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    node: String,
    connection: u64,
}

/// A bus message between nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Wire {
    TakenOver,
    Revoked,
    C2dAvailable,
    DesiredPatch { version: u64, body: String },
    InputsAvailable,
}

impl Wire {
    fn from_message(m: &BusMessage) -> Option<Self> {
        Some(match m {
            BusMessage::TakenOver => Wire::TakenOver,
            BusMessage::Revoked => Wire::Revoked,
            BusMessage::C2dAvailable => Wire::C2dAvailable,
            BusMessage::DesiredPatch { version, body } => Wire::DesiredPatch {
                version: *version,
                body: B64.encode(body),
            },
            BusMessage::InputsAvailable => Wire::InputsAvailable,
            BusMessage::Method(_) => return None,
        })
    }

    fn into_message(self) -> BusMessage {
        match self {
            Wire::TakenOver => BusMessage::TakenOver,
            Wire::Revoked => BusMessage::Revoked,
            Wire::C2dAvailable => BusMessage::C2dAvailable,
            Wire::DesiredPatch { version, body } => BusMessage::DesiredPatch {
                version,
                body: B64.decode(body).unwrap_or_default(),
            },
            Wire::InputsAvailable => BusMessage::InputsAvailable,
        }
    }
}

/// A request to the node holding a connection.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Request {
    IsOpen {
        device: String,
        connection: u64,
    },
    Deliver {
        device: String,
        connection: u64,
        message: Wire,
    },
    Call {
        device: String,
        connection: u64,
        name: String,
        payload: String,
        timeout_ms: u64,
    },
}

/// A node's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
enum Reply {
    Open { open: bool },
    Delivered,
    Answered { status: i32, payload: String },
    Failed { error: Failure },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Failure {
    NotConnected,
    NotSubscribed,
    Timeout,
}

impl From<BusError> for Failure {
    fn from(e: BusError) -> Self {
        match e {
            BusError::NotConnected => Failure::NotConnected,
            BusError::NotSubscribed => Failure::NotSubscribed,
            BusError::Timeout => Failure::Timeout,
        }
    }
}

impl From<Failure> for BusError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::NotConnected => BusError::NotConnected,
            Failure::NotSubscribed => BusError::NotSubscribed,
            Failure::Timeout => BusError::Timeout,
        }
    }
}

fn instance_tag() -> u64 {
    // Distinct per bus instance, so connection ids of different nodes never collide.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    // splitmix64's finaliser spreads the bits.
    let mut z = mixed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) & 0xffff_ffff_0000_0000
}

impl NatsBus {
    /// The bus of node `node` of hub `names`: creates the presence bucket if needed and
    /// starts answering the other nodes' requests.
    pub async fn start(client: async_nats::Client, names: &Names, node: &str) -> Result<Self> {
        let js = jetstream::new(client.clone());
        let presence = bucket(&js, &names.presence_bucket(), names.replicas()).await?;
        let requests = client
            .subscribe(names.node_subject(node))
            .await
            .map_err(|e| crate::error::engine("subscribe to the node's bus subject", e))?;
        client
            .flush()
            .await
            .map_err(|e| crate::error::engine("subscribe to the node's bus subject", e))?;
        let inner = Arc::new(Inner {
            node: node.to_owned(),
            client,
            names: names.clone(),
            presence,
            local: Mutex::default(),
            calls: PendingCalls::default(),
            ids: AtomicU64::new(instance_tag()),
            server: Mutex::default(),
        });
        let task = tokio::spawn(serve(Arc::downgrade(&inner), requests));
        if let Ok(mut server) = inner.server.lock() {
            *server = Some(task);
        }
        Ok(NatsBus { inner })
    }
}

/// Answers the other nodes' requests for this node's connections.
async fn serve(inner: Weak<Inner>, mut requests: async_nats::Subscriber) {
    while let Some(message) = requests.next().await {
        let Some(inner) = inner.upgrade() else { return };
        let Some(reply_to) = message.reply.clone() else {
            continue;
        };
        tokio::spawn(async move {
            let reply = match serde_json::from_slice::<Request>(&message.payload) {
                Ok(request) => inner.answer(request).await,
                Err(e) => {
                    tracing::warn!(error = %e, "a bus request ironhub does not understand");
                    return;
                }
            };
            if let Ok(body) = serde_json::to_vec(&reply) {
                let _ = inner.client.publish(reply_to, body.into()).await;
            }
        });
    }
}

impl Inner {
    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn key(device: &str) -> String {
        escape(device)
    }

    /// The device's presence record and its revision, if it has one (a record ironhub
    /// cannot read names no node); `Err` when NATS did not answer.
    async fn read_holder(&self, device: &str) -> Result<Option<(Holder, u64)>, String> {
        let entry = self
            .presence
            .entry(Self::key(device))
            .await
            .map_err(|e| e.to_string())?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| {
                let holder = serde_json::from_slice(&e.value).unwrap_or(Holder {
                    node: String::new(),
                    connection: 0,
                });
                (holder, e.revision)
            }))
    }

    /// The device's presence record and its revision, if it has one and NATS answers.
    async fn holder(&self, device: &str) -> Option<(Holder, u64)> {
        match self.read_holder(device).await {
            Ok(holder) => holder,
            Err(e) => {
                tracing::warn!(error = %e, device, "cannot read a device's presence in NATS");
                None
            }
        }
    }

    /// The sender of this node's connection `connection` of `device`, if it is open.
    fn local_sender(&self, device: &str, connection: u64) -> Option<mpsc::Sender<BusMessage>> {
        self.local
            .lock()
            .ok()?
            .get(device)
            .filter(|l| l.id == connection && !l.tx.is_closed())
            .map(|l| l.tx.clone())
    }

    async fn deliver(
        &self,
        device: &str,
        connection: u64,
        message: BusMessage,
    ) -> Result<(), BusError> {
        let tx = self
            .local_sender(device, connection)
            .ok_or(BusError::NotConnected)?;
        tx.send(message).await.map_err(|_| BusError::NotConnected)
    }

    async fn call_local(
        &self,
        device: &str,
        connection: u64,
        name: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<MethodResponse, BusError> {
        self.calls
            .call(name, payload, timeout, |message| {
                self.deliver(device, connection, message)
            })
            .await
    }

    async fn answer(&self, request: Request) -> Reply {
        let failed = |e: BusError| Reply::Failed { error: e.into() };
        match request {
            Request::IsOpen { device, connection } => Reply::Open {
                open: self.local_sender(&device, connection).is_some(),
            },
            Request::Deliver {
                device,
                connection,
                message,
            } => match self
                .deliver(&device, connection, message.into_message())
                .await
            {
                Ok(()) => Reply::Delivered,
                Err(e) => failed(e),
            },
            Request::Call {
                device,
                connection,
                name,
                payload,
                timeout_ms,
            } => {
                let payload = B64.decode(payload).unwrap_or_default();
                let timeout = Duration::from_millis(timeout_ms);
                match self
                    .call_local(&device, connection, &name, payload, timeout)
                    .await
                {
                    Ok(r) => Reply::Answered {
                        status: r.status,
                        payload: B64.encode(r.payload),
                    },
                    Err(e) => failed(e),
                }
            }
        }
    }

    /// Asks node `node` and returns its answer; a node that does not answer holds nothing.
    async fn ask(&self, node: &str, request: &Request, timeout: Duration) -> Option<Reply> {
        let body = serde_json::to_vec(request).ok()?;
        let request = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(timeout));
        match self
            .client
            .send_request(self.names.node_subject(node), request)
            .await
        {
            Ok(message) => serde_json::from_slice(&message.payload).ok(),
            Err(e) => {
                tracing::debug!(error = %e, node, "a node did not answer on the bus");
                None
            }
        }
    }

    /// Whether the holder's connection is open (asking its node if it is another).
    async fn is_open(&self, device: &str, holder: &Holder) -> bool {
        if holder.node == self.node {
            return self.local_sender(device, holder.connection).is_some();
        }
        let request = Request::IsOpen {
            device: device.to_owned(),
            connection: holder.connection,
        };
        matches!(
            self.ask(&holder.node, &request, PEER_TIMEOUT).await,
            Some(Reply::Open { open: true })
        )
    }

    /// Records this node's connection as the device's holder; returns the one it replaced.
    /// Retries only when another write came between the read and the write; gives up at once
    /// when NATS does not answer (the connection then has no presence record).
    async fn claim(&self, device: &str, connection: u64) -> Option<Holder> {
        let key = Self::key(device);
        let value: Bytes = serde_json::to_vec(&Holder {
            node: self.node.clone(),
            connection,
        })
        .ok()?
        .into();
        for _ in 0..CAS_ATTEMPTS {
            let current = match self.read_holder(device).await {
                Ok(current) => current,
                Err(e) => {
                    tracing::warn!(error = %e, device, "cannot record a device's presence in NATS");
                    return None;
                }
            };
            let written = match &current {
                Some((_, revision)) => {
                    match self.presence.update(&key, value.clone(), *revision).await {
                        Ok(_) => Ok(()),
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(None),
                        Err(e) => Err(Some(e.to_string())),
                    }
                }
                None => match self.presence.create(&key, value.clone()).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(None),
                    Err(e) => Err(Some(e.to_string())),
                },
            };
            match written {
                Ok(()) => return current.map(|(holder, _)| holder),
                Err(None) => continue,
                Err(Some(e)) => {
                    tracing::warn!(error = %e, device, "cannot record a device's presence in NATS");
                    return None;
                }
            }
        }
        tracing::warn!(device, "a device's presence kept changing; not recorded");
        None
    }

    /// Removes the device's presence record if it still names this connection.
    async fn release(&self, device: &str, connection: u64) {
        for _ in 0..CAS_ATTEMPTS {
            let Some((holder, revision)) = self.holder(device).await else {
                return;
            };
            if holder.node != self.node || holder.connection != connection {
                return;
            }
            // A failed delete is looked at again: changed meanwhile, it names another
            // connection now (nothing to do); NATS not answering ends the loop.
            if self
                .presence
                .delete_expect_revision(Self::key(device), Some(revision))
                .await
                .is_ok()
            {
                return;
            }
        }
    }

    async fn detach(&self, device: &str, connection_id: u64) {
        if let Ok(mut local) = self.local.lock()
            && local.get(device).is_some_and(|l| l.id == connection_id)
        {
            local.remove(device);
        }
        self.release(device, connection_id).await;
    }
}

#[async_trait]
impl DeviceBus for NatsBus {
    fn node_id(&self) -> &str {
        &self.inner.node
    }

    async fn attach(&self, device: &str) -> Attachment {
        let inner = &self.inner;
        let (tx, rx) = mpsc::channel(QUEUE);
        let connection_id = inner.next_id();
        let replaced = inner.local.lock().ok().and_then(|mut local| {
            local.insert(
                device.to_owned(),
                Local {
                    id: connection_id,
                    tx: tx.clone(),
                },
            )
        });
        if let Some(old) = replaced {
            let _ = old.tx.try_send(BusMessage::TakenOver);
        }
        if let Some(previous) = inner.claim(device, connection_id).await
            && previous.node != inner.node
        {
            let request = Request::Deliver {
                device: device.to_owned(),
                connection: previous.connection,
                message: Wire::TakenOver,
            };
            inner.ask(&previous.node, &request, PEER_TIMEOUT).await;
        }
        // A connection dropped without `detach` still leaves the presence bucket.
        let weak = Arc::downgrade(inner);
        let device = device.to_owned();
        tokio::spawn(async move {
            tx.closed().await;
            if let Some(inner) = weak.upgrade() {
                inner.detach(&device, connection_id).await;
            }
        });
        Attachment {
            connection_id,
            messages: rx,
        }
    }

    async fn detach(&self, device: &str, connection_id: u64) {
        self.inner.detach(device, connection_id).await;
    }

    async fn presence(&self, device: &str) -> Option<String> {
        let (holder, _) = self.inner.holder(device).await?;
        self.inner
            .is_open(device, &holder)
            .await
            .then_some(holder.node)
    }

    async fn wait_for_connect(&self, device: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        // Watching before looking, so a connection in between still wakes us.
        let watch = self.inner.presence.watch(Inner::key(device)).await;
        if self.presence(device).await.is_some() {
            return true;
        }
        let Ok(mut watch) = watch else {
            return false;
        };
        loop {
            match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(Some(Ok(entry))) if entry.operation == kv::Operation::Put => {
                    if self.presence(device).await.is_some() {
                        return true;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return self.presence(device).await.is_some(),
            }
        }
    }

    async fn send(&self, device: &str, message: BusMessage) -> Result<(), BusError> {
        let inner = &self.inner;
        let (holder, _) = inner.holder(device).await.ok_or(BusError::NotConnected)?;
        if holder.node == inner.node {
            return inner.deliver(device, holder.connection, message).await;
        }
        let message = Wire::from_message(&message).ok_or(BusError::NotSubscribed)?;
        let request = Request::Deliver {
            device: device.to_owned(),
            connection: holder.connection,
            message,
        };
        match inner.ask(&holder.node, &request, PEER_TIMEOUT).await {
            Some(Reply::Delivered) => Ok(()),
            Some(Reply::Failed { error }) => Err(error.into()),
            _ => Err(BusError::NotConnected),
        }
    }

    async fn call_method(
        &self,
        device: &str,
        name: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<MethodResponse, BusError> {
        let inner = &self.inner;
        let (holder, _) = inner.holder(device).await.ok_or(BusError::NotConnected)?;
        if holder.node == inner.node {
            return inner
                .call_local(device, holder.connection, name, payload, timeout)
                .await;
        }
        let request = Request::Call {
            device: device.to_owned(),
            connection: holder.connection,
            name: name.to_owned(),
            payload: B64.encode(payload),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        match inner
            .ask(&holder.node, &request, timeout + PEER_TIMEOUT)
            .await
        {
            Some(Reply::Answered { status, payload }) => Ok(MethodResponse {
                status,
                payload: B64.decode(payload).unwrap_or_default(),
            }),
            Some(Reply::Failed { error }) => Err(error.into()),
            _ => Err(BusError::NotConnected),
        }
    }

    fn complete_method(&self, call_id: u64, response: Result<MethodResponse, BusError>) {
        self.inner.calls.complete(call_id, response);
    }
}
